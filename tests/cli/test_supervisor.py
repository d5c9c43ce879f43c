"""`fabric up`'s pieces without the real system: ports kept across runs, endpoints shape,
a child restarted with the same argv and its pid file kept current, bad settings refused."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import stat
import sys
from pathlib import Path

from actors.runtime import ActorRef, ActorSystem
from actors.up.child import ChildActor, ChildMessage, ChildStatus, GetStatus, Launch, Timing
from actors.up.conductor import Conductor, Staged
from actors.up.layout import Layout, admin_key, load_or_allocate_ports, read_pid
from actors.up.options import UpSettings
from actors.up.plan import ChildSpec, endpoints_document
from actors.up.probes import TcpProbe
from tests.support.ports import free_port
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until


def test_ports_are_chosen_once_and_reused_and_a_new_cluster_gets_its_own(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    layout.prepare()
    first = load_or_allocate_ports(layout, api_port=None, kube_clusters=["a"])
    again = load_or_allocate_ports(layout, api_port=None, kube_clusters=["a", "b"])
    assert again.broker_control == first.broker_control
    assert again.kubes["a"] == first.kubes["a"]
    assert "b" in again.kubes
    assert again.kubes["b"].port != first.kubes["a"].port
    assert again.api == 8080
    assert load_or_allocate_ports(layout, api_port=9999, kube_clusters=["a"]).api == 9999


def test_admin_key_is_generated_once_with_mode_0600_unless_given_by_env(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    layout.prepare()
    key = admin_key(layout, {})
    assert admin_key(layout, {}) == key
    assert stat.S_IMODE(layout.admin_key_file.stat().st_mode) == 0o600
    assert admin_key(layout, {"FABRIC_ADMIN_KEY": "given"}) == "given"


def test_endpoints_document_has_the_contract_shape(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    layout.prepare()
    ports = load_or_allocate_ports(layout, api_port=8123, kube_clusters=["a", "b"])
    settings = UpSettings(layout, 8123, ("a", "b"), {}, "postgresql://x", "30", "json")
    doc = json.loads(json.dumps(endpoints_document(settings, ports)))
    assert doc["api"] == "http://127.0.0.1:8123"
    assert set(doc["broker"]) == {"control", "events", "acks"}
    assert all(v.startswith("tcp://127.0.0.1:") for v in doc["broker"].values())
    assert doc["clusters"]["a"] == {
        "api": f"http://127.0.0.1:{ports.kubes['a'].port}",
        "kubeconfig": str(tmp_path / "clusters" / "a.kubeconfig"),
    }


async def test_a_killed_child_is_restarted_and_its_pid_file_follows(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    layout.prepare()
    port = free_port()
    # The child serves a port, so the TCP probe can call it ready.
    script = (
        "import socket,time;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        f"s.bind(('127.0.0.1',{port}));s.listen();time.sleep(120)"
    )
    spec = ChildSpec("sleeper", (sys.executable, "-c", script), TcpProbe("127.0.0.1", port), 0)
    timing = Timing(backoff_initial=0.05, backoff_max=0.2, stop_timeout=5.0)
    pid_file = layout.pid_file("sleeper")
    async with ActorSystem() as system:
        ref = system.spawn(lambda: ChildActor(spec, layout, timing), name="sleeper")
        ref.tell(Launch())
        first: int = await wait_until(lambda: read_pid(pid_file) or 0, timeout=30, message="pid")
        ready: ChildStatus = await wait_until(lambda: _ready(ref), timeout=30, message="ready")
        assert ready.restarts == 0
        os.kill(first, signal.SIGKILL)
        second: int = await wait_until(
            lambda: (p := read_pid(pid_file) or 0) != first and p, timeout=30, message="new pid"
        )
        status: ChildStatus = await wait_until(lambda: _ready(ref), timeout=30, message="ready again")
        assert status.restarts == 1
        assert status.last_exit == -signal.SIGKILL
    assert not pid_file.exists()
    assert _gone(second)


async def _ready(ref: ActorRef[ChildMessage]) -> ChildStatus:
    status = await ref.ask(GetStatus())
    assert status.state == "ready", status
    return status


def _gone(pid: int) -> bool:
    """No such process, or only a zombie left (reaped by whoever is its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


async def test_up_refuses_a_bad_cluster_name_with_one_line(procs: ProcessGroup, tmp_path: Path) -> None:
    proc = await procs.start("fabric", "up", "--state-dir", str(tmp_path / "s"), "--clusters", "Bad_Name")
    rc = await asyncio.wait_for(proc.process.wait(), 60)
    assert rc == 2
    # (A first run may also print the venv preparation line; the error is the last line.)
    lines = [line for line in proc.log_text().splitlines() if line.strip()]
    assert lines[-1:] == [
        "fabric up: --clusters: 'Bad_Name' is not a DNS-1123 label of at most 40 characters"
    ]


async def test_conductor_starts_stages_in_order_and_writes_ready_when_all_are_ready(
    tmp_path: Path,
) -> None:
    layout = Layout.at(tmp_path)
    layout.prepare()
    sleeper = (sys.executable, "-c", "import time; time.sleep(120)")
    # Readiness is in the test's hands: each child counts as ready once its port is served here.
    ports = [free_port(), free_port()]
    specs = [ChildSpec(f"stage{i}", sleeper, TcpProbe("127.0.0.1", port), i) for i, port in enumerate(ports)]
    timing = Timing(stop_timeout=5.0)
    out = io.StringIO()
    servers: list[asyncio.Server] = []

    async def serve(port: int) -> None:
        servers.append(await asyncio.start_server(_close, "127.0.0.1", port))

    try:
        async with ActorSystem() as system:
            staged = [
                Staged(s.name, s.stage, system.spawn(lambda s=s: ChildActor(s, layout, timing), name=s.name))  # type: ignore[misc]
                for s in specs
            ]
            system.spawn(lambda: Conductor(staged, layout, "http://api", out), name="conductor")
            await wait_until(lambda: layout.pid_file("stage0").exists(), timeout=30, message="stage0")
            assert not layout.pid_file("stage1").exists()
            await serve(ports[0])
            await wait_until(lambda: layout.pid_file("stage1").exists(), timeout=30, message="stage1")
            assert not layout.ready_file.exists()
            await serve(ports[1])
            await wait_until(layout.ready_file.exists, timeout=30, message="ready file")
            assert "Fabric is up. API: http://api" in out.getvalue()
        assert not layout.ready_file.exists()
        assert not list(layout.run_dir.glob("*.pid"))
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_fabric_help_lists_every_command(procs: ProcessGroup) -> None:
    proc = await procs.start("fabric", "--help")
    assert await asyncio.wait_for(proc.process.wait(), 60) == 0
    text = proc.log_text()
    for command in ("up", "status", "keys", "account", "cluster", "test", "bench"):
        assert command in text, command
    proc = await procs.start("fabric", "up", "--help")
    assert await asyncio.wait_for(proc.process.wait(), 60) == 0
    for flag in ("--state-dir", "--port", "--clusters", "--kubeconfig"):
        assert flag in proc.log_text(), flag
