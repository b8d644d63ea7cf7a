"""wayview.pipeline.quality: `quality_score` (0–1) from what can be measured in a photo.

Three factors, each 0–1, multiplied (one bad property is enough to make a photo poor):

- **sharpness**: the variance of the Laplacian of the grey image at 512 px wide, a standard
  focus measure. Motion blur and defocus lower it; `SHARP_VARIANCE` and above count as sharp,
  the factor falls linearly to 0.2 at zero.
- **exposure**: how much of the frame is clipped to black or white, and how far the mean
  brightness is from the middle. A frame that is 40 % clipped or nearly black scores low.
- **position**: the GPS accuracy in metres when the camera recorded one (EXIF GPSHPositioningError,
  or the dilution of precision × 5 m): 1 up to 5 m, falling to 0.5 at 50 m and beyond. Unknown
  accuracy counts as 1 (most cameras write none).

The factors are reported too (`QualityReport`) so a caller can explain a score. The score is
rounded to two decimals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

__all__ = ["SHARP_VARIANCE", "QualityReport", "measure_quality"]

#: Laplacian variance (grey levels², image 512 px wide) from which a photo counts as sharp.
SHARP_VARIANCE = 300.0
_WIDTH = 512


@dataclass(frozen=True, slots=True)
class QualityReport:
    """A photo's quality factors and the score they make."""

    sharpness: float
    exposure: float
    position: float

    @property
    def score(self) -> float:
        """The product of the factors, 0–1, two decimals."""
        return round(max(0.0, min(1.0, self.sharpness * self.exposure * self.position)), 2)


def _grey(image: PILImage.Image) -> np.ndarray:
    if image.width > _WIDTH:
        height = max(1, round(image.height * _WIDTH / image.width))
        image = image.resize((_WIDTH, height), PILImage.Resampling.BILINEAR)
    return np.asarray(image.convert("L"), dtype=np.float32)


def _laplacian_variance(grey: np.ndarray) -> float:
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1]
           - 4 * grey[1:-1, 1:-1])
    return float(lap.var())


def position_factor(accuracy_m: float | None) -> float:
    """1 up to 5 m, linear to 0.5 at 50 m, 0.5 beyond; 1 when unknown.

    >>> position_factor(None), position_factor(3), position_factor(27.5), position_factor(500)
    (1.0, 1.0, 0.75, 0.5)
    """
    if accuracy_m is None or accuracy_m <= 5:
        return 1.0
    return max(0.5, 1.0 - 0.5 * (min(accuracy_m, 50.0) - 5.0) / 45.0)


def measure_quality(image: PILImage.Image, gps_accuracy_m: float | None = None
                    ) -> QualityReport:
    """The quality factors of one photo (any size; measured at 512 px wide).

    >>> flat = PILImage.new("RGB", (800, 600), (128, 128, 128))
    >>> measure_quality(flat).sharpness
    0.2
    """
    grey = _grey(image)
    variance = _laplacian_variance(grey)
    sharpness = 0.2 + 0.8 * min(1.0, variance / SHARP_VARIANCE)
    clipped = float(np.mean((grey <= 4) | (grey >= 251)))
    mean = float(grey.mean()) / 255.0
    exposure = max(0.0, 1.0 - 2.0 * clipped) * max(0.2, 1.0 - 2.0 * max(0.0, abs(mean - 0.5)
                                                                          - 0.2))
    return QualityReport(round(sharpness, 3), round(min(1.0, exposure), 3),
                         position_factor(gps_accuracy_m))
