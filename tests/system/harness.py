"""Whole-system harness: a real `fabric up` (through bin/fabric) and clients to what it runs.

- `FabricUp` starts `bin/fabric up` on one bus (`zmq` or `jetstream`, as
  FABRIC_BUS) in its own session, waits for DIR/ready,
  kills children by the pids in DIR/run/*.pid, and on close stops `up` with
  SIGTERM (it must exit 0), then SIGKILLs whatever a pid file still names, so
  nothing outlives the test even when `up` itself was SIGKILLed.
- `rpc` sorts every JSON-RPC call into ok / fail (a definite JSON-RPC error) /
  info (no usable answer: the call may or may not have happened), as Jepsen does.
- `namespaces` lists a cluster's Fabric namespaces over the kube API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.kube import kubectl_path
from tests.support.ports import free_port
from tests.support.processes import BIN
from tests.support.wait import wait_until

MANAGED = "app.kubernetes.io/managed-by=fabric"
BUSES = ("zmq", "jetstream")

# Timers compressed for tests; every child inherits them from `fabric up`.
FAST_ENV = {
    "FABRIC_RESYNC_SECONDS": "2",
    "FABRIC_HEARTBEAT_SECONDS": "0.2",
    "FABRIC_BROKER_CONSUMER_TIMEOUT": "2",
    "FABRIC_NATS_OFFLINE_AFTER": "2",
    "FABRIC_RETRY_INITIAL_SECONDS": "0.1",
    "FABRIC_RETRY_CAP_SECONDS": "1",
    "FABRIC_UP_RESTART_BACKOFF_MAX": "0.5",
    "FABRIC_UP_STOP_TIMEOUT": "5",
    "FABRIC_KUBE_FINALIZE_DELAY": "0.2",
    "FABRIC_RETRY_BACKOFF_MAX": "1",
    "FABRIC_DIRECTORY_INTERVAL": "0.5",
    "FABRIC_RELAY_POLL_SECONDS": "0.5",
    "FABRIC_DELETE_TIMEOUT_SECONDS": "5",
}


class FabricUp:
    def __init__(
        self, state_dir: Path, log_dir: Path, clusters: list[str], port: int | None = None,
        *, bus: str = "zmq",
    ) -> None:
        self.bus = bus
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.clusters = clusters
        self.port = port or free_port(count=4)  # room for API replicas on the next ports
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.started_at = 0.0

    # ---- lifecycle -------------------------------------------------------------------------

    def start(
        self,
        clusters: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if clusters is not None:
            self.clusters = clusters
        self.runs += 1
        # A run killed with SIGKILL leaves its `ready` behind: only a newer one counts.
        self.started_at = time.time()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}
        env.update(FAST_ENV)
        env["NO_PROXY"] = "127.0.0.1,localhost"
        env["FABRIC_BUS"] = self.bus
        env.update(extra_env or {})
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"up-{self.runs}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "fabric"),
                    "up",
                    "--state-dir",
                    str(self.state_dir),
                    "--port",
                    str(self.port),
                    "--clusters",
                    ",".join(self.clusters),
                    *extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )

    async def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"fabric up exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                return (self.state_dir / "ready").stat().st_mtime >= self.started_at
            except FileNotFoundError:
                return False

        try:
            await wait_until(ready, timeout=timeout, interval=0.1, message="fabric up ready")
        except TimeoutError:
            raise AssertionError(f"fabric up not ready in {timeout}s:\n{self.log_tail()}")
        # `ready` means every daemon's consumer is online at the bus; the API learns that at
        # its next directory refresh. Until then an account lists only the clusters it knows,
        # so a test that expects every cluster in its first answers starts after that.
        async def api_sees_every_cluster() -> bool:
            async with aiohttp.ClientSession(trust_env=False) as session:
                out = await rpc(session, self.api_url, self.admin_key, "cluster.list", {})
            return out.kind == "ok" and {
                c["name"] for c in out.result if c["status"] == "online"
            } >= set(self.clusters)

        await wait_until(api_sees_every_cluster, timeout=timeout, interval=0.2,
                         message="the API sees every cluster online")

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM `up` and wait for it; returns its exit code (children must be gone too)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"fabric up did not stop within {timeout}s:\n{self.log_tail()}")

    def kill_up(self) -> dict[str, int]:
        """SIGKILL `fabric up` itself (its children live on); returns the children's pids."""
        assert self.process is not None
        pids = {p.stem: pid for p in (self.state_dir / "run").glob("*.pid") if (pid := self.pid(p.stem))}
        self.process.kill()
        self.process.wait()
        return pids

    def close(self) -> None:
        """Whatever happened: `up` and every child it had are gone afterwards."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(AssertionError):
                self.stop()
        for pid_file in (self.state_dir / "run").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text().strip())
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def log_tail(self, chars: int = 8000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("up-*.log")) + sorted((self.state_dir / "logs").glob("*.log")):
            with contextlib.suppress(OSError):
                parts.append(f"----- {path.name} -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def log_events(self, run: int) -> list[dict[str, Any]]:
        """The JSON log events `fabric up` itself wrote during its `run`-th start."""
        events = []
        for line in (self.log_dir / f"up-{run}.log").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    # ---- what it wrote ---------------------------------------------------------------------

    @property
    def endpoints(self) -> dict[str, Any]:
        data = json.loads((self.state_dir / "endpoints.json").read_text())
        assert isinstance(data, dict)
        return data

    @property
    def api_url(self) -> str:
        return str(self.endpoints["api"])

    @property
    def admin_key(self) -> str:
        return (self.state_dir / "admin.key").read_text().strip()

    def kubeconfig(self, cluster: str) -> Path:
        return self.state_dir / "clusters" / f"{cluster}.kubeconfig"

    def kube_token(self, cluster: str) -> str:
        ports = json.loads((self.state_dir / "ports.json").read_text())
        return str(ports["kubes"][cluster]["token"])

    @property
    def bus_child(self) -> str:
        """The child that is the bus: `broker`, or on the JetStream bus the local `nats`."""
        return "nats" if self.bus == "jetstream" else "broker"

    def pid(self, child: str) -> int | None:
        """The child's current pid. `broker` names the bus's child on either bus, so a fault
        schedule written for the broker kills the nats-server on the JetStream bus."""
        if child == "broker":
            child = self.bus_child
        try:
            return int((self.state_dir / "run" / f"{child}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    async def kill(self, child: str) -> int:
        """SIGKILL the child's current process (waiting for it to exist); returns the pid."""
        pid: int = await wait_until(lambda: self.pid(child) or 0, timeout=30, message=f"{child} pid")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid


