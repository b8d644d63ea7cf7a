"""bench.cpumeter: who used the CPU during a measurement — the server, this bench (+ wrk), others.

The bench machine is shared (other people's test runs, builds). Every measurement records how
many cores the rest of the machine used meanwhile, waits for a quiet moment before starting, and
is repeated when someone else was busy, so the published figures are not silently depressed.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
Snapshot = tuple[float, float, float, float]

#: "Other" load above this (in cores) makes a run count as disturbed.
OTHER_LOAD_LIMIT_CORES = 0.15


class CpuMeter:
    """CPU seconds of the server processes, of this process and its children, and of the rest."""

    def __init__(self, server_pids: Callable[[], list[int]] = list) -> None:
        self.server_pids = server_pids
        self.tck = os.sysconf("SC_CLK_TCK")

    def _busy_s(self) -> float:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / self.tck  # all but idle and iowait

    def _server_s(self) -> float:
        total = 0.0
        for pid in self.server_pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / self.tck
            except (OSError, IndexError, ValueError):
                pass
        return total

    @staticmethod
    def _mine_s() -> float:
        me, kids = (resource.getrusage(resource.RUSAGE_SELF),
                    resource.getrusage(resource.RUSAGE_CHILDREN))
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def snapshot(self) -> Snapshot:
        """(wall, machine busy, server, bench + children) seconds."""
        return time.monotonic(), self._busy_s(), self._server_s(), self._mine_s()

    @staticmethod
    def delta(a: Snapshot, b: Snapshot) -> dict[str, float]:
        """Cores used by the server, by this bench (+ wrk), and by the rest of the machine."""
        wall = max(1e-9, b[0] - a[0])
        busy, server, mine = b[1] - a[1], b[2] - a[2], b[3] - a[3]
        return {"server_cores": server / wall, "bench_cores": mine / wall,
                "other_cores": max(0.0, busy - server - mine) / wall, "server_cpu_s": server,
                "wall_s": wall}

    def wait_quiet(self, limit_s: float = 120.0, log: Callable[[str], None] = print) -> float:
        """Wait (at most `limit_s`) until others use < the limit for 2 s; returns seconds waited."""
        started = time.monotonic()
        quiet = 0
        warned = False
        while time.monotonic() - started < limit_s:
            a = self.snapshot()
            time.sleep(1.0)
            other = self.delta(a, self.snapshot())["other_cores"]
            quiet = quiet + 1 if other < OTHER_LOAD_LIMIT_CORES else 0
            if quiet >= 2:
                break
            if not warned and other >= OTHER_LOAD_LIMIT_CORES:
                log(f"  waiting for other processes to finish (using {other:.2f} cores) …")
                warned = True
        return time.monotonic() - started

    def measure(self, fn: Callable[[], T], *, retries: int = 2,
                log: Callable[[str], None] = print) -> tuple[T, dict[str, float]]:
        """Run `fn` after a quiet moment; again (up to `retries` times) if others were busy.

        Returns the result seen with the least other load, and its CPU figures.
        """
        best: tuple[T, dict[str, float]] | None = None
        for attempt in range(retries + 1):
            self.wait_quiet(log=log)
            a = self.snapshot()
            result = fn()
            cpu = self.delta(a, self.snapshot())
            if best is None or cpu["other_cores"] < best[1]["other_cores"]:
                best = (result, cpu)
            if cpu["other_cores"] < OTHER_LOAD_LIMIT_CORES:
                break
            if attempt < retries:
                log(f"  other processes used {cpu['other_cores']:.2f} cores: measuring again")
        assert best is not None
        return best
