"""NATS identities: permissions that confine each user to its part, passwords kept 0600, and a
server config that nats-server accepts."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from actors.up.layout import ensure_credentials, write_server_config
from transport.jetstream.identities import load_password, password_file, permissions
from transport.jetstream.server import nats_server_binary


def test_a_cluster_may_publish_only_its_own_outcomes_and_use_only_its_own_consumer() -> None:
    publish, subscribe = permissions("cluster-b")
    assert "fabric.outcome.b.>" in publish
    assert not any("fabric.account" in p and not p.startswith("$JS") for p in publish)
    assert not any("cluster_a" in p or "outcome.a" in p for p in publish)
    assert "$JS.API.CONSUMER.CREATE.FABRIC.cluster_b.fabric.account.>" in publish
    assert "$JS.ACK.FABRIC.cluster_b.>" in publish
    assert not any("STREAM.CREATE" in p or "DELETE.FABRIC.*" in p for p in publish)
    assert subscribe == ["_INBOX_cluster-b.>"]


def test_the_api_publishes_accounts_manages_the_stream_and_lists_consumers() -> None:
    publish, subscribe = permissions("api")
    assert "fabric.account.>" in publish
    assert not any(p.startswith("fabric.outcome") for p in publish)
    assert {"$JS.API.STREAM.CREATE.FABRIC", "$JS.API.CONSUMER.LIST.FABRIC",
            "$JS.API.CONSUMER.DELETE.FABRIC.*"} <= set(publish)
    assert subscribe == ["_INBOX_api.>"]
    with pytest.raises(ValueError, match="not an identity"):
        permissions("broker")


def test_passwords_are_written_once_private_and_read_back(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = ensure_credentials(keys, ["api", "cluster-a"])
    again = ensure_credentials(keys, ["api", "cluster-a"])
    assert first == again
    assert first["api"] != first["cluster-a"]
    path = password_file(keys, "api")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_password(path) == first["api"]
    path.write_text("")
    with pytest.raises(ValueError, match="holds no password"):
        load_password(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_password(keys / "missing.nats")


async def test_the_server_config_is_private_and_accepted_by_nats_server(tmp_path: Path) -> None:
    config = tmp_path / "nats.conf"
    write_server_config(
        config, host="127.0.0.1", port=4999, store_dir=tmp_path / "store",
        users={"api": "p1", "cluster-a": "p2"}, server_name="n1", cluster_port=6999,
        routes=["nats-route://127.0.0.1:7000"], monitor_port=8999,
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    check = await asyncio.create_subprocess_exec(
        str(nats_server_binary()), "-t", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await check.communicate()
    assert check.returncode == 0, out.decode()
