"""Where `bin/api` takes its admin key from (CONTRACT.md sections 2 and 4).

`--admin-key` wins over FABRIC_ADMIN_KEY; with neither, the key is STATE_DIR/admin.key
(generated once, mode 0600, when missing). A call with any other key gets -32001, in an
HTTP 200 reply.
"""

from __future__ import annotations

import signal
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.contract.running import stop_with, wait_http
from tests.support.broker import start_broker
from tests.support.keys import client_flags
from tests.support.ports import free_port
from tests.support.processes import Proc, ProcessGroup

pytestmark = pytest.mark.processes


async def call_with(url: str, key: str) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 7, "method": "account.list", "params": {}}
    async with aiohttp.ClientSession() as http, http.post(
        url + "/rpc", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        assert response.status == 200, response.status
        reply: dict[str, Any] = await response.json()
    return reply


async def start_api(
    procs: ProcessGroup, dsn: str, broker: str, state_dir: Path, *args: str,
    env: dict[str, str] | None = None,
) -> tuple[Proc, str]:
    port = free_port()
    proc = await procs.start(
        "api", "--listen", f"127.0.0.1:{port}", "--legacy-dsn", dsn, "--broker", broker,
        *client_flags("api"), "--state-dir", str(state_dir), *args, env=env, stdout_to_log=False,
    )
    url = f"http://127.0.0.1:{port}"
    await wait_http(proc, url + "/healthz")
    return proc, url


async def test_the_admin_key_flag_wins_over_its_env_var_and_else_the_state_dir_holds_it(
    procs: ProcessGroup, tmp_path: Path, pg_dsn: str
) -> None:
    broker = str(await start_broker(procs, tmp_path / "broker"))

    proc, url = await start_api(procs, pg_dsn, broker, tmp_path / "api-1",
                                "--admin-key", "key-from-flag",
                                env={"FABRIC_ADMIN_KEY": "key-from-env"})
    assert "result" in await call_with(url, "key-from-flag")
    refused = await call_with(url, "key-from-env")
    assert refused["error"]["code"] == -32001, refused
    assert refused["id"] == 7, refused
    code, _ = await stop_with(procs, proc, signal.SIGTERM)
    assert code == 0

    state_dir = tmp_path / "api-2"
    proc, url = await start_api(procs, pg_dsn, broker, state_dir)
    key_file = state_dir / "admin.key"
    key = key_file.read_text().strip()
    assert key, "no key generated"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, oct(key_file.stat().st_mode)
    assert "result" in await call_with(url, key)
    assert (await call_with(url, "not-" + key))["error"]["code"] == -32001
