"""OAuth 2.0 as in spec §7: /connect, consent, /token grants, PKCE, /login; errors E18–E23."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from tests.api.test_errors_and_transport import assert_envelope
from tests.api.webforms import hidden_fields, post_form, register_app, sign_up

from wayview.testing import app_client, make_settings, open_test_store

CB = "https://app.example/callback"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
async def dev_app(client):
    """An app registered by `dev`; the client stays signed in as `dev`."""
    await sign_up(client, "dev")
    return await register_app(client, "Third party", [CB, "https://app.example/other"],
                              ("read", "upload"))


async def authorize(client, app_id, **params):
    """GET /connect then approve the consent form; the redirect response."""
    query = {"client_id": str(app_id), "response_type": "code", "state": "xyz", **params}
    page = await client.get("/connect?" + urlencode(query))
    assert page.status_code == 200, page.text
    fields = hidden_fields(page.text)
    return await client.post("/connect", data={**fields, "decision": "approve"})


async def code_for(client, app, **params):
    r = await authorize(client, app.id, **params)
    assert r.status_code == 303
    got = query_of(r.headers["location"])
    assert got["state"] == "xyz"
    return got["code"]


async def exchange(client, app, code, secret=None, style="json", **extra):
    params = {"grant_type": "authorization_code", "client_id": app.id, "code": code, **extra}
    headers = {"Authorization": f"OAuth {secret or app.client_secret}"} if secret != "" else {}
    if style == "json":
        return await client.post("/token", json=params, headers=headers)
    if style == "form":
        return await client.post("/token", data={k: str(v) for k, v in params.items()},
                                 headers=headers)
    return await client.post("/token?" + urlencode(params), headers=headers)


async def test_consent_page_names_the_app_and_scopes(client, dev_app):
    page = await client.get(f"/connect?client_id={dev_app.id}&scope=read&state=s1")
    assert page.status_code == 200
    assert "Third party" in page.text and "<strong>read</strong>" in page.text
    assert "<strong>upload</strong>" not in page.text
    assert "app.example" in page.text
    assert page.headers["x-frame-options"] == "DENY"  # no clickjacking of the Allow button


@pytest.mark.parametrize("style", ["json", "form", "query"])
async def test_code_flow_issues_a_working_user_token(client, dev_app, style):
    code = await code_for(client, dev_app)
    assert code.startswith("AQ")
    r = await exchange(client, dev_app, code, style=style)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 5_184_000
    assert re.fullmatch(r"MLY[A-Za-z0-9_-]{40,}", body["access_token"])
    me = await client.get("/me?fields=id,username",
                          headers={"Authorization": f"OAuth {body['access_token']}"})
    assert me.status_code == 200 and me.json()["username"] == "dev"


async def test_signed_out_user_signs_in_and_returns_to_the_consent_page(client, dev_app):
    client.cookies.delete("wv_session")
    target = f"/connect?client_id={dev_app.id}&response_type=code&state=abc"
    r = await client.get(target)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")
    nxt = query_of(r.headers["location"])["next"]
    r = await post_form(client, r.headers["location"], "/signin",
                        {"login": "dev", "password": "correct horse 1", "next": nxt})
    assert r.status_code == 303 and r.headers["location"].startswith("/connect?")
    page = await client.get(r.headers["location"])
    assert "Authorize Third party" in page.text


async def test_user_denied(client, dev_app):
    page = await client.get(f"/connect?client_id={dev_app.id}&state=st")
    r = await client.post("/connect", data={**hidden_fields(page.text), "decision": "deny"})
    assert r.status_code == 303
    assert query_of(r.headers["location"]) == {"error": "user_denied", "state": "st"}
    assert r.headers["location"].startswith(CB)


@pytest.mark.parametrize("params,error", [
    ({"response_type": "token"}, "invalid_request"),
    ({"scope": "read,write"}, "invalid_scope"),  # write is not one of the app's scopes
    ({"scope": "admin"}, "invalid_scope"),
    ({"code_challenge_method": "S256"}, "invalid_request"),  # method without challenge
    ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "invalid_request"),
])
async def test_error_redirects_carry_state(client, dev_app, params, error):
    r = await client.get("/connect?" + urlencode({"client_id": dev_app.id, "state": "s9",
                                                  **params}))
    assert r.status_code == 303
    assert query_of(r.headers["location"]) == {"error": error, "state": "s9"}
    assert r.headers["location"].startswith(CB)


@pytest.mark.parametrize("params", [
    {"client_id": "999999999999999"},
    {"client_id": "not-a-number"},
    {},
])
async def test_unknown_client_gets_an_error_page_never_a_redirect(client, dev_app, params):
    r = await client.get("/connect?" + urlencode({**params, "redirect_uri": CB}))
    assert r.status_code == 400 and "location" not in r.headers
    assert "not registered" in r.text


async def test_unregistered_redirect_uri_is_never_redirected_to(client, dev_app):
    for uri in ("https://evil.example/cb", CB + "/", CB + "?x=1"):
        r = await client.get("/connect?" + urlencode({"client_id": dev_app.id,
                                                      "redirect_uri": uri,
                                                      "response_type": "token"}))
        assert r.status_code == 400 and "location" not in r.headers
        assert "redirect URI is not registered" in r.text


async def test_session_ending_mid_flow_redirects_invalid_request(client, dev_app):
    page = await client.get(f"/connect?client_id={dev_app.id}&state=q")
    fields = hidden_fields(page.text)
    client.cookies.delete("wv_session")
    r = await client.post("/connect", data={**fields, "decision": "approve"})
    assert query_of(r.headers["location"]) == {"error": "invalid_request", "state": "q"}


async def test_redirect_uri_sent_to_token_must_match_the_one_sent_to_connect(client, dev_app):
    other = "https://app.example/other"
    code = await code_for(client, dev_app, redirect_uri=other)
    r = await exchange(client, dev_app, code, redirect_uri=CB)
    assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")
    code = await code_for(client, dev_app, redirect_uri=other)
    r = await exchange(client, dev_app, code, redirect_uri="")
    assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")
    code = await code_for(client, dev_app, redirect_uri=other)
    assert (await exchange(client, dev_app, code, redirect_uri=other)).status_code == 200


@pytest.mark.parametrize("style", ["json", "form", "query"])
async def test_redirect_uri_may_be_left_out_at_token(client, dev_app, style):
    """Spec §7.2: a code from a `/connect` that named a redirect_uri is exchanged without it."""
    code = await code_for(client, dev_app, redirect_uri="https://app.example/other")
    r = await exchange(client, dev_app, code, style=style)  # no redirect_uri
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "bearer"


async def test_josm_plugin_token_requests(client, dev_app):
    """The exact requests of JOSM's Mapillary plugin (JOSM/Mapillary abad73d0,
    `oauth/OAuthPortListener.java` and `OAuthUtils.refreshAuthorization`): `/connect` with
    `client_id`, `response_type=code`, `scope=read` and `redirect_uri=http://localhost:8763/`;
    then a form body of `grant_type`, `client_id` and `code` only, with the secret in
    `Authorization: OAuth`; later a refresh whose form body JOSM sends without setting a
    Content-Type (Java's HttpURLConnection adds the form type itself)."""
    await sign_up(client, "josm-dev")
    josm = await register_app(client, "JOSM", ["http://localhost:8763/"], ("read",))
    page = await client.get("/connect?" + urlencode({
        "client_id": str(josm.id), "response_type": "code", "scope": "read",
        "redirect_uri": "http://localhost:8763/"}))
    assert page.status_code == 200, page.text
    r = await client.post("/connect", data={**hidden_fields(page.text), "decision": "approve"})
    location = r.headers["location"]
    assert location.startswith("http://localhost:8763/?code=AQ")
    code = query_of(location)["code"]
    r = await client.post("/token", content=(
        f"grant_type=authorization_code&client_id={josm.id}&code={code}").encode(),
        headers={"Authorization": f"OAuth {josm.client_secret}",
                 "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 5_184_000
    token = body["access_token"]
    me = await client.get("/me?fields=id,username", headers={"Authorization": f"OAuth {token}"})
    assert me.status_code == 200 and me.json()["username"] == "josm-dev"
    r = await client.post("/token", content=(
        f"grant_type=refresh_token&client_id={josm.id}&refresh_token={token}").encode(),
        headers={"Authorization": f"OAuth {josm.client_secret}",
                 "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert r.json()["access_token"] != token and r.json()["token_type"] == "bearer"
    # Leaving redirect_uri out opens nothing: the code is spent, another app's secret fails.
    code2 = query_of((await client.post("/connect", data={
        **hidden_fields((await client.get(f"/connect?client_id={josm.id}&scope=read"
                                          "&redirect_uri=http://localhost:8763/")).text),
        "decision": "approve"})).headers["location"])["code"]
    other = await register_app(client, "Not JOSM", [CB])
    r = await client.post("/token", content=(
        f"grant_type=authorization_code&client_id={other.id}&code={code2}").encode(),
        headers={"Authorization": f"OAuth {other.client_secret}",
                 "Content-Type": "application/x-www-form-urlencoded"})
    assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")
    r = await client.post("/token", content=(
        f"grant_type=authorization_code&client_id={josm.id}&code={code}").encode(),
        headers={"Authorization": f"OAuth {josm.client_secret}",
                 "Content-Type": "application/x-www-form-urlencoded"})
    assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")


async def test_public_client_may_leave_redirect_uri_out_but_not_its_verifier(client):
    await sign_up(client, "dev")
    app = await register_app(client, "Mobile", ["com.example.app:/cb"], public=True)
    verifier, challenge = pkce_pair()
    code = await code_for(client, app, code_challenge=challenge, code_challenge_method="S256",
                          redirect_uri="com.example.app:/cb")
    r = await client.post("/token", data={"grant_type": "authorization_code",
                                          "client_id": str(app.id), "code": code})
    assert_envelope(r, 400, "OAuthException", 100, "Invalid parameter code_verifier: missing")
    code = await code_for(client, app, code_challenge=challenge, code_challenge_method="S256",
                          redirect_uri="com.example.app:/cb")
    r = await client.post("/token", data={"grant_type": "authorization_code",
                                          "client_id": str(app.id), "code": code,
                                          "code_verifier": verifier})
    assert r.status_code == 200, r.text


async def test_reused_code_is_refused_and_revokes_what_it_issued(client, dev_app):
    code = await code_for(client, dev_app)
    first = (await exchange(client, dev_app, code)).json()["access_token"]
    headers = {"Authorization": f"OAuth {first}"}
    assert (await client.get("/me", headers=headers)).status_code == 200
    r = await exchange(client, dev_app, code)
    assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")
    r = await client.get("/me", headers=headers)
    assert r.status_code == 401 and "has not authorized application" in r.json()["error"]["message"]


async def test_expired_and_unknown_codes(tmp_path, monkeypatch):
    settings = make_settings(tmp_path, oauth={"code_ttl_s": 10})
    async with open_test_store(settings) as store, app_client(settings, store) as client:
        await sign_up(client, "dev")
        app = await register_app(client, "a", [CB])
        code = await code_for(client, app)
        import wayview.auth.oauth as oauth

        real = oauth.time.time
        monkeypatch.setattr(oauth.time, "time", lambda: real() + 11)
        r = await exchange(client, app, code)
        assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")
        monkeypatch.undo()
        r = await exchange(client, app, "AQ" + secrets.token_urlsafe(32))
        assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")


async def test_token_endpoint_client_authentication_e18(client, dev_app):
    code = await code_for(client, dev_app)
    for secret in ("", "MLY|1|00000000000000000000000000000000", dev_app.client_token):
        r = await exchange(client, dev_app, code, secret=secret)
        assert_envelope(r, 401, "OAuthException", 190, "Error validating client secret.")
    # The code survived the failed attempts: authentication comes before redemption.
    assert (await exchange(client, dev_app, code)).status_code == 200


async def test_token_endpoint_accepts_basic_and_client_secret_post(client, dev_app):
    basic = base64.b64encode(f"{dev_app.id}:{dev_app.client_secret}".encode()).decode()
    code = await code_for(client, dev_app)
    r = await client.post("/token", data={"grant_type": "authorization_code",
                                          "client_id": str(dev_app.id), "code": code},
                          headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200
    code = await code_for(client, dev_app)
    r = await client.post("/token", data={"grant_type": "authorization_code",
                                          "client_id": str(dev_app.id), "code": code,
                                          "client_secret": dev_app.client_secret})
    assert r.status_code == 200


async def test_foreign_code_and_foreign_refresh_token(client, dev_app):
    other = await register_app(client, "Other", [CB])
    code = await code_for(client, dev_app)
    # app B presents app A's code with B's own secret
    r = await exchange(client, other, code)
    assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")
    # app A's id with app B's secret
    code = await code_for(client, dev_app)
    r = await exchange(client, dev_app, code, secret=other.client_secret)
    assert_envelope(r, 401, "OAuthException", 190, "Error validating client secret.")
    token = (await exchange(client, dev_app, code)).json()["access_token"]
    r = await client.post("/token", json={"grant_type": "refresh_token", "client_id": other.id,
                                          "refresh_token": token},
                          headers={"Authorization": f"OAuth {other.client_secret}"})
    assert_envelope(r, 400, "OAuthException", 100,
                    "Invalid parameter refresh_token: issued to another application")


@pytest.mark.parametrize("body,message", [
    ({}, "Invalid parameter grant_type: missing"),
    ({"grant_type": "password"}, "Invalid parameter grant_type: unsupported value 'password'"),
    ({"grant_type": "authorization_code"}, "Invalid parameter client_id: missing"),
    ({"grant_type": "authorization_code", "client_id": "12"},
     "Invalid parameter client_id: unknown application"),
    ({"grant_type": "authorization_code", "client_id": "APP"}, "Invalid parameter code: missing"),
    ({"grant_type": "refresh_token", "client_id": "APP"},
     "Invalid parameter refresh_token: missing"),
    ({"grant_type": "refresh_token", "client_id": "APP", "refresh_token": "MLYnope"},
     "Invalid parameter refresh_token: not a user access token of this server"),
])
async def test_token_parameter_errors_e20(client, dev_app, body, message):
    body = {k: (str(dev_app.id) if v == "APP" else v) for k, v in body.items()}
    r = await client.post("/token", json=body,
                          headers={"Authorization": f"OAuth {dev_app.client_secret}"})
    assert_envelope(r, 400, "OAuthException", 100, message)


async def test_token_body_must_be_sane(client, dev_app):
    r = await client.post("/token", content=b"{not json", headers={
        "Content-Type": "application/json", "Authorization": f"OAuth {dev_app.client_secret}"})
    assert_envelope(r, 400, "OAuthException", 100, "Invalid parameter body: not valid JSON")
    r = await client.post("/token", content=b"x" * 70_000,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100


async def test_refresh_returns_a_new_token_and_retires_the_old_after_grace(tmp_path):
    settings = make_settings(tmp_path, oauth={"refresh_grace_s": 0}, auth={"token_cache_s": 0})
    async with open_test_store(settings) as store, app_client(settings, store) as client:
        await sign_up(client, "dev")
        app = await register_app(client, "a", [CB], ("read", "upload"))
        code = await code_for(client, app, scope="read")
        old = (await exchange(client, app, code)).json()["access_token"]
        r = await client.post("/token", data={"grant_type": "refresh_token",
                                              "client_id": str(app.id), "refresh_token": old},
                              headers={"Authorization": f"OAuth {app.client_secret}"})
        assert r.status_code == 200, r.text
        new = r.json()["access_token"]
        assert new != old and r.json()["token_type"] == "bearer"
        assert (await client.get("/me", headers={"Authorization": f"OAuth {new}"})).is_success
        r = await client.get("/me", headers={"Authorization": f"OAuth {old}"})
        assert_envelope(r, 401, "OAuthException", 190,
                        "Error validating access token: Session has expired.")
        # The retired token cannot be refreshed either (E21 = E3 here).
        r = await client.post("/token", json={"grant_type": "refresh_token", "client_id": app.id,
                                              "refresh_token": old},
                              headers={"Authorization": f"OAuth {app.client_secret}"})
        assert_envelope(r, 401, "OAuthException", 190,
                        "Error validating access token: Session has expired.")


async def test_old_token_keeps_working_within_the_grace(client, dev_app):
    code = await code_for(client, dev_app)
    old = (await exchange(client, dev_app, code)).json()["access_token"]
    r = await client.post("/token", json={"grant_type": "refresh_token", "client_id": dev_app.id,
                                          "refresh_token": old},
                          headers={"Authorization": f"OAuth {dev_app.client_secret}"})
    assert r.status_code == 200
    assert (await client.get("/me", headers={"Authorization": f"OAuth {old}"})).is_success


async def test_a_refresh_token_gives_one_new_token_even_in_parallel(client, dev_app):
    """Before: refreshing one old token three times within the grace gave three live tokens."""
    import asyncio

    code = await code_for(client, dev_app)
    old = (await exchange(client, dev_app, code)).json()["access_token"]

    async def refresh():
        return await client.post(
            "/token", json={"grant_type": "refresh_token", "client_id": dev_app.id,
                            "refresh_token": old},
            headers={"Authorization": f"OAuth {dev_app.client_secret}"})

    results = await asyncio.gather(*(refresh() for _ in range(3)))
    assert sorted(r.status_code for r in results) == [200, 400, 400], [r.text for r in results]
    for r in results:
        if r.status_code == 400:
            assert "already used" in r.json()["error"]["message"]
    # Later, within the grace, too.
    r = await refresh()
    assert r.status_code == 400 and "already used" in r.json()["error"]["message"]
    # The old token still reads within the grace; the new one works.
    new = next(r for r in results if r.status_code == 200).json()["access_token"]
    assert (await client.get("/me", headers={"Authorization": f"OAuth {old}"})).is_success
    assert (await client.get("/me", headers={"Authorization": f"OAuth {new}"})).is_success


async def test_refreshing_a_revoked_token_is_e21(client, dev_app):
    code = await code_for(client, dev_app)
    token = (await exchange(client, dev_app, code)).json()["access_token"]
    r = await post_form(client, "/account", f"/account/apps/{dev_app.id}/revoke", {})
    assert r.status_code == 303
    r = await client.post("/token", json={"grant_type": "refresh_token", "client_id": dev_app.id,
                                          "refresh_token": token},
                          headers={"Authorization": f"OAuth {dev_app.client_secret}"})
    assert_envelope(r, 401, "OAuthException", 190, "Error validating access token: The user "
                    f"has not authorized application {dev_app.id}.")


async def test_account_page_lists_and_revokes_authorized_apps(client, dev_app):
    code = await code_for(client, dev_app, scope="read")
    token = (await exchange(client, dev_app, code)).json()["access_token"]
    page = await client.get("/account")
    assert "Third party" in page.text and "Revoke access" in page.text
    await post_form(client, "/account", f"/account/apps/{dev_app.id}/revoke", {})
    r = await client.get("/me", headers={"Authorization": f"OAuth {token}"})
    assert r.status_code == 401
    assert r.json()["error"]["message"].endswith(
        f"has not authorized application {dev_app.id}.")
    assert "Third party" not in (await client.get("/account")).text


async def test_rotated_secret_replaces_the_old_one(client, dev_app):
    r = await post_form(client, f"/dashboard/developers/{dev_app.id}",
                        f"/dashboard/developers/{dev_app.id}/rotate-secret", {})
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "was rotated" in page.text and dev_app.client_secret not in page.text
    code = await code_for(client, dev_app)
    r = await exchange(client, dev_app, code)
    assert r.status_code == 401


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def test_public_client_uses_pkce_without_a_secret(client):
    await sign_up(client, "dev")
    app = await register_app(client, "Mobile", ["com.example.app:/cb"], public=True)
    assert app.client_secret is None
    r = await client.get(f"/connect?client_id={app.id}&state=s")  # PKCE is mandatory
    assert query_of(r.headers["location"])["error"] == "invalid_request"
    verifier, challenge = pkce_pair()
    code = await code_for(client, app, code_challenge=challenge, code_challenge_method="S256")
    r = await client.post("/token", data={"grant_type": "authorization_code",
                                          "client_id": str(app.id), "code": code,
                                          "code_verifier": "wrong" + verifier})
    assert_envelope(r, 400, "OAuthException", 100, "Invalid authorization code.")
    code = await code_for(client, app, code_challenge=challenge, code_challenge_method="S256")
    r = await client.post("/token", data={"grant_type": "authorization_code",
                                          "client_id": str(app.id), "code": code})
    assert_envelope(r, 400, "OAuthException", 100, "Invalid parameter code_verifier: missing")
    code = await code_for(client, app, code_challenge=challenge, code_challenge_method="S256")
    r = await client.post("/token", data={"grant_type": "authorization_code",
                                          "client_id": str(app.id), "code": code,
                                          "code_verifier": verifier})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = await client.post("/token", data={"grant_type": "refresh_token",
                                          "client_id": str(app.id), "refresh_token": token})
    assert r.status_code == 200


async def test_confidential_client_needs_its_secret_to_refresh(client, dev_app):
    code = await code_for(client, dev_app)
    token = (await exchange(client, dev_app, code)).json()["access_token"]
    r = await client.post("/token", data={"grant_type": "refresh_token",
                                          "client_id": str(dev_app.id), "refresh_token": token})
    assert_envelope(r, 401, "OAuthException", 190, "Error validating client secret.")


# -- POST /login (mapillary_tools) ----------------------------------------------------------
async def test_password_login_returns_a_user_token_of_the_client_tokens_app(client, dev_app):
    r = await client.post("/login", json={"email": "dev@example.org",
                                          "password": "correct horse 1", "locale": "en_US"},
                          headers={"Authorization": f"OAuth {dev_app.client_token}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "user_id"} and isinstance(body["user_id"], str)
    me = await client.get("/me", headers={"Authorization": f"OAuth {body['access_token']}"})
    assert me.json()["id"] == body["user_id"]
    # 0.12 sends the client token as ?access_token=
    r = await client.post(f"/login?access_token={dev_app.client_token}",
                          json={"email": "dev@example.org", "password": "correct horse 1"})
    assert r.status_code == 200


async def test_password_login_errors(client, dev_app):
    r = await client.post("/login", json={"email": "dev@example.org", "password": "nope"},
                          headers={"Authorization": f"OAuth {dev_app.client_token}"})
    assert_envelope(r, 401, "OAuthException", 1, "Invalid credentials", subcode=1348028)
    err = r.json()["error"]
    assert err["error_user_title"] == "Wrong email or password"
    assert err["error_user_msg"] == "The email or password you entered is incorrect."
    r = await client.post("/login", json={"email": "dev@example.org", "password": "x"})
    assert_envelope(r, 401, "OAuthException", 190, "Invalid OAuth 2.0 Access Token")


async def test_password_login_can_be_disabled(tmp_path):
    settings = make_settings(tmp_path, auth={"password_login": False})
    async with open_test_store(settings) as store, app_client(settings, store) as client:
        r = await client.post("/login", json={"email": "a@b.c", "password": "x"})
        assert_envelope(r, 400, "MLYApiException", 100,
                        "Password login is disabled on this server; authenticate with a token.")
