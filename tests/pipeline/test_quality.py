"""quality_score: sharp, well-exposed, well-located photos score high (issue #15, item 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from wayview.pipeline.quality import measure_quality

LUND = Path(__file__).resolve().parents[3] / "shared" / "data" / "opensfm_lund" / "images"


def street_like(seed: int = 1) -> Image.Image:
    """A textured frame with edges at many scales, like a street photo."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 215, size=(96, 128, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((1024, 768), Image.Resampling.NEAREST)
    noise = rng.normal(0, 12, size=(768, 1024, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=float) + noise, 0, 255)
                           .astype(np.uint8))


def test_sharp_beats_blurred_beats_very_blurred():
    sharp = street_like()
    scores = [measure_quality(im).score for im in (
        sharp, sharp.filter(ImageFilter.GaussianBlur(2)),
        sharp.filter(ImageFilter.GaussianBlur(8)))]
    assert scores[0] >= 0.9
    assert scores[0] > scores[1] > scores[2]
    assert scores[2] < 0.5


def test_dark_and_blown_out_frames_score_low():
    sharp = street_like()
    dark = Image.eval(sharp, lambda v: v // 20)
    blown = Image.eval(sharp, lambda v: min(255, v * 4))
    assert measure_quality(dark).score < 0.4
    assert measure_quality(blown).score < 0.4
    assert measure_quality(sharp).exposure > 0.9


def test_poor_gps_lowers_the_score():
    sharp = street_like()
    assert measure_quality(sharp, 3.0).score > measure_quality(sharp, 40.0).score >= 0.5


def test_scores_are_between_0_and_1_for_degenerate_images():
    for image in (Image.new("L", (1, 1)), Image.new("RGB", (2, 500), "white"),
                  Image.new("CMYK", (50, 50))):
        assert 0.0 <= measure_quality(image).score <= 1.0


@pytest.mark.skipif(not LUND.is_dir(), reason="../shared/data/opensfm_lund is absent")
def test_real_lund_photos_score_well():
    scores = [measure_quality(Image.open(LUND / f"{k:02d}.jpg")).score for k in range(1, 30)]
    assert min(scores) >= 0.6, scores
