"""The operator tool against a scripted JSON-RPC endpoint: output, key and URL lookup, exit codes."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from actors.cli import keys, target
from actors.cli.main import EXIT_OK, EXIT_RPC_ERROR, EXIT_UNREACHABLE, parse, run_api_command
from actors.up.layout import Layout, write_endpoints
from tests.cli.fake_api import RpcFail, fake_api
from tests.support.ports import free_port

ACCOUNT = {
    "id": "0b7d2b8e-8f5a-4a55-8c0b-3f4f0b3a7c11",
    "slug": "acme",
    "name": "Acme",
    "owner_email": "ops@acme.test",
    "namespace": "acc-acme",
    "created_at": "2026-11-24T04:00:00Z",
    "status": "ready",
    "clusters": {"a": {"state": "created", "updated_at": "2026-11-24T04:00:01Z"}},
}


async def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_api_command(parse(list(argv)), out, err)
    return code, out.getvalue(), err.getvalue()


async def test_account_create_sends_name_email_slug_and_prints_the_account() -> None:
    async with fake_api() as api:
        api.handler = lambda method, params: ACCOUNT
        code, out, _ = await run_cli(
            "account",
            "create",
            "Acme",
            "--email",
            "ops@acme.test",
            "--slug",
            "acme",
            "--url",
            api.url,
            "--key",
            "k1",
        )
    assert code == EXIT_OK
    assert api.calls == [
        ("account.create", {"name": "Acme", "owner_email": "ops@acme.test", "slug": "acme"}, "Bearer k1")
    ]
    assert "acc-acme" in out
    assert "created" in out


async def test_json_flag_prints_the_result_as_json() -> None:
    async with fake_api() as api:
        api.handler = lambda method, params: [
            {"name": "a", "status": "online", "last_seen": None, "acked_seq": 3, "lag": 0}
        ]
        code, out, _ = await run_cli("--json", "cluster", "list", "--url", api.url)
    assert code == EXIT_OK
    assert json.loads(out)[0]["name"] == "a"


async def test_json_rpc_error_exits_one_and_prints_code_and_message() -> None:
    def handler(method: str, params: dict[str, Any]) -> Any:
        raise RpcFail(-32010, "slug taken", {"slug": "acme"})

    async with fake_api() as api:
        api.handler = handler
        code, _, err = await run_cli(
            "account", "create", "Acme", "--email", "ops@acme.test", "--url", api.url
        )
    assert code == EXIT_RPC_ERROR
    assert "-32010" in err
    assert "slug taken" in err


async def test_unreachable_api_exits_three() -> None:
    code, _, err = await run_cli("account", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == EXIT_UNREACHABLE
    assert "cannot reach" in err


async def test_a_non_json_answer_counts_as_unreachable() -> None:
    async with fake_api() as api:
        api.raw = "<html>bad gateway</html>"
        code, _, err = await run_cli("cluster", "list", "--url", api.url)
    assert code == EXIT_UNREACHABLE
    assert "without JSON" in err


async def test_account_list_all_follows_cursors_to_the_end() -> None:
    pages = {None: ({**ACCOUNT, "slug": "one"}, "c1"), "c1": ({**ACCOUNT, "slug": "two"}, None)}

    def handler(method: str, params: dict[str, Any]) -> Any:
        item, cursor = pages[params.get("cursor")]
        return {"items": [item], "next_cursor": cursor}

    async with fake_api() as api:
        api.handler = handler
        code, out, _ = await run_cli("account", "list", "--all", "--json", "--url", api.url)
    assert code == EXIT_OK
    assert [a["slug"] for a in json.loads(out)["items"]] == ["one", "two"]
    assert [c[1].get("cursor") for c in api.calls] == [None, "c1"]


async def test_url_and_key_come_from_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FABRIC_API_KEY", raising=False)
    monkeypatch.delenv("FABRIC_ADMIN_KEY", raising=False)
    monkeypatch.delenv("FABRIC_URL", raising=False)
    layout = Layout.at(tmp_path)
    layout.admin_key_file.write_text("from-file\n")
    async with fake_api() as api:
        write_endpoints(layout, {"api": api.url, "broker": {}, "clusters": {}})
        api.handler = lambda method, params: ACCOUNT
        code, _, _ = await run_cli("account", "get", "--slug", "acme", "--state-dir", str(tmp_path))
    assert code == EXIT_OK
    assert api.calls == [("account.get", {"slug": "acme"}, "Bearer from-file")]


def test_usage_errors_exit_two() -> None:
    for argv in (["account", "get"], ["account", "list", "--limit", "0"], ["nonsense"]):
        with pytest.raises(SystemExit) as exc:
            parse(argv)
        assert exc.value.code == 2


def test_keys_rotate_writes_a_private_key_and_show_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FABRIC_ADMIN_KEY", raising=False)
    layout = Layout.at(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert keys.rotate(layout, out, err) == 0
    key = out.getvalue().strip()
    assert len(key) >= 32
    assert stat.S_IMODE(layout.admin_key_file.stat().st_mode) == 0o600
    shown = io.StringIO()
    assert keys.show(layout, shown, err) == 0
    assert shown.getvalue().strip() == key


def test_a_relative_state_dir_is_relative_to_the_callers_directory_when_known() -> None:
    assert target.state_dir("mine", {"FABRIC_CALLER_CWD": "/home/op/work"}) == "/home/op/work/mine"
    assert target.state_dir("/abs/dir", {"FABRIC_CALLER_CWD": "/home/op/work"}) == "/abs/dir"
    assert target.state_dir("mine", {}) == "mine"
    assert target.state_dir(None, {}) == ".fabric"
