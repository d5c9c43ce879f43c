"""The system under test, started the way users start it: `bin/fabric up` in a temp state dir.

`System.start` runs `bin/fabric up --state-dir DIR --port P --clusters ...
--bus BUS` in its own session, waits for DIR/ready, and reads what `up` wrote: the API
URL (DIR/endpoints.json), the admin key (DIR/admin.key), each emulator's URL
and token and the legacy database's DSN (DIR/ports.json, through `up`'s own
layout code). `stop` sends SIGTERM and waits; whatever outlives that (or a
bench killed half-way) is SIGKILLed by the pids in DIR/run/*.pid, so no child
outlives the bench.

The environment is passed on as it is, so `FABRIC_API_WORKERS=8 fabric bench
create` measures that setting; what the bench sets is only a default for
what the environment lacks: the admin key's rate limit, lifted (a policy, not
a cost), and whatever a figure asks for (`env`). The bus is the exception: it
is always the flag, since a figure says which bus it measured (on the
JetStream bus, `FABRIC_NATS_URL` in the environment still names an outside
NATS cluster instead of `up`'s own nats-server).

`call` is a JSON-RPC client for the bench's own bookkeeping (not what is
measured: see bench/load.py); `cpu_seconds` reads a child's utime+stime, `cpu_by_child`
every child's (with the processes under it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from actors.legacy import embedded
from actors.up.layout import Layout, Ports
from bench.figures import BenchError
from transport.bus_choice import BusName
from transport.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
FABRIC = ROOT / "bin" / "fabric"
START_TIMEOUT = 180.0  # the first start initialises PostgreSQL
STOP_TIMEOUT = 60.0
CRASHES_AT_START = 3  # children that exited while `up` started: it will not become ready
# The admin key's token bucket is a policy; left at its default it would be the figure.
LIFTED_LIMITS = {"FABRIC_API_KEY_RATE": "1000000000", "FABRIC_API_KEY_BURST": "1000000000"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


async def poll(
    probe: Callable[[], Awaitable[bool]], *, timeout: float, interval: float, what: str
) -> None:
    """Await `probe` until it is true; BenchError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() >= deadline:
            raise BenchError(f"{what}: not reached within {timeout:g}s")
        await asyncio.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise BenchError(f"process {pid} is gone ({exc.strerror})")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a process and of every process under it (PostgreSQL's backends)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        with contextlib.suppress(BenchError):  # a backend that exited meanwhile
            total += tree_cpu_seconds(int(child))
    return total


@dataclass(frozen=True, slots=True)
class Kube:
    url: str
    token: str


class System:
    """One `fabric up` with `clusters`, under `root` (its state dir is root/state)."""

    def __init__(
        self, root: Path, clusters: Sequence[str], env: Mapping[str, str] | None = None,
        *, bus: BusName = "zmq",
    ) -> None:
        self.root = root
        self.clusters = tuple(clusters)
        self.bus: BusName = bus
        self._defaults = {**LIFTED_LIMITS, **(env or {})}  # what the caller's environment lacks
        self.layout = Layout.at(root / "state")
        self.log_path = root / "up.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self.api_url = ""
        self.admin_key = ""
        self.dsn = ""
        self.kubes: dict[str, Kube] = {}

    async def start(self) -> None:
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
        for name, value in self._defaults.items():
            env.setdefault(name, value)
        self.root.mkdir(parents=True, exist_ok=True)
        started_at = time.time()
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                str(FABRIC), "up", "--state-dir", str(self.layout.root), "--port", str(free_port()),
                "--clusters", ",".join(self.clusters), "--bus", self.bus,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
            )

        async def ready() -> bool:
            assert self._proc is not None
            if self._proc.returncode is not None:
                raise BenchError(f"fabric up exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.log_path.read_bytes().count(b'"child_exited"') >= CRASHES_AT_START:
                raise BenchError(f"a child of fabric up keeps exiting:\n{self.log_tail()}")
            try:
                return self.layout.ready_file.stat().st_mtime >= started_at
            except FileNotFoundError:
                return False

        try:
            await poll(ready, timeout=START_TIMEOUT, interval=0.1, what="fabric up ready")
        except BenchError as exc:
            raise BenchError(f"{exc}\n{self.log_tail()}") from None
        endpoints = json.loads(self.layout.endpoints_file.read_text())
        ports = Ports.from_json(json.loads(self.layout.ports_file.read_text()))
        self.api_url = str(endpoints["api"])
        self.admin_key = os.environ.get("FABRIC_ADMIN_KEY", "").strip() or (
            self.layout.admin_key_file.read_text().strip()
        )
        self.dsn = os.environ.get("FABRIC_LEGACY_DSN") or embedded.dsn(ports.postgres)
        for name in self.clusters:
            url = endpoints["clusters"][name]["api"]
            if name not in ports.kubes or url is None:
                raise BenchError(f"cluster {name} has no emulator in {self.layout.ports_file}")
            self.kubes[name] = Kube(str(url), ports.kubes[name].token)
        self._session = aiohttp.ClientSession(trust_env=False)

    async def stop(self) -> None:
        """SIGTERM `up` and wait; then SIGKILL whatever a pid file still names."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    _ = await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                _ = await proc.wait()
        for pid_file in self.layout.run_dir.glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.killpg(int(pid_file.read_text().strip()), signal.SIGKILL)

    def log_tail(self, chars: int = 4000) -> str:
        parts = []
        for path in [self.log_path, *sorted(self.layout.log_dir.glob("*.log"))]:
            with contextlib.suppress(OSError):
                parts.append(f"----- {path.name} -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # ---- the running system ----------------------------------------------------------------

    def pid(self, child: str) -> int:
        pid = self.pid_if_running(child)
        if pid is None:
            raise BenchError(f"no running {child} (no {self.layout.pid_file(child)})")
        return pid

    def pid_if_running(self, child: str) -> int | None:
        try:
            return int(self.layout.pid_file(child).read_text().strip())
        except (OSError, ValueError):
            return None

    def cpu_by_child(self) -> dict[str, float]:
        """Each running child's CPU seconds so far (with its own children), by name."""
        found: dict[str, float] = {}
        for pid_file in sorted(self.layout.run_dir.glob("*.pid")):
            pid = self.pid_if_running(pid_file.stem)
            if pid is not None:
                found[pid_file.stem] = tree_cpu_seconds(pid)
        return found

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BenchError("the system is not started")
        return self._session

    async def call(self, method: str, params: Mapping[str, Any], timeout: float = 30.0) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": dict(params)}
        try:
            async with self.session.post(
                f"{self.api_url}/rpc", json=body, timeout=aiohttp.ClientTimeout(total=timeout),
                headers={"Authorization": f"Bearer {self.admin_key}"},
            ) as resp:
                text = await resp.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BenchError(f"{method}: no answer ({type(exc).__name__}: {exc})")
        try:
            reply = json.loads(text)
        except ValueError:
            raise BenchError(f"{method}: HTTP {resp.status}, not JSON: {text[:300]!r}")
        if isinstance(reply, dict) and "error" in reply:
            raise BenchError(f"{method} {dict(params)}: {reply['error']}")
        if not isinstance(reply, dict) or "result" not in reply:
            # Somebody else's answer on the API's address, say.
            raise BenchError(f"{method}: HTTP {resp.status}, not a JSON-RPC reply: {text[:300]!r}")
        return reply["result"]

    async def create_ready(self, slug: str, timeout: float = 60.0) -> dict[str, Any]:
        """Create an account and wait until it is ready; the account as `account.wait` gave it."""
        account = await self.call("account.create", {"name": slug, "owner_email": f"{slug}@bench.example",
                                                     "slug": slug})
        return await self.wait_ready(account["id"], timeout)

    async def wait_ready(self, account_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            account: dict[str, Any] = await self.call(
                "account.wait", {"id": account_id, "timeout": max(0.0, min(30.0, left))},
                timeout=left + 10,
            )
            if account["status"] == "ready":
                return account
            if left <= 0:
                raise BenchError(f"account {account_id} not ready within {timeout:g}s: {account}")

    async def provisioning(self) -> bool:
        """Whether any account is still provisioning."""
        page = await self.call("account.list", {"status": "provisioning", "limit": 1})
        return bool(page["items"])

    async def quiet(self, timeout: float, interval: float = 0.2) -> None:
        """Wait until no account is provisioning: the background work of a figure is done."""

        async def none_provisioning() -> bool:
            return not await self.provisioning()

        await poll(none_provisioning, timeout=timeout, interval=interval, what="every account provisioned")

    async def accounts(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500}
        while True:
            page = await self.call("account.list", params)
            items.extend(page["items"])
            if not page["next_cursor"]:
                return items
            params = {"limit": 500, "cursor": page["next_cursor"]}
