"""The package as the Dockerfile and docs/production.md install it (`pip install .`), apart from
the source tree: the wheel carries the web build, templates and migrations, and serves /app, its
front-end files and the API (issue #19 item 6; no container engine here to build the image
itself). The wheel is installed without dependencies into a folder of its own and imported ahead
of the editable checkout, with the project's environment providing the dependencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.acceptance.live import REPO, clean_env
from tests.browser.harness import MANIFEST, need

pytestmark = [pytest.mark.slow]


def test_the_wheel_serves_the_pages_and_the_api(tmp_path: Path) -> None:
    need(MANIFEST.exists(), "the front-end is not built (run `make install`)")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "w"),
         str(REPO)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "w").glob("wayview-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    manifest = json.loads(MANIFEST.read_text())
    for needed in ("wayview/api/static/dist/manifest.json",
                   f"wayview/api/static/dist/{manifest['app.js']}",
                   "wayview/api/templates/web/app.html"):
        assert needed in names, needed
    assert any(n.startswith("wayview/store/sqlite/") and n.endswith(".sql") for n in names)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    env = clean_env(PYTHONPATH=str(site))
    env.pop("PYTHONSAFEPATH", None)
    where = subprocess.run([sys.executable, "-c", "import wayview; print(wayview.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site)), where.stdout  # the wheel, not src/

    def get(path: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "wayview", "serve", "--data-dir", str(tmp_path / "data"),
             "--get", path], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (path, result.stdout[-1000:], result.stderr[-2000:])
        return result.stdout

    page = get("/app")
    assert f"/static/dist/{manifest['app.js']}" in page
    assert "export" in get(f"/static/dist/{manifest['app.js']}")[:20000]
    assert json.loads(get("/healthz")) == {"status": "ok"}
    assert os.path.exists(tmp_path / "data" / "wayview.db")  # created and migrated
