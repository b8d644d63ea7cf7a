"""Acceptance: `mapillary_tools authenticate` (0.14.7) against a live wayview (spec §7.3, §10.2).

The real uploader signs in with e-mail and password through `POST /login` using its client
token, stores the user token in its profile, and verifies a `--jwt` token through `/me`. Wrong
credentials and revoked tokens make it exit non-zero with the server's message.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.live import REPO, LiveServer, clean_env, client_venv, live_server, wayview
from tests.api.webforms import csrf_of

pytestmark = [pytest.mark.slow]

MT_VERSION = "0.14.7"
#: mapillary_tools' own hard-coded client token (spec §7.4): registered like an operator would.
MT_CLIENT_TOKEN = "MLY|5675152195860640|6b02c72e6e3c801e5603ab0495623282"
EMAIL, PASSWORD = "uploader@example.org", "uploader passphrase 1"


@pytest.fixture(scope="module")
def mt_python() -> Path:
    venv = Path(os.environ.get("WAYVIEW_MT_VENV") or REPO / f".venv-mapillary-tools-{MT_VERSION}")
    return client_venv(venv, f"mapillary_tools=={MT_VERSION}", "mapillary_tools", MT_VERSION)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("mt-login")
    data = root / "data"
    done = subprocess.run(
        [sys.executable, "-m", "wayview", "users", "create", "uploader", "--email", EMAIL,
         "--password-stdin", "--data-dir", str(data)],
        input=PASSWORD + "\n", text=True, capture_output=True, cwd=root, env=clean_env(),
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    wayview("apps", "create", "mapillary_tools", "--owner", "uploader", "--client-token",
            MT_CLIENT_TOKEN, data_dir=data, cwd=root)
    with live_server(data, root / "server.log", cwd=root,
                     env={"WAYVIEW_AUTH__TOKEN_CACHE_S": "0"}) as live:
        yield live


def run_mt(python: Path, server: LiveServer, config: Path, *args: str
           ) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        MAPILLARY_GRAPH_API_ENDPOINT=server.base_url,
        MAPILLARY_UPLOAD_ENDPOINT=f"{server.base_url}/upload",
        MAPILLARY_CONFIG_PATH=str(config),
        MAPILLARY_TOOLS_PROMPT_DISABLED="YES",
    )
    return subprocess.run([str(python), "-m", "mapillary_tools.commands", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)


def profile(config: Path, name: str) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(config)
    return dict(parser[name]) if parser.has_section(name) else {}


def test_authenticate_with_email_and_password_uses_login(mt_python, server, tmp_path):
    config = tmp_path / "config.ini"
    done = run_mt(mt_python, server, config, "authenticate", "--user_name", "wayview",
                  "--user_email", EMAIL, "--user_password", PASSWORD)
    assert done.returncode == 0, done.stdout + done.stderr
    items = profile(config, "wayview")
    token = items.get("user_upload_token", "")
    assert token.startswith("MLY") and "|" not in token

    me = httpx.get(f"{server.base_url}/me?fields=id,username",
                   headers={"Authorization": f"OAuth {token}"}).json()
    assert items["mapsettingsuserkey"] == me["id"] and me["username"] == "uploader"

    # The token it got verifies through /me when given back as --jwt.
    done = run_mt(mt_python, server, config, "authenticate", "--user_name", "again",
                  "--jwt", token)
    assert done.returncode == 0, done.stdout + done.stderr
    again = profile(config, "again")
    assert again["mapsettingsusername"] == "uploader" and again["mapsettingsuserkey"] == me["id"]

    # The user revokes mapillary_tools on the account page: the token is refused with E4.
    with httpx.Client(base_url=server.base_url) as browser:
        page = browser.get("/signin").text
        browser.post("/signin", data={"csrf_token": csrf_of(page), "login": EMAIL,
                                      "password": PASSWORD})
        page = browser.get("/account").text
        assert "mapillary_tools" in page
        r = browser.post("/account/apps/5675152195860640/revoke",
                         data={"csrf_token": csrf_of(page)})
        assert r.status_code == 303
    done = run_mt(mt_python, server, config, "authenticate", "--user_name", "revoked",
                  "--jwt", token)
    assert done.returncode != 0
    assert "has not authorized application 5675152195860640" in done.stdout + done.stderr


def test_wrong_password_fails_with_the_servers_message(mt_python, server, tmp_path):
    config = tmp_path / "config.ini"
    done = run_mt(mt_python, server, config, "authenticate", "--user_name", "wrong",
                  "--user_email", EMAIL, "--user_password", "not the password")
    assert done.returncode != 0
    assert "401" in done.stdout + done.stderr
    assert profile(config, "wrong") == {}
