"""Scoped API keys on the running API: what each scope may call, revocation without a restart,
several keys at once, no secret kept anywhere, and one audit line per write (CONTRACT.md 4, 6)."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors.api.keystore import create_key, revoke_key
from actors.api.scopes import REQUIRED, required_scope
from actors.cli.main import parse, run_keys_command
from actors.up.layout import Layout
from tests.api.harness import RunningApi, eventually, fast_settings, running_api
from tests.api.keyed import ManualClock, account_params, call, issue, running_api_on
from tests.support.fake_bus import FakeBus, FakeConnector

UNAUTHORIZED = -32001


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def clocked(pg_dsn: str, tmp_path: Path, bus: FakeBus, clock: ManualClock) -> AsyncIterator[RunningApi]:
    """The API with its key-file polling and rate limits on `clock`."""
    bus.set_online("cluster:a", True)
    async with running_api_on(fast_settings(pg_dsn, tmp_path / "state"), FakeConnector(bus), clock) as api:
        yield api


def keys_file(api: RunningApi) -> Path:
    path = api.handles.gate.keys.keys_file
    assert path is not None
    return path


def refusal(answer: Any) -> str:
    assert answer.status == 200, answer
    assert answer.error["code"] == UNAUTHORIZED, answer
    reason: str = answer.error["data"]["reason"]
    return reason


async def test_a_read_key_may_read_but_every_write_is_refused_for_its_scope(api: RunningApi) -> None:
    reader = await issue(api, "read", "dashboard")
    created = (await call(api, "account.create", account_params("by-admin"), api.key)).result

    got = await call(api, "account.get", {"id": created["id"]}, reader["key"])
    assert got.result["slug"] == "by-admin"
    listed = await call(api, "account.list", {}, reader["key"])
    assert [a["slug"] for a in listed.result["items"]] == ["by-admin"]
    assert isinstance((await call(api, "cluster.list", {}, reader["key"])).result, list)

    for method, params in (
        ("account.create", account_params("by-reader")),
        ("account.delete", {"id": created["id"]}),
        ("key.create", {"scope": "read"}),
        ("key.list", {}),
    ):
        refused = await call(api, method, params, reader["key"], id_=7)
        assert refusal(refused) == "scope", method
        assert refused.body["id"] == 7
        assert refused.error["data"]["required"] == required_scope(method)
    missing = await call(api, "account.get", {"slug": "by-reader"}, api.key)
    assert missing.error["code"] == -32011, "a refused create writes nothing"


async def test_a_write_key_creates_and_deletes_accounts_but_cannot_manage_keys(api: RunningApi) -> None:
    writer = await issue(api, "write", "ci")
    created = (await call(api, "account.create", account_params("by-writer"), writer["key"])).result
    assert created["slug"] == "by-writer"
    deleted = (await call(api, "account.delete", {"id": created["id"]}, writer["key"])).result
    assert deleted["status"] == "deleting"

    for method, params in (("key.create", {"scope": "read"}), ("key.list", {}),
                           ("key.revoke", {"id": writer["id"]})):
        refused = await call(api, method, params, writer["key"])
        assert refusal(refused) == "scope", method
        assert refused.error["data"] == {"reason": "scope", "scope": "write", "required": "admin"}
    assert (await call(api, "account.list", {}, writer["key"])).status == 200, "still valid"


async def test_several_keys_are_valid_at_once_and_revoking_one_leaves_the_others(
    api: RunningApi,
) -> None:
    issued = [await issue(api, scope) for scope in ("admin", "write", "read", "read")]
    secrets = [api.key, *(k["key"] for k in issued)]
    assert len(set(secrets)) == len(secrets)
    for secret in secrets:
        assert "result" in (await call(api, "account.list", {}, secret)).body
    second_admin = issued[0]["key"]
    revoked = (await call(api, "key.revoke", {"id": issued[2]["id"]}, second_admin)).result
    assert revoked["id"] == issued[2]["id"]
    assert revoked["revoked_at"] is not None

    refused = await call(api, "account.list", {}, issued[2]["key"])
    assert refusal(refused) == "invalid", "key.revoke takes effect on the very next call"
    for secret in (api.key, second_admin, issued[1]["key"], issued[3]["key"]):
        assert "result" in (await call(api, "account.list", {}, secret)).body


async def test_a_key_revoked_in_the_key_file_is_refused_once_the_poll_period_passes(
    clocked: RunningApi, clock: ManualClock
) -> None:
    # What `fabric keys create` and `fabric keys revoke` do: edit the file, not call the API.
    issued = create_key(keys_file(clocked), "read", "short-lived")
    clock.advance(0.5)
    assert "result" in (await call(clocked, "account.list", {}, issued.secret)).body

    revoke_key(keys_file(clocked), issued.stored.id)
    clock.advance(0.5)
    assert refusal(await call(clocked, "account.list", {}, issued.secret)) == "invalid"
    assert "result" in (await call(clocked, "account.list", {}, clocked.key)).body


async def test_fabric_keys_commands_reach_a_running_api_without_a_restart(api: RunningApi) -> None:
    path = str(keys_file(api))

    def fabric_keys(*argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run_keys_command(parse(["keys", *argv, "--keys-file", path]), Layout.at(path), out, err)
        return code, out.getvalue()

    code, out = fabric_keys("create", "--scope", "write", "--name", "ops", "--json")
    assert code == 0
    issued = json.loads(out)

    async def accepted() -> bool:
        return "result" in (await call(api, "account.list", {}, issued["key"])).body

    await eventually(accepted, timeout=5, message="the new key accepted")
    assert fabric_keys("revoke", issued["id"])[0] == 0

    async def refused() -> bool:
        return refusal(await call(api, "account.list", {}, issued["key"])) == "invalid"

    await eventually(refused, timeout=5, message="the revoked key refused")


async def test_a_missing_a_wrong_and_a_revoked_key_are_refused_each_with_its_reason(
    api: RunningApi,
) -> None:
    issued = await issue(api, "admin")
    await call(api, "key.revoke", {"id": issued["id"]}, api.key)
    assert refusal(await call(api, "account.list", {}, None)) == "missing"
    assert refusal(await call(api, "account.list", {}, "")) == "missing"
    assert refusal(await call(api, "account.list", {}, "not-a-key")) == "invalid"
    assert refusal(await call(api, "account.list", {}, issued["key"])) == "invalid"
    assert refusal(await call(api, "key.list", {}, issued["key"])) == "invalid"


async def test_keys_are_listed_without_secrets_and_the_key_file_holds_only_hashes(
    api: RunningApi,
) -> None:
    issued = [await issue(api, "write", "one"), await issue(api, "read", "two")]
    assert all(set(k) == {"id", "name", "scope", "created_at", "revoked_at", "key"} for k in issued)
    listed = (await call(api, "key.list", {}, api.key)).result
    assert [(k["id"], k["name"], k["scope"]) for k in listed] == [
        (k["id"], k["name"], k["scope"]) for k in issued
    ]
    assert all(set(k) == {"id", "name", "scope", "created_at", "revoked_at"} for k in listed)

    path = keys_file(api)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    for key in issued:
        assert key["key"] not in text
        assert key["key"] not in json.dumps(listed)
    assert len(json.loads(text)["keys"]) == 2


async def test_every_write_and_key_change_logs_one_audit_line_naming_the_key(
    pg_dsn: str, tmp_path: Path, bus: FakeBus
) -> None:
    with capture_logs() as logs:
        async with running_api(fast_settings(pg_dsn, tmp_path / "s"), FakeConnector(bus)) as api:
            writer = await issue(api, "write", "ci-writer")
            reader = await issue(api, "read", "dashboard")
            created = (await call(api, "account.create", account_params("audited"), writer["key"])).result
            await call(api, "account.list", {}, reader["key"])
            await call(api, "account.get", {"id": created["id"]}, writer["key"])
            await call(api, "account.create", account_params("not-allowed"), reader["key"])
            await call(api, "account.delete", {"id": created["id"]}, writer["key"])
    audits = [e for e in logs if e["event"] == "audit"]
    assert [(a["method"], a["key_id"], a["key_name"], a["scope"], a["outcome"], a.get("code"))
            for a in audits] == [
        ("key.create", "admin", "admin", "admin", "ok", None),
        ("key.create", "admin", "admin", "admin", "ok", None),
        ("account.create", writer["id"], "ci-writer", "write", "ok", None),
        ("account.create", reader["id"], "dashboard", "read", "error", UNAUTHORIZED),
        ("account.delete", writer["id"], "ci-writer", "write", "ok", None),
    ]
    assert [a.get("target_key_id") for a in audits[:2]] == [writer["id"], reader["id"]]
    assert [a.get("account_id") for a in audits[2:]] == [created["id"], None, created["id"]]
    assert writer["key"] not in repr(logs)
    assert reader["key"] not in repr(logs)


async def test_rpc_discover_documents_the_scope_and_the_key_errors_of_each_method(
    api: RunningApi,
) -> None:
    document = (await call(api, "rpc.discover", {}, None)).result
    methods = {m["name"]: m for m in document["methods"]}
    assert {"key.create", "key.list", "key.revoke"} <= set(methods)
    for name, method in methods.items():
        codes = {e["code"] for e in method["errors"]}
        assert {UNAUTHORIZED, -32029} <= codes, name
        assert f"scope {required_scope(name)} " in method["description"], name
    assert set(methods) <= set(REQUIRED), "every method states its scope in the one table"
