"""wayview.fixture_signs: rendered traffic signs pasted into photos, for tests and benchmarks.

`draw_sign(value, size)` paints one Vienna-convention sign (transparent around it) with
Pillow; `paste_sign(photo, value, box)` puts it into a photo, slightly softened like a real
camera would see it. The signs are drawn from their geometry only, never copied from artwork.
"""

from __future__ import annotations

import math

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFilter, ImageFont

__all__ = ["SIGN_VALUES", "draw_sign", "paste_sign"]

RED = (196, 24, 38)
BLUE = (20, 70, 160)
YELLOW = (250, 200, 20)
WHITE = (245, 245, 245)
BLACK = (20, 20, 20)

#: Values `draw_sign` can paint (speed limits take any number).
SIGN_VALUES = (
    "regulatory--stop--g1",
    "regulatory--yield--g1",
    "regulatory--no-entry--g1",
    "regulatory--maximum-speed-limit-50--g1",
    "regulatory--priority-road--g4",
    "information--pedestrians-crossing--g1",
    "information--parking--g1",
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, size))


def _centred_text(draw: ImageDraw.ImageDraw, text: str, centre: tuple[float, float],
                  size: int, fill: tuple[int, int, int]) -> None:
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((centre[0] - (left + right) / 2, centre[1] - (top + bottom) / 2), text,
              fill=fill, font=font)


def _polygon(n: int, radius: float, centre: float, rotation: float) -> list[tuple[float, float]]:
    return [(centre + radius * math.cos(rotation + 2 * math.pi * k / n),
             centre + radius * math.sin(rotation + 2 * math.pi * k / n)) for k in range(n)]


def draw_sign(value: str, size: int) -> PILImage.Image:
    """One sign `size` pixels wide, RGBA (transparent outside), drawn at 4× and reduced.

    >>> draw_sign("regulatory--stop--g1", 40).size
    (40, 40)
    """
    big = size * 4
    image = PILImage.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    c = big / 2
    r = big / 2 - 1
    if value.startswith("regulatory--stop"):
        draw.polygon(_polygon(8, r, c, math.pi / 8), fill=WHITE)
        draw.polygon(_polygon(8, r * 0.92, c, math.pi / 8), fill=RED)
        _centred_text(draw, "STOP", (c, c), int(big * 0.28), WHITE)
    elif value.startswith("regulatory--yield"):
        top = big * 0.07
        outer = [(1, top), (big - 1, top), (c, big - 1)]
        draw.polygon(outer, fill=RED)
        inset = big * 0.16
        draw.polygon([(inset * 1.73, top + inset), (big - inset * 1.73, top + inset),
                      (c, big - 1 - inset * 2)], fill=WHITE)
    elif value.startswith("regulatory--no-entry"):
        draw.ellipse((1, 1, big - 1, big - 1), fill=RED)
        draw.rectangle((big * 0.15, big * 0.41, big * 0.85, big * 0.59), fill=WHITE)
    elif value.startswith("regulatory--maximum-speed-limit-"):
        number = value.removeprefix("regulatory--maximum-speed-limit-").split("--")[0]
        draw.ellipse((1, 1, big - 1, big - 1), fill=RED)
        ring = big * 0.11
        draw.ellipse((ring, ring, big - ring, big - ring), fill=WHITE)
        _centred_text(draw, number, (c, c), int(big * (0.42 if len(number) < 3 else 0.32)),
                      BLACK)
    elif value.startswith("regulatory--priority-road"):
        draw.polygon(_polygon(4, r, c, 0.0), fill=WHITE)
        draw.polygon(_polygon(4, r * 0.72, c, 0.0), fill=YELLOW)
    elif value.startswith("information--pedestrians-crossing"):
        draw.rectangle((1, 1, big - 1, big - 1), fill=BLUE)
        draw.polygon([(c, big * 0.12), (big * 0.12, big * 0.86), (big * 0.88, big * 0.86)],
                     fill=WHITE)
        draw.ellipse((c - big * 0.05, big * 0.36, c + big * 0.05, big * 0.46), fill=BLACK)
        draw.line((c, big * 0.46, c - big * 0.08, big * 0.78), fill=BLACK, width=max(2, big // 30))
    elif value.startswith("information--parking"):
        draw.rectangle((1, 1, big - 1, big - 1), fill=BLUE)
        _centred_text(draw, "P", (c, c), int(big * 0.8), WHITE)
    else:
        raise ValueError(f"cannot draw {value!r}")
    return image.resize((size, size), PILImage.Resampling.LANCZOS)


def paste_sign(photo: PILImage.Image, value: str, x: int, y: int, size: int,
               *, softness: float = 0.6) -> tuple[float, float, float, float]:
    """Paste a `size`-pixel sign with its top-left corner at (x, y), in place; the box it
    covers in normalised coordinates (u0, v0, u1, v1)."""
    sign = draw_sign(value, size)
    if softness > 0:
        sign = sign.filter(ImageFilter.GaussianBlur(softness))
    photo.paste(sign, (x, y), sign)
    return x / photo.width, y / photo.height, (x + size) / photo.width, (y + size) / photo.height
