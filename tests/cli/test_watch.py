"""`fabric watch` against a scripted API: the tables once, a line per change without a
terminal, the tables redrawn in place on one, and the in-place block itself."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from actors.cli.main import EXIT_OK, EXIT_UNREACHABLE, parse, run_api_command
from actors.cli.rpc import RpcClient
from actors.cli.terminal import LineSink, LiveBlock
from actors.cli.watch import Follower, read_snapshot
from tests.cli.fake_api import FakeApi, fake_api
from tests.support.ports import free_port
from tests.support.processes import BIN
from tests.support.terminal import on_terminal
from tests.support.wait import wait_until

ACME = "0b7d2b8e-8f5a-4a55-8c0b-3f4f0b3a7c11"
BETA = "5c3a6b0e-1d2f-4e8a-9b7c-2a1d0e9f8c77"


def account(id_: str, slug: str, status: str, state: str = "created") -> dict[str, Any]:
    return {"id": id_, "slug": slug, "name": slug.title(), "status": status,
            "clusters": {"east": {"state": state, "observed_generation": 1, "online": True}}}


class World:
    """What the fake API answers; tests change it between reads."""

    def __init__(self) -> None:
        self.clusters = [{"name": "east", "status": "online", "last_seen": "t0", "acked_seq": 4, "lag": 0}]
        self.accounts = [account(ACME, "acme", "provisioning", "pending")]

    def answer(self, method: str, params: dict[str, Any]) -> Any:
        if method == "cluster.list":
            return [dict(c) for c in self.clusters]
        assert method == "account.list", method
        return {"items": [dict(a) for a in self.accounts], "next_cursor": None}


@asynccontextmanager
async def world_api() -> AsyncIterator[tuple[FakeApi, World]]:
    world = World()
    async with fake_api() as api:
        api.handler = world.answer
        yield api, world


async def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_api_command(parse(list(argv)), out, err)
    return code, out.getvalue(), err.getvalue()


async def test_watch_once_prints_the_clusters_then_the_accounts_and_exits_0() -> None:
    async with world_api() as (api, _):
        code, out, _ = await run_cli("watch", "--once", "--url", api.url, "--key", "k1")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "LAST", "SEEN", "ACKED", "LAG"]
    assert lines[1].split() == ["east", "online", "t0", "4", "0"]
    assert lines[3].split()[:3] == ["ID", "SLUG", "STATUS"]
    assert lines[4].split()[:3] == [ACME, "acme", "provisioning"]
    assert {call[2] for call in api.calls} == {"Bearer k1"}


async def test_watch_once_with_json_prints_one_document() -> None:
    async with world_api() as (api, world):
        code, out, _ = await run_cli("watch", "--once", "--json", "--url", api.url)
    assert code == EXIT_OK
    assert json.loads(out) == {"clusters": world.clusters, "accounts": world.accounts}


async def test_watch_exits_3_when_the_api_cannot_be_reached() -> None:
    code, _, err = await run_cli("watch", "--once", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == EXIT_UNREACHABLE
    assert "cannot reach" in err


@asynccontextmanager
async def following(api: FakeApi, *, as_json: bool = False) -> AsyncIterator[tuple[io.StringIO, io.StringIO]]:
    """A watch without a terminal, reading every 20 ms, stopped at the end of the block."""
    out, err = io.StringIO(), io.StringIO()
    async with RpcClient(api.url, "k") as rpc:
        follower = Follower(rpc, out, err, interval=0.02, as_json=as_json)
        task = asyncio.create_task(follower.run(await read_snapshot(rpc)), name="follower")
        try:
            yield out, err
        finally:
            task.cancel()
            _ = await asyncio.gather(task, return_exceptions=True)


def reads(api: FakeApi) -> int:
    return sum(1 for method, _, _ in api.calls if method == "cluster.list")


async def test_without_a_terminal_it_prints_the_tables_then_one_line_per_change() -> None:
    async with world_api() as (api, world), following(api) as (out, _):
        await wait_until(lambda: "acme" in out.getvalue(), message="first tables")
        assert "\x1b[" not in out.getvalue()
        first = out.getvalue()
        world.accounts = [account(ACME, "acme", "ready"), account(BETA, "beta", "provisioning", "pending")]
        await wait_until(lambda: "beta" in out.getvalue(), message="change lines")
        world.accounts = [account(ACME, "acme", "ready")]
        world.clusters = [{**world.clusters[0], "lag": 3}]
        await wait_until(lambda: "(gone)" in out.getvalue() and "cluster" in out.getvalue(),
                         message="a deletion and a cluster change")
        changes = out.getvalue()[len(first):].splitlines()
    assert [line.split()[:4] for line in changes] == [
        ["account", ACME, "acme", "ready"],
        ["account", BETA, "beta", "provisioning"],
        ["cluster", "east", "online", "t0"],
        ["account", BETA, "beta", "provisioning"],
    ]
    assert changes[2].split()[-1] == "3"
    assert changes[3].endswith("(gone)")


async def test_a_cluster_heartbeat_alone_is_not_a_change() -> None:
    async with world_api() as (api, world), following(api) as (out, _):
        await wait_until(lambda: "acme" in out.getvalue(), message="first tables")
        first = out.getvalue()
        world.clusters = [{**world.clusters[0], "last_seen": "t1"}]
        seen = reads(api)
        await wait_until(lambda: reads(api) >= seen + 3, message="reads after the heartbeat")
        world.clusters = [{**world.clusters[0], "lag": 1}]
        await wait_until(lambda: out.getvalue() != first, message="the lag change")
        changes = out.getvalue()[len(first):].splitlines()
    assert [line.split()[:4] for line in changes] == [["cluster", "east", "online", "t1"]]


async def test_with_json_each_change_is_an_object_naming_its_kind_and_type() -> None:
    async with world_api() as (api, world), following(api, as_json=True) as (out, _):
        await wait_until(lambda: len(out.getvalue().splitlines()) >= 2, message="the first read")
        world.accounts = []
        await wait_until(lambda: len(out.getvalue().splitlines()) >= 3, message="the deletion")
        events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["kind"], e["type"]) for e in events] == [
        ("cluster", "ADDED"), ("account", "ADDED"), ("account", "DELETED"),
    ]
    assert events[2]["object"]["id"] == ACME


async def test_a_failed_read_is_reported_once_and_the_watch_goes_on() -> None:
    async with world_api() as (api, world), following(api) as (out, err):
        await wait_until(lambda: "acme" in out.getvalue(), message="first tables")
        api.raw = "upstream is restarting"
        await wait_until(lambda: "retrying" in err.getvalue(), message="the failure reported")
        world.accounts = [account(ACME, "acme", "ready")]
        api.raw = None
        await wait_until(lambda: "reading again" in err.getvalue(), message="the recovery reported")
        await wait_until(lambda: "ready" in out.getvalue(), message="the change after it")
    assert err.getvalue().count("retrying") == 1


def test_the_live_block_redraws_in_place_and_keeps_log_lines_above_it() -> None:
    screen = io.StringIO()
    block = LiveBlock(screen)
    block.draw(["a", "b"])
    assert screen.getvalue() == "\r\x1b[Ja\nb\n"
    block.draw(["a", "b"])  # unchanged: nothing written
    assert screen.getvalue() == "\r\x1b[Ja\nb\n"
    mark = len(screen.getvalue())
    block.draw(["a", "c", "d"])
    assert screen.getvalue()[mark:] == "\x1b[2A\r\x1b[Ja\nc\nd\n"
    mark = len(screen.getvalue())
    sink = LineSink(block)
    sink.write("a log ")
    sink.write("line\n")
    assert screen.getvalue()[mark:] == "\x1b[3A\r\x1b[Ja log line\na\nc\nd\n"
    mark = len(screen.getvalue())
    block.close()
    block.draw(["x"])
    block.print_above("after")
    assert screen.getvalue()[mark:] == "\x1b[3A\r\x1b[Jafter\n"


def test_the_live_block_never_wraps_or_outgrows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    block = LiveBlock(screen)
    monkeypatch.setenv("COLUMNS", "20")
    monkeypatch.setenv("LINES", "5")
    block.draw(["x" * 50, *[f"row {i}" for i in range(10)]])
    lines = screen.getvalue().removeprefix("\r\x1b[J").splitlines()
    assert len(lines) == 4
    assert all(len(line) <= 19 for line in lines[:-1])
    assert lines[-1].startswith("… 8 more lines")


async def test_on_a_terminal_watch_redraws_in_place_and_ctrl_c_ends_it_with_0() -> None:
    env = {**os.environ, "TERM": "xterm", "NO_PROXY": "127.0.0.1,localhost"}
    async with world_api() as (api, world):
        argv = [str(BIN / "fabric"), "watch", "--interval", "0.1", "--url", api.url, "--key", "k"]
        async with on_terminal(argv, env=env) as term:
            await term.wait_for("provisioning")
            world.accounts = [account(ACME, "acme", "ready")]
            screen = await term.wait_for(" ready ")
            assert "\x1b[" in term.text  # redrawn with cursor movement, not appended
            assert "account " not in screen  # no change lines on a terminal
            assert f"Every 0.1s: fabric watch   {api.url}" in screen
            term.signal(signal.SIGINT)
            assert await term.wait() == 0


async def test_on_a_dumb_terminal_watch_prints_plain_change_lines() -> None:
    env = {**os.environ, "TERM": "dumb", "NO_PROXY": "127.0.0.1,localhost"}
    async with world_api() as (api, world):
        argv = [str(BIN / "fabric"), "watch", "--interval", "0.1", "--url", api.url, "--key", "k"]
        async with on_terminal(argv, env=env) as term:
            await term.wait_for("provisioning")
            world.accounts = [account(ACME, "acme", "ready")]
            await term.wait_for(f"account  {ACME}")
            assert "\x1b[" not in term.text
            term.signal(signal.SIGTERM)
            assert await term.wait() == 0
