// GET /upload: upload photos from the browser (issue #18 item 5). Built by a later commit.
import "./upload.css";