# ---- JSON-RPC with Jepsen-style outcomes -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # "ok" | "fail" | "info"
    result: Any = None
    code: int | None = None
    detail: str = ""


async def rpc(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    method: str,
    params: dict[str, Any],
    timeout: float = 10.0,
) -> Outcome:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    try:
        async with session.post(
            f"{url}/rpc",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            text = await resp.text()
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Outcome("info", detail=f"{type(exc).__name__}: {exc}")
    try:
        reply = json.loads(text)
    except ValueError:
        return Outcome("info", detail=f"not JSON: {text[:200]!r}")
    if "error" in reply:
        code = int(reply["error"]["code"])
        # An internal error says nothing about whether the write happened.
        kind = "info" if code == -32603 else "fail"
        return Outcome(kind, code=code, detail=str(reply["error"].get("message")))
    return Outcome("ok", result=reply["result"])


async def call_ok(up: FabricUp, method: str, params: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession(trust_env=False) as session:
        out = await rpc(session, up.api_url, up.admin_key, method, params)
    assert out.kind == "ok", f"{method} {params}: {out}"
    return out.result


async def create_account(up: FabricUp, slug: str) -> dict[str, Any]:
    """`account.create` named and slugged `slug`; it must answer."""
    account: dict[str, Any] = await call_ok(
        up, "account.create", {"name": slug, "owner_email": f"{slug}@example.com", "slug": slug}
    )
    return account


async def list_accounts(up: FabricUp) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = await call_ok(up, "account.list", params)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


async def namespaces(up: FabricUp, cluster: str) -> list[str]:
    """Names of the namespaces Fabric manages in the cluster, read from its kube API."""
    api = up.endpoints["clusters"][cluster]["api"]
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.get(
            f"{api}/api/v1/namespaces",
            params={"labelSelector": MANAGED},
            headers={"Authorization": f"Bearer {up.kube_token(cluster)}"},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        data = await resp.json()
    return sorted(item["metadata"]["name"] for item in data["items"])


async def kube_request(up: FabricUp, cluster: str, method: str, path: str) -> tuple[int, dict[str, Any]]:
    api = up.endpoints["clusters"][cluster]["api"]
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.request(
            method,
            f"{api}{path}",
            headers={"Authorization": f"Bearer {up.kube_token(cluster)}"},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp,
    ):
        body = await resp.json(content_type=None)
        return resp.status, body if isinstance(body, dict) else {}


async def kubectl_namespaces(up: FabricUp, cluster: str) -> list[str]:
    cache = up.state_dir.parent / "kubectl-cache"
    proc = await asyncio.create_subprocess_exec(
        kubectl_path(),
        "--cache-dir",
        str(cache),
        "--kubeconfig",
        str(up.kubeconfig(cluster)),
        "get",
        "namespaces",
        "-l",
        MANAGED,
        "-o",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "HOME": str(cache)},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return sorted(item["metadata"]["name"] for item in json.loads(out)["items"])


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


async def eventually(
    probe: Callable[[], Awaitable[object]], *, timeout: float, message: str, interval: float = 0.1
) -> None:
    """wait_until for probes whose value does not matter (they assert, or return truthy)."""
    value: object = await wait_until(probe, timeout=timeout, interval=interval, message=message)
    del value
