"""wayview.pipeline.detectors: what the pipeline sees in a photo (traffic signs, street objects).

A `Detector` looks at one image and returns `Found` objects: a value of the Mapillary taxonomy
(`regulatory--stop--g1`, `object--fire-hydrant`), a score in 0..1 and a polygon in normalised
image coordinates (u, v in 0..1, origin top-left, y down, relative to the stored pixel grid).
The pipeline stores each as a `detections` row and triangulates map features from them
(`pipeline.triangulate`).

Detectors are chosen by the setting `pipeline.detectors`, a comma-separated list of:

    "signs"                  ClassicalSignDetector (`pipeline.signs`): colour and shape, no
                             model weights. The default.
    "onnx"                   OnnxDetector: a YOLO-format ONNX model and a labels file that maps
                             its classes to taxonomy values (`pipeline.onnx_model`,
                             `pipeline.onnx_labels`): an operator's drop-in, at their licence.
    "package.module:Class"   an operator's own class, built with no arguments; it must have
                             `detect(image) -> list[Found]` (and should have `name`).
    "none" or ""             no detection.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from PIL import Image as PILImage

from wayview.errors import InvalidInput

if TYPE_CHECKING:
    from wayview.settings import PipelineSettings

__all__ = ["DEFAULT_DETECTORS", "Detector", "Found", "box_polygon", "open_detectors"]

#: The value of `pipeline.detectors` when none is configured.
DEFAULT_DETECTORS = "signs"

Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Found:
    """One object in one image."""

    value: str
    score: float
    #: Outer ring in normalised image coordinates (u right, v down, both 0..1).
    polygon: Polygon

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(u0, v0, u1, v1): the polygon's bounding box."""
        us = [p[0] for p in self.polygon]
        vs = [p[1] for p in self.polygon]
        return min(us), min(vs), max(us), max(vs)

    @property
    def centre_u(self) -> float:
        """Horizontal centre of the bounding box (what a map-feature ray goes through)."""
        u0, _, u1, _ = self.box
        return (u0 + u1) / 2

    @property
    def width(self) -> float:
        """Width of the bounding box, as a fraction of the image width."""
        u0, _, u1, _ = self.box
        return u1 - u0


def box_polygon(u0: float, v0: float, u1: float, v1: float) -> Polygon:
    """A rectangle as a closed-free ring, clamped to the image.

    >>> box_polygon(-0.1, 0.2, 0.5, 1.3)
    ((0.0, 0.2), (0.5, 0.2), (0.5, 1.0), (0.0, 1.0))
    """
    u0, u1 = max(0.0, min(1.0, u0)), max(0.0, min(1.0, u1))
    v0, v1 = max(0.0, min(1.0, v0)), max(0.0, min(1.0, v1))
    return ((u0, v0), (u1, v0), (u1, v1), (u0, v1))


@runtime_checkable
class Detector(Protocol):
    """Finds street objects in a photo."""

    name: str

    def detect(self, image: PILImage.Image) -> list[Found]:
        """Every object this detector knows in `image` (RGB, the stored pixel grid)."""
        ...


def open_detectors(settings: PipelineSettings) -> list[Detector]:
    """The detectors `pipeline.detectors` names, built once (they may load models).

    Raises:
        InvalidInput: an unknown name, or a class that cannot be imported or built.
    """
    names = [n.strip() for n in settings.detectors.split(",") if n.strip()]
    out: list[Detector] = []
    for name in names:
        if name == "none":
            continue
        out.append(_open_one(name, settings))
    return out


def _open_one(name: str, settings: PipelineSettings) -> Detector:
    if name == "signs":
        from wayview.pipeline.signs import ClassicalSignDetector

        return ClassicalSignDetector()
    if name == "onnx":
        from wayview.pipeline.onnx_detector import OnnxDetector

        if not settings.onnx_model or not settings.onnx_labels:
            raise InvalidInput("pipeline.detectors names 'onnx': set pipeline.onnx_model "
                               "and pipeline.onnx_labels")
        return OnnxDetector(settings.onnx_model, settings.onnx_labels,
                            min_score=settings.onnx_min_score)
    module_name, sep, class_name = name.partition(":")
    if not sep or not module_name or not class_name:
        raise InvalidInput(f"unknown detector {name!r}: use signs, onnx, none or "
                           "package.module:Class")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        detector = cls()
    except Exception as exc:  # noqa: BLE001 - any import or construction failure
        raise InvalidInput(f"cannot load detector {name!r}: {exc}") from None
    if not isinstance(detector, Detector):
        raise InvalidInput(f"detector {name!r} has no detect(image) method")
    return detector


def run_detectors(detectors: Sequence[Detector], image: PILImage.Image) -> list[Found]:
    """Every detector's findings for one image, in detector order."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    found: list[Found] = []
    for detector in detectors:
        found.extend(detector.detect(rgb))
    return found
