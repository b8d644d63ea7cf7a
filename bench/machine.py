"""bench.machine: what the benchmark tables say about the machine they ran on."""

from __future__ import annotations

import platform
import subprocess


def sh(*cmd: str) -> str:
    """A command's standard output, stripped ("" when it cannot run)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                              check=False).stdout.strip()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (lscpu), else what `platform` knows."""
    return next((line.split(":", 1)[1].strip() for line in sh("lscpu").splitlines()
                 if line.startswith("Model name")), platform.processor())


def memory_gib() -> str:
    """Total memory in GiB (free -g), or "?"."""
    return next((line.split()[1] for line in sh("free", "-g").splitlines()
                 if line.startswith("Mem:")), "?")
