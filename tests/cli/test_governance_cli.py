"""`wayview role`, `wayview org-member`, `wayview reports` and `wayview audit`: an operator
gives roles, manages members and works the report queue, and every step is in the audit log
(issue #17)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from wayview.auth import governance
from wayview.cli import cli
from wayview.store import open_store
from wayview.testing import add_sequence, make_settings


def test_an_operator_gives_roles_adds_members_resolves_reports_and_reads_the_log(
        tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def setup() -> int:
        store = open_store(settings)
        await store.open()
        try:
            alice = await store.create_user("alice")
            carol = await store.create_user("carol")
            await store.create_organization("acme")
            [image, *_] = await add_sequence(store, alice, [(13.40, 52.52), (13.4001, 52.52)],
                                             start_ms=1_700_000_000_000)
            report = await governance.report_image(store, carol.id, image.id, "privacy")
            return report.id
        finally:
            await store.close()

    report_id = asyncio.run(setup())
    runner = CliRunner()
    data = ["--data-dir", str(settings.data_dir)]

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, *data])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "alice: admin" in run("role", "alice", "admin")
    [holder] = json.loads(run("role", "--json"))["roles"]
    assert (holder["username"], holder["role"]) == ("alice", "admin")
    bad = runner.invoke(cli, ["role", "nobody", "admin", *data])
    assert bad.exit_code != 0 and "no user named 'nobody'" in bad.output
    assert "carol is now admin of acme" in run("org-member", "acme", "carol", "--role",
                                               "admin")
    missing = runner.invoke(cli, ["org-member", "nowhere", "carol", *data])
    assert missing.exit_code != 0 and "no organization 'nowhere'" in missing.output
    assert "privacy" in run("reports")
    assert f"report {report_id}: dismissed" in run("reports", "--resolve", str(report_id),
                                                    "--action", "dismiss")
    assert run("reports").strip() == ""
    assert "(dismissed)" in run("reports", "--status", "all")
    lines = json.loads(run("audit", "--json"))["entries"]
    assert [(e["actor"], e["action"]) for e in lines] == [
        ("operator", "report.dismiss"), ("operator", "organization.invite"),
        ("operator", "user.set_role"), ("carol", "report.create")]
    assert [e["action"] for e in json.loads(run(
        "audit", "--json", "--actor", "carol"))["entries"]] == ["report.create"]
    text = run("audit", "--target", f"image:{lines[0]['target_id']}")
    assert "report.dismiss" in text and "report.create" in text


def test_an_operator_closes_an_account(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def setup() -> None:
        store = open_store(settings)
        await store.open()
        try:
            dora = await store.create_user("dora")
            await add_sequence(store, dora, [(13.40, 52.52), (13.4001, 52.52)],
                               start_ms=1_700_000_000_000)
        finally:
            await store.close()

    async def exists() -> bool:
        store = open_store(settings)
        await store.open()
        try:
            return await store.get_user_by_username("dora") is not None
        finally:
            await store.close()

    asyncio.run(setup())
    runner = CliRunner()
    data = ["--data-dir", str(settings.data_dir)]
    dry = runner.invoke(cli, ["close-account", "dora", *data])
    assert dry.exit_code == 0 and "would delete dora and 2 images" in dry.stdout
    assert asyncio.run(exists())
    done = runner.invoke(cli, ["close-account", "dora", "--yes", *data])
    assert done.exit_code == 0, done.output
    assert "2 images deleted" in done.stdout and not asyncio.run(exists())
