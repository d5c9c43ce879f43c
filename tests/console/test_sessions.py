"""The console's session over HTTP (no browser): the cookie, who it stands for, and what it may do.

A session authenticates `POST /rpc` like its key, only with the Origin check;
its key is re-checked on every request, so revoking the key ends it at once.
"""

from __future__ import annotations

from actors.api.keystore import create_key, revoke_key
from tests.api.harness import ADMIN_KEY, RunningApi
from tests.console.client import login, request, rpc

NEW_ACCOUNT = {"name": "Acme", "owner_email": "ops@acme.example", "slug": "acme"}


def _attributes(set_cookie: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}


async def test_login_sets_an_httponly_samesite_strict_cookie_scoped_to_the_site(api: RunningApi) -> None:
    answer = await request(api, "POST", "/console/login", body={"key": ADMIN_KEY})
    assert answer.status == 200, answer
    assert answer.body == {"key_id": "admin", "key_name": "admin", "scope": "admin"}
    assert answer.set_cookie.startswith("fabric_session="), answer.set_cookie
    assert {"httponly", "samesite", "path"} <= _attributes(answer.set_cookie)
    assert "SameSite=Strict" in answer.set_cookie
    assert "Path=/" in answer.set_cookie
    assert "secure" not in _attributes(answer.set_cookie)  # plain HTTP here: a Secure cookie would be lost
    assert ADMIN_KEY not in answer.set_cookie
    who = await request(api, "GET", "/console/session", cookie=answer.cookie())
    assert who.status == 200, who
    assert who.body["scope"] == "admin", who


async def test_a_wrong_key_gets_no_session(api: RunningApi) -> None:
    answer = await request(api, "POST", "/console/login", body={"key": "not-a-key"})
    assert answer.status == 401, answer
    assert answer.set_cookie == ""
    assert answer.body["reason"] == "invalid"
    assert (await request(api, "GET", "/console/session", cookie="made-up")).status == 401


async def test_a_session_cookie_calls_rpc_like_its_key(api: RunningApi) -> None:
    cookie = await login(api, ADMIN_KEY)
    created = await rpc(api, cookie, "account.create", NEW_ACCOUNT)
    assert created.status == 200, created
    assert created.body["result"]["slug"] == "acme", created
    listed = await rpc(api, cookie, "account.list", {})
    assert [a["slug"] for a in listed.body["result"]["items"]] == ["acme"]


async def test_a_cookie_request_from_another_origin_or_without_one_is_refused(api: RunningApi) -> None:
    cookie = await login(api, ADMIN_KEY)
    foreign = await rpc(api, cookie, "account.create", NEW_ACCOUNT, origin="http://evil.example")
    assert foreign.status == 403, foreign
    assert "evil.example" in foreign.body["error"]["data"]["reason"], foreign
    missing = await rpc(api, cookie, "account.create", NEW_ACCOUNT, origin=None)
    assert missing.status == 403, missing
    assert "Origin" in missing.body["error"]["data"]["reason"], missing
    logout = await request(api, "POST", "/console/logout", cookie=cookie, origin="http://evil.example")
    assert logout.status == 403, logout
    # Nothing was written by the refused calls; the session itself is still good.
    listed = await rpc(api, cookie, "account.list", {})
    assert listed.body["result"]["items"] == []


async def test_login_from_another_origin_is_refused(api: RunningApi) -> None:
    answer = await request(api, "POST", "/console/login", body={"key": ADMIN_KEY},
                           origin="http://evil.example")
    assert answer.status == 403, answer
    assert answer.set_cookie == ""


async def test_a_bearer_key_needs_no_origin_even_beside_a_cookie(api: RunningApi) -> None:
    cookie = await login(api, ADMIN_KEY)
    answer = await request(api, "POST", "/rpc", cookie=cookie, origin="http://elsewhere.example",
                           headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                           body={"jsonrpc": "2.0", "id": 1, "method": "account.list", "params": {}})
    assert answer.status == 200, answer
    assert "result" in answer.body, answer


async def test_a_revoked_keys_session_is_refused_at_once(api: RunningApi) -> None:
    keys_file = api.handles.gate.keys.keys_file
    assert keys_file is not None
    issued = create_key(keys_file, "write", "ops")
    cookie = await login(api, issued.secret)
    assert "result" in (await rpc(api, cookie, "account.list", {})).body
    revoke_key(keys_file, issued.stored.id)
    refused = await rpc(api, cookie, "account.list", {})
    assert refused.status == 200, refused
    assert refused.body["error"]["code"] == -32001
    assert refused.body["error"]["data"]["reason"] == "invalid"
    assert (await request(api, "GET", "/console/session", cookie=cookie)).status == 401
    assert (await request(api, "GET", "/console/events", cookie=cookie)).status == 401


async def test_a_read_keys_session_is_refused_writes(api: RunningApi) -> None:
    keys_file = api.handles.gate.keys.keys_file
    assert keys_file is not None
    issued = create_key(keys_file, "read", "viewer")
    cookie = await login(api, issued.secret)
    who = await request(api, "GET", "/console/session", cookie=cookie)
    assert who.body == {"key_id": issued.stored.id, "key_name": "viewer", "scope": "read"}
    refused = await rpc(api, cookie, "account.create", NEW_ACCOUNT)
    assert refused.body["error"]["code"] == -32001, refused
    assert refused.body["error"]["data"]["reason"] == "scope"
    assert "result" in (await rpc(api, cookie, "account.list", {})).body


async def test_logout_ends_the_session_and_clears_the_cookie(api: RunningApi) -> None:
    cookie = await login(api, ADMIN_KEY)
    answer = await request(api, "POST", "/console/logout", cookie=cookie)
    assert answer.status == 204, answer
    assert answer.set_cookie.startswith('fabric_session=""') or "Max-Age=0" in answer.set_cookie
    refused = await rpc(api, cookie, "account.list", {})
    assert refused.body["error"]["data"]["reason"] == "invalid", refused


async def test_the_page_is_served_with_a_strict_content_security_policy(api: RunningApi) -> None:
    async with api.http.get(api.url + "/") as response:
        page = await response.text()
        assert response.status == 200
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert '<input id="login-key" name="key" type="password"' in page
    for asset in ("console.js", "console.css"):
        async with api.http.get(f"{api.url}/console/static/{asset}") as response:
            assert response.status == 200, asset
    async with api.http.get(api.url + "/console/static/..%2Fweb.py") as response:
        assert response.status == 404
