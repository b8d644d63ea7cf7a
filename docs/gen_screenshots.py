"""Copy the browser suite's screenshots that docs/web-app.md shows into docs/images/.

Run the browser tests first (`make test`, or `pytest -m slow tests/browser`), which write
artifacts/browser/*.png; then `python docs/gen_screenshots.py`. The copies are reduced to 256
colours (a tenth of the size, still sharp for screenshots of pages).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "browser"
IMAGES = ROOT / "docs" / "images"
#: The screenshots the user guide shows (names as the browser tests write them).
SHOWN = (
    "app-permalink-1280", "app-time-travel-1280", "app-time-travel-375", "app-value-filter",
    "app-filters", "app-shortcuts", "app-375-folded", "app-375-open", "profile-user-1280x800",
    "profile-org-375x812", "upload-1280-uploading", "upload-1280-done", "upload-375-rejected",
    "upload-375-done",
)


def main() -> int:
    missing = [name for name in SHOWN if not (ARTIFACTS / f"{name}.png").exists()]
    if missing:
        print(f"run the browser tests first; missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    IMAGES.mkdir(exist_ok=True)
    for name in SHOWN:
        with Image.open(ARTIFACTS / f"{name}.png") as shot:
            small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            small.save(IMAGES / f"{name}.png", optimize=True)
    print(f"{len(SHOWN)} screenshots in {IMAGES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
