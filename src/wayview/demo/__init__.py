"""wayview.demo: a generated demo city (plan, build through the importer, `wayview demo`)."""

from __future__ import annotations

from wayview.demo.build import DemoInfo, DemoProgress, build_demo
from wayview.demo.command import demo_command, prepare_demo
from wayview.demo.plan import (
    PlannedDetection,
    PlannedFeature,
    PlannedImage,
    PlannedSequence,
    PlannedSighting,
    plan_demo,
    plan_features,
    plan_loose_detections,
)

__all__ = [
    "DemoInfo",
    "DemoProgress",
    "PlannedDetection",
    "PlannedFeature",
    "PlannedImage",
    "PlannedSequence",
    "PlannedSighting",
    "build_demo",
    "demo_command",
    "plan_demo",
    "plan_features",
    "plan_loose_detections",
    "prepare_demo",
]
