"""tests.store.sigkill: run a Python script that writes to a store in a loop, printing a
counter after each write, and SIGKILL it mid-way (the SIGKILL tests of deletions and edits)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time


def kill_mid_way(script: str, args: list[str], rng: random.Random, *, min_lines: int,
                 max_lines: int, max_sleep_s: float) -> int:
    """Start `python -c script *args`, read `min_lines`..`max_lines` (random) of its
    counter lines, sleep up to `max_sleep_s`, SIGKILL it; the last counter read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYVIEW_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    last = 0
    with subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            for _ in range(rng.randrange(min_lines, max_lines)):
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else ""
                last = max(last, int(line))
            time.sleep(rng.random() * max_sleep_s)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return last
