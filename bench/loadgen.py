"""bench.loadgen: run `wrk` over a rotating list of request paths and parse its report.

Each wrk thread reads the same path file, pre-formats every request once (so Lua costs almost
nothing per request) and walks the list from its own offset. With `rate` set, every connection
waits a random think time between requests so the offered load is about `rate` req/s (wrk is a
closed-loop generator: rate ≈ connections / (latency + think time). `delay()` has 1 ms
resolution, so think times are drawn from an exponential distribution with the fitted mean and
rounded at random; the achieved rate is reported next to the latencies).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = r"""
local paths = {}
local requests = {}
local counter = 0
local thread_no = 0
local mean_delay_ms = %(mean_delay_ms)s

function setup(thread)
  thread:set("tid", thread_no)
  thread_no = thread_no + 1
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  wrk.headers["Authorization"] = args[2]
  for i, p in ipairs(paths) do requests[i] = wrk.format("GET", p) end
  counter = ((tid or 0) * 7919) %% #requests
  math.randomseed(1234 + (tid or 0))
end

function request()
  counter = counter %% #requests + 1
  return requests[counter]
end

if mean_delay_ms > 0 then
  function delay()
    local d = -math.log(1 - math.random()) * mean_delay_ms
    local whole = math.floor(d)
    if math.random() < d - whole then whole = whole + 1 end
    return whole
  end
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured (latencies in milliseconds)."""

    requests: int
    seconds: float
    rps: float
    avg_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    raw: str


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse(output: str) -> WrkResult:
    """Parse wrk 4.x `--latency` output.

    >>> r = parse(SAMPLE)
    >>> r.rps, r.p50_ms, r.p99_ms, r.non_2xx, r.socket_errors
    (12345.67, 4.9, 9800.0, 5, 3)
    """
    def grab(pattern: str) -> re.Match[str]:
        m = re.search(pattern, output)
        if m is None:
            raise ValueError(f"wrk output has no {pattern!r}:\n{output}")
        return m

    avg = grab(r"Latency\s+([\d.]+)(us|ms|s|m)\s")
    pct = {p: _ms(v, u) for p, v, u in
           re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)}
    total = grab(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     output)
    return WrkResult(
        requests=int(total.group(1)), seconds=_ms(total.group(2), total.group(3)) / 1000,
        rps=float(grab(r"Requests/sec:\s+([\d.]+)").group(1)),
        avg_ms=_ms(avg.group(1), avg.group(2)), p50_ms=pct["50"], p75_ms=pct["75"],
        p90_ms=pct["90"], p99_ms=pct["99"], non_2xx=int(non.group(1)) if non else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0, raw=output,
    )


SAMPLE = """Running 10s test @ http://127.0.0.1:8080
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.20ms    1.20ms  30.00ms   90.00%
    Req/Sec     6.20k   300.00     7.00k    70.00%
  Latency Distribution
     50%    4.90ms
     75%    5.50ms
     90%  620.00us
     99%    9.80s
  123456 requests in 10.00s, 50.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  12345.67
Transfer/sec:      5.00MB
"""


def wrk_path() -> str | None:
    """The wrk executable, if installed."""
    return shutil.which("wrk")


def run_wrk(base_url: str, paths: list[str], authorization: str, *, threads: int,
            connections: int, duration_s: float, timeout_s: float = 5.0) -> WrkResult:
    """Saturate: wrk against `base_url` cycling through `paths`, no think time."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    return _run(exe, base_url, paths, authorization, threads, connections, duration_s, 0.0,
                timeout_s)


def run_paced(base_url: str, paths: list[str], authorization: str, *, threads: int,
              connections: int, duration_s: float, rate: float,
              timeout_s: float = 5.0) -> WrkResult:
    """About `rate` req/s: a 3 s calibration run fits the think time, then the measured run."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    cycle_ms = connections / rate * 1000
    delay = max(0.0, cycle_ms - 1.0)
    for _ in range(2):
        probe = _run(exe, base_url, paths, authorization, threads, connections, 3.0, delay,
                     timeout_s)
        # achieved cycle = latency + delay (+ loop overhead): correct the think time
        achieved_cycle = connections / probe.rps * 1000 if probe.rps else cycle_ms
        delay = max(0.0, delay + (cycle_ms - achieved_cycle))
    return _run(exe, base_url, paths, authorization, threads, connections, duration_s, delay,
                timeout_s)


def _run(exe: str, base_url: str, paths: list[str], authorization: str, threads: int,
         connections: int, duration_s: float, mean_delay_ms: float,
         timeout_s: float) -> WrkResult:
    with tempfile.TemporaryDirectory(prefix="wayview-wrk-") as tmp:
        path_file = Path(tmp) / "paths.txt"
        path_file.write_text("\n".join(paths) + "\n")
        script = Path(tmp) / "rotate.lua"
        script.write_text(LUA % {"mean_delay_ms": f"{mean_delay_ms:.4f}"})
        cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
               f"--timeout={max(1, round(timeout_s))}s", "--latency", "-s", str(script),
               base_url, "--", str(path_file), authorization]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=duration_s + timeout_s + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    return parse(proc.stdout)
