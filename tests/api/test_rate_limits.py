"""Per-app request budgets (spec §9): exact counts, E14 with Retry-After, x-app-usage."""

from __future__ import annotations

import asyncio

import orjson
from tests.api.test_errors_and_transport import assert_envelope

from wayview.auth.tokens import create_app, issue_user_token
from wayview.ratelimit import MemoryLimiter
from wayview.testing import app_client, make_settings, open_test_store, seed


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_exactly_the_budget_succeeds_under_concurrency_and_the_window_resets(tmp_path):
    settings = make_settings(tmp_path, rate_limit={"graph_per_minute": 100})
    clock = Clock(1_800_000_000.0)  # the start of a minute
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store, limiter=MemoryLimiter(clock)) as client:
            headers = {"Authorization": f"OAuth {seeded.client_token}"}
            path = f"/{seeded.images[0].id}?fields=id"
            responses = await asyncio.gather(*(client.get(path, headers=headers)
                                               for _ in range(150)))
            ok = [r for r in responses if r.status_code == 200]
            limited = [r for r in responses if r.status_code == 429]
            assert len(ok) == 100 and len(limited) == 50
            for r in limited:
                assert_envelope(r, 429, "MLYApiException", 4, "Application request limit reached")
                assert r.json()["error"]["is_transient"] is True
                assert 1 <= int(r.headers["retry-after"]) <= 60
                assert orjson.loads(r.headers["x-app-usage"])["call_count"] == 100
            usages = sorted(orjson.loads(r.headers["x-app-usage"])["call_count"] for r in ok)
            assert usages[0] == 1 and usages[-1] == 100
            clock.now += 60  # next window
            r = await client.get(path, headers=headers)
            assert r.status_code == 200
            assert orjson.loads(r.headers["x-app-usage"]) == {
                "call_count": 1, "total_cputime": 1, "total_time": 1}


async def test_every_token_of_an_app_spends_the_same_budget(tmp_path):
    settings = make_settings(tmp_path, rate_limit={"graph_per_minute": 4})
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        app = await store.get_app(int(seeded.client_token.split("|")[1]))
        user_token = (await issue_user_token(store, seeded.alice, app=app, scopes=("read",))).access_token
        other = await create_app(store, "other", owner=None, scopes=("read",))
        async with app_client(settings, store) as client:
            path = f"/{seeded.images[0].id}?fields=id"
            for token in (seeded.client_token, user_token, seeded.client_token, user_token):
                r = await client.get(path, headers={"Authorization": f"OAuth {token}"})
                assert r.status_code == 200
            r = await client.get(path + f"&access_token={user_token}")
            assert r.status_code == 429
            # another app has its own budget
            r = await client.get(path, headers={"Authorization": f"OAuth {other.client_token}"})
            assert r.status_code == 200


async def test_tiles_have_a_daily_budget_of_their_own(tmp_path):
    settings = make_settings(tmp_path, rate_limit={"graph_per_minute": 1, "tiles_per_day": 2})
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            q = f"?access_token={seeded.client_token}"
            for _ in range(2):
                r = await client.get("/maps/vtp/mly1_public/2/14/8802/5373" + q)
                assert r.status_code == 200 and "x-app-usage" not in r.headers
            r = await client.get("/maps/vtp/mly1_public/2/14/8802/5373" + q)
            assert r.status_code == 429 and int(r.headers["retry-after"]) <= 86_400
            assert r.headers["access-control-allow-origin"] == "*"
            assert (await client.get(f"/{seeded.images[0].id}" + q)).status_code == 200
            assert (await client.get(f"/{seeded.images[0].id}" + q)).status_code == 429


async def test_unknown_paths_and_errors_count_and_report_usage(tmp_path):
    settings = make_settings(tmp_path, rate_limit={"graph_per_minute": 2})
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            q = f"?access_token={seeded.client_token}"
            r = await client.get("/no/such/thing" + q)
            assert r.status_code == 400 and "x-app-usage" in r.headers
            r = await client.get("/1933525276802129" + q)
            assert r.status_code == 400
            assert orjson.loads(r.headers["x-app-usage"])["call_count"] == 100
            assert (await client.get("/images" + q)).status_code == 429


async def test_unauthenticated_and_uncounted_routes(tmp_path):
    settings = make_settings(tmp_path, rate_limit={"graph_per_minute": 1})
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            for _ in range(3):  # no token → E1, never E14 (authentication comes first)
                assert (await client.get(f"/{seeded.images[0].id}")).status_code == 401
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/signin")).status_code == 200
                assert (await client.options("/images")).status_code == 204
            q = f"?access_token={seeded.client_token}"
            assert (await client.get(f"/{seeded.images[0].id}" + q)).status_code == 200


async def test_search_budget_can_be_split_from_the_graph_budget(tmp_path):
    settings = make_settings(tmp_path, rate_limit={"graph_per_minute": 5,
                                                   "search_per_minute": 1})
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            q = f"access_token={seeded.client_token}"
            bbox = "bbox=13.40,52.51,13.41,52.53"
            assert (await client.get(f"/images?{bbox}&{q}")).status_code == 200
            assert (await client.get(f"/images?{bbox}&{q}")).status_code == 429
            assert (await client.get(f"/{seeded.images[0].id}?{q}")).status_code == 200


async def test_a_fail_closed_limiter_without_redis_answers_a_transient_503_not_e14(
        tmp_path, caplog):
    from wayview.ratelimit.redis import RedisLimiter

    settings = make_settings(tmp_path, rate_limit_fail_open=False)
    limiter = RedisLimiter(f"unix://{tmp_path}/no-redis.sock", fail_open=False)
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store, limiter=limiter) as client:
            headers = {"Authorization": f"OAuth {seeded.client_token}"}
            for path in (f"/{seeded.images[0].id}?fields=id", "/maps/vtp/mly1_public/2/14/0/0"):
                for _ in range(20):
                    r = await client.get(path, headers=headers)
                    assert_envelope(r, 503, "MLYApiException", 2,
                                    "Service temporarily unavailable")
                    assert r.json()["error"]["is_transient"] is True
                    assert r.headers["retry-after"] == "2" and "x-app-usage" not in r.headers
    await limiter.close()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "rate limiter (Redis) unavailable" in errors[0].getMessage()
    assert errors[0].exc_info is None
