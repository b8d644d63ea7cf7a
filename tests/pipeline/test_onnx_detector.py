"""The ONNX drop-in detector (issue #15, item 3): an operator's YOLO-format model and labels
file become taxonomy detections, boxes mapped back through the letterbox."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from wayview.errors import InvalidInput
from wayview.pipeline.detectors import open_detectors
from wayview.pipeline.onnx_detector import OnnxDetector
from wayview.settings import PipelineSettings


def fixed_model(path: Path, output: np.ndarray, size: int = 640) -> Path:
    """An ONNX model that answers `output` whatever the image (its input still flows in)."""
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    result = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["boxes", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "fixed", [image], [result], initializer=[
        numpy_helper.from_array(output.astype(np.float32), "boxes"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
    ])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def labels(path: Path, *values: str) -> Path:
    path.write_text("\n".join(values) + "\n")
    return path


def yolo8(rows: list[tuple[float, float, float, float, list[float]]]) -> np.ndarray:
    """(1, 4 + C, N): centre x, y, width, height in input pixels, then class scores."""
    return np.array([[*box, *scores] for *box, scores in rows], dtype=np.float32).T[None]


def test_yolov8_boxes_map_back_through_the_letterbox(tmp_path):
    # A 1280×640 photo is letterboxed into 640×640: scale 0.5, 160 px bands above and below.
    out = yolo8([
        (320.0, 320.0, 64.0, 64.0, [0.9, 0.0, 0.0]),   # photo centre, 128 px wide
        (322.0, 321.0, 60.0, 60.0, [0.8, 0.0, 0.0]),   # a duplicate: suppressed
        (100.0, 200.0, 20.0, 40.0, [0.0, 0.7, 0.0]),   # class 1
        (500.0, 400.0, 30.0, 30.0, [0.0, 0.0, 0.95]),  # class 2: skipped by "-"
        (50.0, 300.0, 10.0, 10.0, [0.1, 0.0, 0.0]),    # below min_score
    ])
    detector = OnnxDetector(fixed_model(tmp_path / "m.onnx", out),
                            labels(tmp_path / "l.txt", "object--fire-hydrant",
                                   "regulatory--stop--g1", "-"), min_score=0.4)
    found = detector.detect(Image.new("RGB", (1280, 640), "grey"))
    assert [f.value for f in found] == ["object--fire-hydrant", "regulatory--stop--g1"]
    hydrant, stop = found
    assert hydrant.score == 0.9
    assert hydrant.box == pytest.approx((0.45, 0.4, 0.55, 0.6))
    # Centre (100, 200) in model pixels → (200, 80) in the photo; 40×80 px.
    assert stop.box == pytest.approx((180 / 1280, 40 / 640, 220 / 1280, 120 / 640))


def test_yolov5_layout_with_objectness(tmp_path):
    rows = np.array([[320, 320, 64, 64, 0.5, 0.9], [320, 320, 64, 64, 0.9, 0.2]],
                    dtype=np.float32)[None]
    detector = OnnxDetector(fixed_model(tmp_path / "m.onnx", rows),
                            labels(tmp_path / "l.txt", "object--bench"), min_score=0.3)
    found = detector.detect(Image.new("RGB", (640, 640)))
    assert [(f.value, f.score) for f in found] == [("object--bench", 0.45)]


def test_open_detectors_builds_the_configured_list(tmp_path):
    model = fixed_model(tmp_path / "m.onnx", yolo8([(1, 1, 1, 1, [0.0])]))
    settings = PipelineSettings(detectors="signs, onnx", onnx_model=str(model),
                                onnx_labels=str(labels(tmp_path / "l.txt", "object--bench")))
    assert [d.name for d in open_detectors(settings)] == ["signs", "onnx"]
    assert open_detectors(PipelineSettings(detectors="none")) == []
    with pytest.raises(InvalidInput, match="onnx_model"):
        open_detectors(PipelineSettings(detectors="onnx"))
    with pytest.raises(InvalidInput, match="unknown detector"):
        open_detectors(PipelineSettings(detectors="yolo"))
    with pytest.raises(InvalidInput, match="cannot load"):
        open_detectors(PipelineSettings(detectors="no.such.module:Detector"))


def test_a_model_that_does_not_fit_its_labels_is_a_clear_error(tmp_path):
    detector = OnnxDetector(fixed_model(tmp_path / "m.onnx", yolo8([(1, 1, 1, 1, [0.5, 0.5])])),
                            labels(tmp_path / "l.txt", "a", "b", "c", "d"))
    with pytest.raises(InvalidInput, match="does not fit 4 labels"):
        detector.detect(Image.new("RGB", (64, 64)))
    with pytest.raises(InvalidInput, match="cannot load"):
        OnnxDetector(labels(tmp_path / "bad.onnx", "not a model"), tmp_path / "l.txt")
