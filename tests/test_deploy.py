"""The production guide's files work as written (issue #19 item 6): nginx in front of a live
wayview with TLS (HTTP → HTTPS, the API, an upload streamed through, https URLs in answers, the
client's address passed on, no token in nginx's log), the Caddyfile validated by Caddy, the
systemd units verified by systemd, and `wayview check`'s hardening list. The tools are Debian
packages (nginx, caddy, systemd); scripts/test-requirements installs them."""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.acceptance.live import REPO, free_port, live_server, wayview, wayview_json
from tests.browser.harness import need
from wayview.cli import cli

DEPLOY = REPO / "docs" / "deploy"


def _tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists()
                                   else None)
    need(found is not None, f"{name} not installed (Debian package `{name}`; "
                            "scripts/test-requirements installs it)")
    assert found is not None
    return found


def test_the_caddyfile_is_valid_and_formatted() -> None:
    caddy = _tool("caddy")
    source = DEPLOY / "Caddyfile"
    result = subprocess.run([caddy, "validate", "--config", str(source), "--adapter",
                             "caddyfile"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Valid configuration" in result.stdout + result.stderr, \
        result.stderr
    formatted = subprocess.run([caddy, "fmt", str(source)], capture_output=True, text=True,
                               timeout=60, check=True).stdout
    assert formatted == source.read_text()


@pytest.mark.parametrize("unit", ["wayview.service", "wayview-worker.service"])
def test_the_systemd_units_verify(tmp_path: Path, unit: str) -> None:
    analyze = _tool("systemd-analyze")
    text = (DEPLOY / unit).read_text()
    # The paths and user of a real install, pointed at this machine's.
    me = getpass.getuser()
    text = (text.replace("/opt/wayview/venv/bin/wayview", str(Path(sys.prefix) / "bin" /
                                                              "wayview"))
            .replace("/etc/wayview/wayview.env", str(DEPLOY / "wayview.env"))
            .replace("User=wayview", f"User={me}").replace("Group=wayview", f"Group={me}"))
    (tmp_path / unit).write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if unit in line]
    assert not complaints, complaints


def test_the_environment_file_names_real_settings() -> None:
    from wayview.settings import Settings

    env = {}
    for line in (DEPLOY / "wayview.env").read_text().splitlines():
        line = line.lstrip("#").strip()
        if line.startswith("WAYVIEW_") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    fields = Settings.model_fields
    for key in env:
        path = key.removeprefix("WAYVIEW_").lower().split("__")
        assert path[0] in fields, key
        if len(path) > 1:
            annotation = fields[path[0]].annotation
            assert path[1] in annotation.model_fields, key  # type: ignore[union-attr]


def test_wayview_check_lists_what_is_open(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("WAYVIEW_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env of the developer
    runner = CliRunner()
    local = runner.invoke(cli, ["check", "--data-dir", str(tmp_path)])
    assert local.exit_code == 0 and "on loopback only" in local.output, local.output
    monkeypatch.setenv("WAYVIEW_HOST", "0.0.0.0")
    exposed = runner.invoke(cli, ["check", "--data-dir", str(tmp_path), "--json"])
    assert exposed.exit_code == 1
    found = {f["setting"]: f for f in json.loads(exposed.output)["findings"]}
    assert found["public_base_url"]["level"] == "warning"
    assert {"accounts.signup_enabled", "cors.allowed_origins", "embed.frame_ancestors"} <= \
        set(found)
    # The production environment file of docs/deploy: no warning left.
    for line in (DEPLOY / "wayview.env").read_text().splitlines():
        if line.startswith("WAYVIEW_"):
            key, value = line.split("=", 1)
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("WAYVIEW_SECRET_KEY", "x" * 48)
    monkeypatch.setenv("WAYVIEW_DATA_DIR", str(tmp_path))
    hardened = runner.invoke(cli, ["check", "--json"])
    assert hardened.exit_code == 0, hardened.output
    levels = {f["setting"]: f["level"] for f in json.loads(hardened.output)["findings"]}
    assert "warning" not in levels.values() and "accounts.signup_enabled" not in levels


# -- nginx in front of a live wayview --------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "privkey.pem", folder / "fullchain.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=maps.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory,
            certificate: tuple[Path, Path]) -> Iterator[dict[str, str]]:
    nginx = _tool("nginx")
    root = tmp_path_factory.mktemp("nginx")
    data = root / "data"
    wayview_json("users", "create", "nora", data_dir=data, cwd=root)
    client = wayview_json("apps", "create", "deploy test", "--owner", "nora", "--scope", "read",
                          data_dir=data, cwd=root)["client_token"]
    user = wayview_json("tokens", "create", "--user", "nora", data_dir=data,
                        cwd=root)["access_token"]
    from wayview.fixtures import write_jpeg

    start = datetime(2024, 5, 12, 10, 0, tzinfo=UTC)
    for k in range(2):
        write_jpeg(root / "photos" / f"IMG_{k}.jpg", width=640, height=480, lat=55.7047,
                   lon=13.191 + k * 0.0001, captured_at=start + timedelta(seconds=2 * k),
                   compass_deg=90.0)
    wayview("import", str(root / "photos"), "--user", "nora", data_dir=data, cwd=root)
    http_port, https_port = free_port(), free_port()
    public = f"https://maps.example.org:{https_port}"
    env = {"WAYVIEW_TRUSTED_PROXIES": "127.0.0.1/32"}
    cert, key = certificate
    with live_server(data, root / "server.log", cwd=root, env=env,
                     public_base_url=public) as server:
        upstream = server.base_url.removeprefix("http://")
        site = ((DEPLOY / "nginx.conf").read_text()
                .replace("server 127.0.0.1:8080;", f"server {upstream};")
                .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
                .replace("listen [::]:80;", "")
                .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
                .replace("listen [::]:443 ssl http2;", "")
                .replace("/etc/letsencrypt/live/maps.example.org/fullchain.pem", str(cert))
                .replace("/etc/letsencrypt/live/maps.example.org/privkey.pem", str(key))
                .replace("/var/log/nginx/wayview.access.log", str(root / "access.log")))
        (root / "site.conf").write_text(site)
        temp = root / "temp"
        temp.mkdir()
        (root / "nginx.conf").write_text(
            f"daemon off; pid {root / 'nginx.pid'}; error_log {root / 'error.log'} warn;\n"
            "events { worker_connections 64; }\n"
            f"http {{ client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;\n"
            f"fastcgi_temp_path {temp}/fcgi; uwsgi_temp_path {temp}/uwsgi;\n"
            f"scgi_temp_path {temp}/scgi; access_log off; include {root / 'site.conf'}; }}\n")
        check = subprocess.run([nginx, "-t", "-c", str(root / "nginx.conf")],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen([nginx, "-c", str(root / "nginx.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield {"http": f"http://127.0.0.1:{http_port}",
                   "https": f"https://127.0.0.1:{https_port}", "public": public,
                   "client": client, "user": user, "root": str(root),
                   "server_log": str(server.log_path)}
        finally:
            process.terminate()
            process.wait(timeout=10)


def _https(proxied: dict[str, str]) -> httpx.Client:
    port = proxied["https"].rsplit(":", 1)[1]
    return httpx.Client(base_url=proxied["https"], verify=False, trust_env=False, timeout=30,
                        headers={"Host": f"maps.example.org:{port}"})


@pytest.mark.slow
def test_nginx_in_front_of_wayview(proxied: dict[str, str]) -> None:
    with httpx.Client(trust_env=False, timeout=10) as plain:
        r = plain.get(f"{proxied['http']}/images", headers={"Host": "maps.example.org"})
        assert r.status_code == 301 and r.headers["location"].startswith("https://")
    with _https(proxied) as client:
        token = proxied["client"]
        r = client.get("/images", params={"creator_username": "nora", "access_token": token,
                                          "fields": "id,thumb_256_url"})
        assert r.status_code == 200, r.text
        rows = r.json()["data"]
        assert len(rows) == 2 and all(row["thumb_256_url"].startswith(proxied["public"]) for
                                      row in rows), rows
        assert r.headers["strict-transport-security"].startswith("max-age=")
        # The thumbnail through the proxy too.
        thumb = client.get(rows[0]["thumb_256_url"].removeprefix(proxied["public"]))
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        # An upload streamed through: 3 MiB in one body, the offset then says so.
        session = "mly_tools_deploytest0001.zip"
        auth = {"Authorization": f"OAuth {proxied['user']}"}
        body = bytes(range(256)) * (3 * 4096)
        r = client.post(f"/upload/{session}", content=iter([body[i:i + 65536] for i in
                                                            range(0, len(body), 65536)]),
                        headers={**auth, "Offset": "0", "X-Entity-Length": str(len(body)),
                                 "X-Entity-Name": session, "X-Entity-Type": "application/zip"})
        assert r.status_code == 200, r.text
        assert client.get(f"/upload/{session}", headers=auth).json()["offset"] == len(body)
    log = (Path(proxied["root"]) / "access.log").read_text()
    assert "/images" in log and token not in log and "access_token" not in log
    # wayview saw the client (nginx's peer address passed on), not a forged header.
    assert "127.0.0.1" in log
