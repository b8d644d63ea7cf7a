"""Importing pycolmap (glog) must not take SIGTERM away from Python: a server or worker told
to stop shut down gracefully before the SfM extra was installed, and aborted with a stack dump
after (no lifespan shutdown, queued log lines lost)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("pycolmap", reason="the optional extra wayview[sfm] is not installed")

CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: (print("stopped cleanly", flush=True), sys.exit(0)))
from wayview.pipeline.sfm import sfm_unavailable
assert sfm_unavailable() is None
print("ready", flush=True)
time.sleep(30)
"""


def test_sigterm_still_reaches_python_after_pycolmap_is_imported() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    out = child.communicate(timeout=30)[0]
    assert child.returncode == 0 and "stopped cleanly" in out, out[:2000]
    assert "Aborted" not in out
