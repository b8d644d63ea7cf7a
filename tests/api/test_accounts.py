"""Web accounts: sign-up, sign-in, sessions, CSRF, throttling, password change, dashboard."""

from __future__ import annotations

import httpx
import pytest
from tests.api.webforms import csrf_of, post_form, register_app, sign_in, sign_up

from wayview.testing import app_client, make_settings, open_test_store


async def test_sign_up_signs_in_with_a_hardened_session_cookie(client):
    r = await sign_up(client, "alice")
    assert r.status_code == 303 and r.headers["location"] == "/account"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("wv_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    page = await client.get("/account")
    assert page.status_code == 200 and "alice" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_account_pages_need_a_session(client):
    for path in ("/account", "/dashboard/developers", "/dashboard/developers/1"):
        r = await client.get(path)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/signin?next=")


async def test_forged_or_foreign_session_cookie_is_not_a_session(client):
    await sign_up(client, "alice")
    real = client.cookies["wv_session"]
    sid, _, _sig = real.partition(".")
    client.cookies.set("wv_session", f"{sid}.forged", domain="wayview.test")
    r = await client.get("/account")
    assert r.status_code == 303


@pytest.mark.parametrize("username,email,password,message", [
    ("a", "a@example.org", "long enough pw", "Usernames have"),
    ("alice", "not-an-email", "long enough pw", "valid e-mail"),
    ("alice", "a@example.org", "short", "at least 10"),
])
async def test_sign_up_explains_bad_input(client, username, email, password, message):
    r = await post_form(client, "/signup", "/signup",
                        {"username": username, "email": email, "password": password})
    assert r.status_code == 400 and message in r.text
    assert 'role="alert"' in r.text


async def test_sign_up_rejects_a_taken_username_or_email(client):
    await sign_up(client, "alice", email="a@example.org")
    client.cookies.clear()
    r = await sign_up(client, "ALICE", email="other@example.org")
    assert r.status_code == 400 and "username" in r.text and "already registered" in r.text
    r = await sign_up(client, "bob", email="A@example.org")
    assert r.status_code == 400 and "e-mail" in r.text


async def test_sign_up_can_be_disabled(tmp_path):
    settings = make_settings(tmp_path, accounts={"signup_enabled": False})
    async with open_test_store(settings) as store, app_client(settings, store) as client:
        r = await client.get("/signup")
        assert r.status_code == 403 and "does not accept new accounts" in r.text
        r = await post_form(client, "/signin", "/signup",
                            {"username": "x", "email": "x@example.org", "password": "p" * 12})
        assert r.status_code == 403


@pytest.mark.parametrize("action,data", [
    ("/signin", {"login": "alice", "password": "correct horse 1"}),
    ("/signup", {"username": "eve", "email": "e@example.org", "password": "p" * 12}),
    ("/signout", {}),
    ("/account/password", {"current_password": "correct horse 1", "new_password": "n" * 12}),
    ("/dashboard/developers", {"name": "x", "scope": "read"}),
    ("/connect", {"client_id": "1", "decision": "approve"}),
])
async def test_forms_without_a_valid_csrf_token_are_refused(client, action, data):
    await sign_up(client, "alice")
    for token in (None, "forged"):
        body = dict(data) if token is None else {**data, "csrf_token": token}
        r = await client.post(action, data=body)
        assert r.status_code == 403, action
        assert "did not come from this site" in r.text
    # A token taken from another browser's page does not fit this browser's cookie.
    async with httpx.AsyncClient(transport=client._transport, base_url=client.base_url) as other:
        foreign = csrf_of((await other.get("/signin")).text)
    r = await client.post(action, data={**data, "csrf_token": foreign})
    assert r.status_code == 403


async def test_sign_in_sign_out(client):
    await sign_up(client, "alice", password="correct horse 1")
    client.cookies.clear()
    r = await sign_in(client, "alice", "wrong password!")
    assert r.status_code == 401 and "Wrong e-mail/username or password" in r.text
    r = await sign_in(client, "ALICE@example.org", "correct horse 1", "/dashboard/developers")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/developers"
    old_cookie = client.cookies["wv_session"]
    r = await post_form(client, "/account", "/signout", {})
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    client.cookies.set("wv_session", old_cookie, domain="wayview.test")
    assert (await client.get("/account")).status_code == 303  # the session is gone server-side


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
async def test_sign_in_never_continues_to_another_site(client, target):
    await sign_up(client, "alice", password="correct horse 1")
    client.cookies.clear()
    r = await sign_in(client, "alice", "correct horse 1", target)
    assert r.headers["location"] == "/account"


async def test_sign_in_is_throttled_per_account_and_per_address(tmp_path):
    # A fixed window aligned to the epoch must not end mid-test (~31 years).
    settings = make_settings(tmp_path, accounts={"login_failures_per_account": 3,
                                                 "login_failures_per_address": 5,
                                                 "login_throttle_window_s": 10**9})
    async with open_test_store(settings) as store, app_client(settings, store) as client:
        await sign_up(client, "alice", password="correct horse 1")
        await sign_up(client, "bob", password="correct horse 2")
        client.cookies.clear()
        for _ in range(3):
            assert (await sign_in(client, "alice", "nope nope nope")).status_code == 401
        r = await sign_in(client, "alice", "correct horse 1")  # right password, too late
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "Too many sign-in attempts" in r.text
        # Another account from the same address still works until the address budget is spent.
        assert (await sign_in(client, "bob", "nope nope nope")).status_code == 401
        assert (await sign_in(client, "bob", "correct horse 2")).status_code == 303
        client.cookies.clear()
        assert (await sign_in(client, "nobody", "x" * 10)).status_code == 401
        r = await sign_in(client, "bob", "correct horse 2")  # 5 failures from this address
        assert r.status_code == 429


async def test_password_change_keeps_this_session_and_ends_the_others(client, settings, store):
    await sign_up(client, "alice", password="correct horse 1")
    async with app_client(settings, store) as laptop:
        assert (await sign_in(laptop, "alice", "correct horse 1")).status_code == 303
        r = await post_form(client, "/account", "/account/password",
                            {"current_password": "wrong one!!", "new_password": "n" * 12})
        assert r.status_code == 400 and "current password is not correct" in r.text
        r = await post_form(client, "/account", "/account/password",
                            {"current_password": "correct horse 1", "new_password": "short"})
        assert r.status_code == 400
        r = await post_form(client, "/account", "/account/password",
                            {"current_password": "correct horse 1",
                             "new_password": "a new passphrase"})
        assert r.status_code == 303
        assert (await client.get("/account")).status_code == 200
        assert (await laptop.get("/account")).status_code == 303
        laptop.cookies.clear()
        assert (await sign_in(laptop, "alice", "correct horse 1")).status_code == 401
        assert (await sign_in(laptop, "alice", "a new passphrase")).status_code == 303


async def test_dashboard_registers_an_app_and_shows_its_credentials(client):
    await sign_up(client, "dev")
    app = await register_app(client, "My map", ["https://app.example/cb"], ("read", "upload"))
    assert app.client_token.startswith(f"MLY|{app.id}|") and len(app.client_token.split("|")[2]) == 32
    assert app.client_secret and app.client_secret != app.client_token
    # The client token reads public data.
    r = await client.get("/images?bbox=13.40,52.51,13.41,52.53",
                         headers={"Authorization": f"OAuth {app.client_token}"})
    assert r.status_code == 200
    listing = await client.get("/dashboard/developers")
    assert "My map" in listing.text
    page = await client.get(f"/dashboard/developers/{app.id}")  # shown again later
    assert app.client_token in page.text and app.client_secret in page.text


@pytest.mark.parametrize("uris,message", [
    (["javascript:alert(1)"], "Callback URL not allowed"),
    (["http://app.example/cb"], "Callback URL not allowed"),  # http only on loopback
    (["https://app.example/cb#frag"], "Callback URL not allowed"),
])
async def test_dashboard_refuses_unsafe_callbacks(client, uris, message):
    await sign_up(client, "dev")
    r = await post_form(client, "/dashboard/developers", "/dashboard/developers",
                        {"name": "x", "redirect_uris": "\n".join(uris), "scope": "read"})
    assert r.status_code == 400 and message in r.text


async def test_dashboard_accepts_loopback_and_native_callbacks(client):
    await sign_up(client, "dev")
    app = await register_app(client, "cli", ["http://127.0.0.1:8123/cb", "com.example.app:/cb"])
    page = await client.get(f"/dashboard/developers/{app.id}")
    assert "com.example.app:/cb" in page.text


async def test_apps_are_private_to_their_owner(client, settings, store):
    await sign_up(client, "dev")
    app = await register_app(client, "mine", ["https://app.example/cb"])
    async with app_client(settings, store) as other:
        await sign_up(other, "mallory")
        assert (await other.get(f"/dashboard/developers/{app.id}")).status_code == 404
        r = await post_form(other, "/account", f"/dashboard/developers/{app.id}/delete", {})
        assert r.status_code == 404
    assert (await client.get(f"/dashboard/developers/{app.id}")).status_code == 200


async def test_deleting_an_app_stops_its_tokens_with_e4(client):
    await sign_up(client, "dev")
    app = await register_app(client, "gone", ["https://app.example/cb"])
    headers = {"Authorization": f"OAuth {app.client_token}"}
    assert (await client.get("/images?bbox=13.40,52.51,13.41,52.53", headers=headers)).is_success
    r = await post_form(client, f"/dashboard/developers/{app.id}",
                        f"/dashboard/developers/{app.id}/delete", {})
    assert r.status_code == 303
    r = await client.get("/images?bbox=13.40,52.51,13.41,52.53", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["message"] == (
        f"Error validating access token: The user has not authorized application {app.id}.")
    assert "gone" not in (await client.get("/dashboard/developers")).text
