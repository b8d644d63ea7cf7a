// Public profile pages of users and organizations (issue #18 item 6). Built by a later commit.
import "./profile.css";
