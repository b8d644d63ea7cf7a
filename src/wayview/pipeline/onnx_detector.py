"""wayview.pipeline.onnx_detector: an operator's YOLO-format ONNX model as a `Detector`.

wayview ships no object-detection weights beyond what permissive licences allow (see
`pipeline.signs`). An operator who has a stronger model — a YOLOv5/v8 fine-tune on street
objects, at whatever licence they accept — points `pipeline.onnx_model` at its `.onnx` file and
`pipeline.onnx_labels` at a text file with one taxonomy value per class index (`-` skips a
class), and adds `onnx` to `pipeline.detectors`.

Supported output layouts (what Ultralytics and YOLOv5 exports write):

- YOLOv8: one tensor `(1, 4 + C, N)` (or `(1, N, 4 + C)`): box centre x, y, width, height in
  input pixels, then C class scores;
- YOLOv5: `(1, N, 5 + C)`: box, objectness, then C class scores (score = objectness × class).

The photo is letterboxed to the model's square input (`640` unless the model fixes another
size), boxes are mapped back to the photo and thinned by per-class non-maximum suppression.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from wayview.errors import InvalidInput
from wayview.pipeline.detectors import Found, box_polygon

__all__ = ["OnnxDetector", "read_labels"]

_DEFAULT_SIZE = 640
_IOU = 0.5
_MAX_DETECTIONS = 300


def read_labels(path: str | Path) -> list[str | None]:
    """Class index → taxonomy value (None for `-` or an empty line)."""
    try:
        lines = Path(path).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read pipeline.onnx_labels {path}: {exc}") from None
    out: list[str | None] = []
    for line in lines:
        value = line.split("#", 1)[0].strip()
        out.append(None if value in ("", "-") else value)
    return out


class OnnxDetector:
    """A YOLO-format ONNX model mapped to taxonomy values (see the module docstring)."""

    name = "onnx"

    def __init__(self, model: str | Path, labels: str | Path, *, min_score: float = 0.4
                 ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - a dependency of wayview
            raise InvalidInput("the onnx detector needs onnxruntime") from None
        self.labels = read_labels(labels)
        self.min_score = min_score
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session: Any = ort.InferenceSession(str(model), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise InvalidInput(f"cannot load pipeline.onnx_model {model}: {exc}") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        shape = first.shape
        fixed = [d for d in shape[2:] if isinstance(d, int)]
        self.size = fixed[0] if fixed else _DEFAULT_SIZE
        self._lock = threading.Lock()

    def detect(self, image: PILImage.Image) -> list[Found]:
        """The model's objects in `image` whose class has a value."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        scale = self.size / max(rgb.width, rgb.height)
        width, height = max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))
        canvas = PILImage.new("RGB", (self.size, self.size), (114, 114, 114))
        left, top = (self.size - width) // 2, (self.size - height) // 2
        canvas.paste(rgb.resize((width, height), PILImage.Resampling.BILINEAR), (left, top))
        tensor = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
        with self._lock:  # one run at a time per session keeps memory flat
            output = np.asarray(self.session.run(None, {self.input_name: tensor})[0])
        boxes, scores, classes = self._decode(output)
        found: list[Found] = []
        for cls in np.unique(classes):
            value = self.labels[int(cls)] if int(cls) < len(self.labels) else None
            if value is None:
                continue
            idx = np.nonzero(classes == cls)[0]
            for k in _nms(boxes[idx], scores[idx], _IOU):
                cx, cy, bw, bh = boxes[idx[k]]
                u0 = (cx - bw / 2 - left) / scale / rgb.width
                u1 = (cx + bw / 2 - left) / scale / rgb.width
                v0 = (cy - bh / 2 - top) / scale / rgb.height
                v1 = (cy + bh / 2 - top) / scale / rgb.height
                found.append(Found(value, round(float(scores[idx[k]]), 3),
                                   box_polygon(float(u0), float(v0), float(u1), float(v1))))
        found.sort(key=lambda f: -f.score)
        return found[:_MAX_DETECTIONS]

    def _decode(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = output[0] if output.ndim == 3 else output
        classes_n = len(self.labels)
        if rows.shape[0] in (4 + classes_n, 5 + classes_n) and rows.shape[1] not in \
                (4 + classes_n, 5 + classes_n):
            rows = rows.T
        if rows.shape[1] == 5 + classes_n:  # YOLOv5: objectness
            class_scores = rows[:, 5:] * rows[:, 4:5]
        elif rows.shape[1] == 4 + classes_n:
            class_scores = rows[:, 4:]
        else:
            raise InvalidInput(
                f"pipeline.onnx_model output {tuple(output.shape)} does not fit "
                f"{classes_n} labels (expected 4 + C or 5 + C values per box)")
        classes = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(len(classes)), classes]
        keep = scores >= self.min_score
        return rows[keep, :4].astype(np.float64), scores[keep], classes[keep]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression (boxes as centre x, y, w, h)."""
    x0 = boxes[:, 0] - boxes[:, 2] / 2
    y0 = boxes[:, 1] - boxes[:, 3] / 2
    x1 = boxes[:, 0] + boxes[:, 2] / 2
    y1 = boxes[:, 1] + boxes[:, 3] / 2
    areas = np.maximum(0, x1 - x0) * np.maximum(0, y1 - y0)
    order = list(np.argsort(-scores))
    kept: list[int] = []
    while order and len(kept) < _MAX_DETECTIONS:
        i = int(order.pop(0))
        kept.append(i)
        rest = np.array(order, dtype=int)
        if rest.size == 0:
            break
        w = np.maximum(0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        overlap = inter / np.maximum(1e-9, areas[i] + areas[rest] - inter)
        order = [int(j) for j, o in zip(rest, overlap, strict=True) if o < iou]
    return kept
