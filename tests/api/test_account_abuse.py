"""Sign-in and sign-up under attack (issue #14, items 4 and 8): the throttle is atomic, per
account whatever name is typed, shared across processes through Redis, cannot lock the owner
out; sign-up is throttled per address and can be invite-only."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from tests.api.webforms import csrf_of, post_form, sign_in, sign_up
from tests.redis_server import redis_server

from wayview.api.app import create_app
from wayview.blobs.local import LocalBlobs
from wayview.ratelimit.redis import RedisLimiter
from wayview.settings import Settings
from wayview.testing import BASE_URL, make_settings, open_test_store

REPO = Path(__file__).resolve().parents[2]
#: Throttle windows are fixed and aligned to the epoch: one that ends mid-test resets the
#: counts. Tests use windows of ~31 years so that never happens.
WINDOW = 10**9


@contextlib.asynccontextmanager
async def client_from(app, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def app_for(settings: Settings, store, limiter=None):
    return create_app(settings, store=store, blobs=LocalBlobs(settings.blobs_path),
                      limiter=limiter)


async def test_parallel_wrong_passwords_cannot_overrun_the_limit(tmp_path):
    settings = make_settings(tmp_path, accounts={"login_failures_per_account": 10,
                                                 "login_failures_per_address": 1000,
                                                 "login_throttle_window_s": WINDOW})
    async with open_test_store(settings) as store:
        app = app_for(settings, store)
        async with client_from(app, "10.0.0.1") as client:
            await sign_up(client, "alice", password="correct horse 1")
            client.cookies.clear()
            page = await client.get("/signin")
            token = csrf_of(page.text)
            results = await asyncio.gather(*(
                client.post("/signin", data={"csrf_token": token, "login": "alice",
                                             "password": f"wrong guess {i}"})
                for i in range(40)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(401) == 10, statuses
    assert statuses.count(429) == 30, statuses


async def test_username_and_email_share_one_account_budget(tmp_path):
    settings = make_settings(tmp_path, accounts={"login_failures_per_account": 3,
                                                 "login_throttle_window_s": WINDOW})
    async with open_test_store(settings) as store:
        async with client_from(app_for(settings, store), "10.0.0.1") as client:
            await sign_up(client, "alice", password="correct horse 1",
                          email="alice@example.org")
            client.cookies.clear()
            assert (await sign_in(client, "alice", "nope nope 1")).status_code == 401
            assert (await sign_in(client, "ALICE@example.org", "nope nope 2")).status_code == 401
            assert (await sign_in(client, " Alice ", "nope nope 3")).status_code == 401
            assert (await sign_in(client, "alice@example.org", "nope nope 4")).status_code == 429


async def test_an_attacker_cannot_lock_the_owner_out(tmp_path):
    settings = make_settings(tmp_path, accounts={"login_failures_per_account": 3,
                                                 "login_failures_per_address": 5,
                                                 "login_throttle_window_s": WINDOW})
    async with open_test_store(settings) as store:
        app = app_for(settings, store)
        async with client_from(app, "203.0.113.9") as attacker, \
                client_from(app, "198.51.100.7") as owner:
            await sign_up(owner, "alice", password="correct horse 1")
            owner.cookies.clear()
            for _ in range(3):
                assert (await sign_in(attacker, "alice", "guess guess")).status_code == 401
            assert (await sign_in(attacker, "alice", "guess again")).status_code == 429
            # The owner, from their own address, is not affected.
            assert (await sign_in(owner, "alice", "correct horse 1")).status_code == 303
            # Successful sign-ins do not use up the owner's tries.
            for _ in range(5):
                owner.cookies.clear()
                assert (await sign_in(owner, "alice", "correct horse 1")).status_code == 303


async def test_the_sign_in_throttle_is_shared_through_redis(tmp_path):
    settings = make_settings(tmp_path, accounts={"login_failures_per_account": 4,
                                                 "login_throttle_window_s": WINDOW})
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as url:
        async with open_test_store(settings) as store:
            # Two server processes: two apps, each with its own limiter on one Redis.
            one, two = RedisLimiter(url), RedisLimiter(url)
            async with client_from(app_for(settings, store, one), "10.0.0.1") as a, \
                    client_from(app_for(settings, store, two), "10.0.0.1") as b:
                await sign_up(a, "alice", password="correct horse 1")
                a.cookies.clear()
                for client in (a, b, a, b):
                    assert (await sign_in(client, "alice", "nope nope")).status_code == 401
                assert (await sign_in(b, "alice", "correct horse 1")).status_code == 429
                assert (await sign_in(a, "alice", "correct horse 1")).status_code == 429
            await one.close()
            await two.close()


async def test_sign_up_is_throttled_per_address(tmp_path):
    settings = make_settings(tmp_path, accounts={"signups_per_address": 3,
                                                 "signup_window_s": WINDOW})
    async with open_test_store(settings) as store:
        app = app_for(settings, store)
        async with client_from(app, "10.0.0.1") as one, client_from(app, "10.0.0.2") as two:
            for k in range(3):
                one.cookies.clear()
                assert (await sign_up(one, f"user{k}")).status_code == 303
            one.cookies.clear()
            r = await sign_up(one, "user3")
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
            assert "Too many new accounts" in r.text
            assert await store.get_user_by_username("user3") is None
            assert (await sign_up(two, "user4")).status_code == 303


async def test_invite_only_sign_up(tmp_path):
    settings = make_settings(tmp_path, accounts={"signup_invite_only": True,
                                                 "invite_ttl_s": 60})
    async with open_test_store(settings) as store:
        app = app_for(settings, store)
        accounts = app.accounts
        async with client_from(app, "10.0.0.1") as client:
            assert (await client.get("/signup")).status_code == 403
            r = await post_form(client, "/signin", "/signup", {  # no invitation at all
                "username": "eve", "email": "eve@example.org", "password": "correct horse 1"})
            assert r.status_code == 403 and "invitation" in r.text
            invite = accounts.invite("ann@example.org")
            page = await client.get(f"/signup?invite={invite}")
            assert page.status_code == 200 and 'value="ann@example.org"' in page.text
            data = {"username": "ann", "email": "ann@example.org",
                    "password": "correct horse 1", "invite": invite}
            # The invitation is for one e-mail address.
            r = await post_form(client, f"/signup?invite={invite}", "/signup",
                                {**data, "email": "eve@example.org"})
            assert r.status_code == 403
            tampered = invite[:-2] + ("aa" if not invite.endswith("aa") else "bb")
            r = await post_form(client, "/signin", "/signup", {**data, "invite": tampered})
            assert r.status_code == 403
            r = await post_form(client, f"/signup?invite={invite}", "/signup", data)
            assert r.status_code == 303
            client.cookies.clear()
            # Used: the address is taken, no second account from it.
            r = await post_form(client, f"/signup?invite={invite}", "/signup",
                                {**data, "username": "ann2"})
            assert r.status_code == 400 and "already registered" in r.text
            expired = accounts.invite("bo@example.org", now_s=time.time() - 61)
            assert (await client.get(f"/signup?invite={expired}")).status_code == 403


def test_users_invite_prints_a_working_link(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "wayview", "users", "invite", "ann@example.org", "--json",
         "--data-dir", str(tmp_path / "data")], cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert '"url": "http://127.0.0.1:8080/signup?invite=' in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "wayview", "users", "invite", "nope", "--data-dir",
         str(tmp_path / "data")], cwd=REPO, capture_output=True, text=True, timeout=60,
        check=False)
    assert bad.returncode != 0 and "valid e-mail" in bad.stderr
