"""Admin commands print one JSON object with --json; secrets are shown once, stored hashed."""

from __future__ import annotations

import json
import re
import sqlite3

from click.testing import CliRunner

from wayview.cli import cli


def run(*args: str, input: str | None = None) -> dict:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_admin_flow_and_graph_get(tmp_path):
    d = str(tmp_path / "data")
    user = run(
        "users",
        "create",
        "alice",
        "--email",
        "a@example.org",
        "--password-stdin",
        "--data-dir",
        d,
        "--json",
        input="correct horse battery\n",
    )
    assert user["username"] == "alice" and user["id"].isdigit()
    org = run(
        "orgs", "create", "acme", "--name", "Acme", "--member", "alice", "--data-dir", d, "--json"
    )
    assert org["id"].isdigit() and org["members"] == ["alice"]
    app = run(
        "apps",
        "create",
        "My App",
        "--owner",
        "alice",
        "--redirect-uri",
        "https://app.example/cb",
        "--data-dir",
        d,
        "--json",
    )
    assert re.fullmatch(rf"MLY\|{app['app_id']}\|[0-9a-f]{{32}}", app["client_token"])
    assert app["client_secret"] != app["client_token"]
    token = run(
        "tokens", "create", "--user", "alice", "--scope", "read,upload", "--data-dir", d, "--json"
    )
    assert re.fullmatch(r"MLY[A-Za-z0-9_-]{40,}", token["access_token"])
    assert token["expires_in"] == 5_184_000 and token["scopes"] == ["read", "upload"]

    me = CliRunner().invoke(
        cli,
        [
            "serve",
            "--data-dir",
            d,
            "--get",
            f"/me?fields=id,username&access_token={token['access_token']}",
        ],
    )
    # stdout only: a log line an earlier in-process command configured may reach stderr.
    assert me.exit_code == 0 and json.loads(me.stdout) == {"id": user["id"], "username": "alice"}
    org_get = CliRunner().invoke(
        cli,
        ["--data-dir", d, "--get", f"/{org['id']}?fields=slug&access_token={app['client_token']}"],
    )
    assert json.loads(org_get.stdout) == {"slug": "acme", "id": org["id"]}

    db = (tmp_path / "data" / "wayview.db").read_bytes()
    for secret in (
        app["client_token"],
        app["client_secret"],
        token["access_token"],
        "correct horse battery",
    ):
        assert secret.encode() not in db
    conn = sqlite3.connect(tmp_path / "data" / "wayview.db")
    (pw,) = conn.execute("SELECT password_hash FROM users").fetchone()
    assert pw.startswith("$argon2id$")


def test_cli_errors_are_clean(tmp_path):
    d = str(tmp_path / "data")
    runner = CliRunner()
    run("users", "create", "bob", "--data-dir", d, "--json")
    dup = runner.invoke(cli, ["users", "create", "BOB", "--data-dir", d])
    assert dup.exit_code == 1 and "taken" in dup.output and "Traceback" not in dup.output
    missing = runner.invoke(cli, ["tokens", "create", "--user", "nobody", "--data-dir", d])
    assert missing.exit_code == 1 and "unknown user" in missing.output
    bad_scope = runner.invoke(
        cli, ["tokens", "create", "--user", "bob", "--scope", "admin", "--data-dir", d]
    )
    assert bad_scope.exit_code == 1 and "unknown scope" in bad_scope.output
    bad_token = runner.invoke(
        cli,
        ["apps", "create", "x", "--owner", "bob", "--client-token", "not-a-token", "--data-dir", d],
    )
    assert bad_token.exit_code == 1 and "MLY|" in bad_token.output
    failing_get = runner.invoke(cli, ["serve", "--data-dir", d, "--get", "/me"])
    assert failing_get.exit_code == 1 and "OAuthException" in failing_get.output
    bad_setting = runner.invoke(cli, ["jobs", "list", "--data-dir", d],
                                env={"WAYVIEW_JOBS__LEASE_S": "3"})
    assert bad_setting.exit_code == 1 and "Traceback" not in bad_setting.output
    assert "jobs.lease_s (WAYVIEW_JOBS__LEASE_S)" in bad_setting.output


def test_cli_fixed_client_token_for_hard_coded_clients(tmp_path):
    d = str(tmp_path / "data")
    run("users", "create", "ops", "--data-dir", d, "--json")
    fixed = "MLY|5675152195860640|6b02c72e6e3c801e5603ab0495623282"
    app = run(
        "apps",
        "create",
        "mapillary_tools",
        "--owner",
        "ops",
        "--client-token",
        fixed,
        "--data-dir",
        d,
        "--json",
    )
    assert app["app_id"] == "5675152195860640" and app["client_token"] == fixed
