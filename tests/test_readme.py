"""The README's command blocks work as written (issue #19 item 1).

A fresh demo is started as `make run` starts it (`wayview demo`, in a folder of its own named
`wayview-demo`, with `.venv` beside it), then every ```sh block of the README runs, in order, in
one bash session as a reader would type them (HOME is a scratch folder whose
`~/Pictures/walk-2024-05/` holds a few geotagged photos). Every `curl` must answer 2xx with a
body that is not empty (no `{"data":[]}`, no empty tile); every other command must exit 0. A
line starting a server (`wayview serve …`) runs in the background on a free port until it
answers /healthz. A block the test cannot run is preceded by
`<!-- readme-test: skip: <the test that runs it instead> -->`.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.acceptance.live import REPO, clean_env, free_port, stop_process_group

pytestmark = [pytest.mark.slow]

README = REPO / "README.md"
_BLOCK = re.compile(r"(?:<!-- readme-test: skip: (?P<skip>[^>]*?) -->\n)?```(?P<lang>\w*)\n"
                    r"(?P<body>.*?)```", re.S)
DEMO_IMAGES = 300


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    body: str
    skip: str | None


def readme_blocks() -> list[Block]:
    text = README.read_text("utf-8")
    return [Block(text.count("\n", 0, m.start("body")) + 1, m["lang"], m["body"], m["skip"])
            for m in _BLOCK.finditer(text)]


def test_every_block_is_run_or_names_the_test_that_runs_it() -> None:
    blocks = readme_blocks()
    assert len([b for b in blocks if b.lang == "sh" and b.skip is None]) >= 3
    for block in blocks:
        assert block.skip is None or re.search(r"tests/\S+\.py", block.skip), block
        assert block.lang in ("sh", "python"), block
        assert block.lang == "sh" or block.skip, f"README line {block.line}: not run"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with `.venv` and a served `wayview-demo`, as after `make run`."""
    root = tmp_path_factory.mktemp("readme")
    (root / ".venv").symlink_to(Path(sys.prefix))
    port = free_port()
    log = (root / "demo.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.prefix) / "bin" / "wayview"), "demo", "--port", str(port), "--images",
         str(DEMO_IMAGES)], cwd=root, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}", process, root / "demo.log", timeout_s=300)
        yield root
    finally:
        stop_process_group(process)
        log.close()


def _wait(base: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"exited {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if client.get(f"{base}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"{base} not healthy:\n{log.read_text()[-3000:]}")


#: Defined before the README's commands: `curl` keeps every answer (status, body) for the
#: checks below; `wayview serve` lines go to the background until /healthz answers.
PRELUDE = r"""
set -euo pipefail
__n=0
curl() {
  __n=$((__n + 1))
  printf '%s\n' "$@" > "$READMELOG/$__n.args"
  command curl -sS -w '\n__HTTP_STATUS__%{http_code}' "$@" > "$READMELOG/$__n.out"
}
serve_in_background() {
  local port=$1; shift
  "$@" > "$READMELOG/serve.log" 2>&1 &
  __servers="${__servers:-} $!"
  for _ in $(seq 300); do
    command curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on $port did not answer" >&2; cat "$READMELOG/serve.log" >&2; return 1
}
trap 'for p in ${__servers:-}; do kill $p 2>/dev/null || true; done' EXIT
"""


def _script(blocks: list[Block]) -> str:
    lines = [PRELUDE]
    for block in blocks:
        lines.append(f"echo '__BLOCK__ README line {block.line}'")
        for line in block.body.splitlines():
            served = re.match(r"^(wayview serve .*?--port )(\d+)(.*)$", line)
            if served:
                port = free_port()
                command = f"{served[1]}{port}{served[3].split('#')[0]}".strip()
                line = f"serve_in_background {port} {command}"
            lines.append(line)
    return "\n".join(lines) + "\n"


def _photos(folder: Path) -> None:
    from wayview.fixtures import write_jpeg

    start = datetime(2024, 5, 12, 10, 0, tzinfo=UTC)
    for k in range(4):
        write_jpeg(folder / f"IMG_{k:04d}.jpg", width=640, height=480, lat=55.7047,
                   lon=13.1910 + k * 0.0001, captured_at=start + timedelta(seconds=2 * k),
                   compass_deg=90.0)


def test_the_readme_commands_work_against_the_demo(demo: Path) -> None:
    env_file = demo / "wayview-demo" / "demo.env"
    assert env_file.stat().st_mode & 0o077 == 0, "demo.env holds the token: owner only"
    home = demo / "home"
    _photos(home / "Pictures" / "walk-2024-05")
    log = demo / "curl"
    log.mkdir()
    blocks = [b for b in readme_blocks() if b.lang == "sh" and b.skip is None]
    env = clean_env(HOME=str(home), READMELOG=str(log))
    result = subprocess.run(["bash", "-c", _script(blocks)], cwd=demo, env=env,
                            capture_output=True, text=True, timeout=600)
    ran = re.findall(r"__BLOCK__ README line (\d+)", result.stdout)
    assert result.returncode == 0, (
        f"README block at line {ran[-1] if ran else '?'} failed ({result.returncode}):\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    assert len(ran) == len(blocks)
    calls = sorted(log.glob("*.args"), key=lambda p: int(p.stem))
    assert len(calls) >= 9
    for args_file in calls:
        args = args_file.read_text().splitlines()
        out = args_file.with_suffix(".out").read_text(errors="replace")
        body, _, status = out.rpartition("\n__HTTP_STATUS__")
        where = shlex.join(args)
        assert status.startswith("2"), f"{where} answered {status}: {body[:500]}"
        if "-o" in args:
            saved = demo / args[args.index("-o") + 1]
            assert saved.stat().st_size > 0, f"{where}: empty {saved.name}"
            continue
        assert body.strip(), f"{where}: empty answer"
        answer = json.loads(body)
        assert answer not in ({}, {"data": []}, []), f"{where}: nothing found: {body[:300]}"
        if "data" in answer:
            assert answer["data"], f"{where}: nothing found"
        if "creator{username}" in where:
            assert answer["creator"]["username"], answer
