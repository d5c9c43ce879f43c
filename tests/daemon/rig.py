"""Real-process rig for daemon tests: bin/kube-emulator, bin/daemon, and a broker event reader.

    kube = await start_emulator(procs, tmp_path / "kube")
    await kube.fault("error500", count=3, method="POST", path_prefix="/api/v1/namespaces")
    daemon = await start_daemon(procs, tmp_path, "east", kube, endpoints, "--resync", "1")
    async with EventReader(endpoints) as reader:
        await wait_until(lambda: reader.of_type("namespace.provisioned"), ...)

The broker is reached only through `transport.connector.BrokerConnector`, the
`core.bus.BusConnector` port the daemon itself uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from core.bus import ConsumerInfo, EventSubscription
from core.envelope import Envelope
from tests.support.keys import api_keys, client_flags
from tests.support.ports import free_port
from tests.support.processes import Proc, ProcessGroup
from tests.support.wait import wait_until
from transport.connector import BrokerConnector
from transport.endpoints import BrokerEndpoints
from transport.sockets import ClientKeys

TOKEN = "daemon-test-token"
FAST_DAEMON = (
    "--retry-initial", "0.05", "--retry-cap", "0.5", "--request-timeout", "2",
    "--heartbeat-interval", "0.2", "--failed-after", "3", "--log-level", "debug",
)


class Emulator:
    def __init__(self, proc: Proc, port: int, kubeconfig: Path, *, tls: bool = False) -> None:
        self.proc = proc
        self.port = port
        self.kubeconfig = kubeconfig
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    async def _call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            # The test's own calls skip verification; the daemon verifies with the kubeconfig CA.
            session.request(
                method, self.url + path, json=body, headers=headers, ssl=False
            ) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    async def fault(
        self,
        mode: str,
        *,
        count: int = 1,
        method: str | None = None,
        path_prefix: str | None = None,
        status: int = 500,
        seconds: float = 30.0,
    ) -> None:
        match = {k: v for k, v in (("method", method), ("path_prefix", path_prefix)) if v}
        body = {"mode": mode, "count": count, "status": status, "seconds": seconds, "match": match}
        code, answer = await self._call("POST", "/_emulator/faults", body)
        assert code < 300, answer

    async def clear_faults(self) -> None:
        code, answer = await self._call("DELETE", "/_emulator/faults")
        assert code < 300, answer

    async def pending_faults(self) -> list[Any]:
        _, answer = await self._call("GET", "/_emulator/faults")
        return list(answer if isinstance(answer, list) else answer.get("faults", []))

    async def namespace(self, name: str) -> dict[str, Any] | None:
        return await self.read(f"/api/v1/namespaces/{name}")

    async def read(self, path: str) -> dict[str, Any] | None:
        code, answer = await self._call("GET", path)
        return answer if code == 200 else None

    async def create(self, path: str, body: dict[str, Any]) -> None:
        code, answer = await self._call("POST", path, body)
        assert code == 201, answer

    async def children(self, namespace: str) -> list[str]:
        found = []
        for path in (
            f"/api/v1/namespaces/{namespace}/resourcequotas",
            f"/api/v1/namespaces/{namespace}/limitranges",
            f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        ):
            _, answer = await self._call("GET", path)
            found += [f"{i['kind'] if 'kind' in i else path.rsplit('/', 1)[1]}/{i['metadata']['name']}"
                      for i in answer.get("items", [])]
        return sorted(found)

    async def create_namespace(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        code, answer = await self._call("POST", "/api/v1/namespaces", body)
        assert code == 201, answer
        return dict(answer)

    async def delete_namespace(self, name: str) -> None:
        await self.delete(f"/api/v1/namespaces/{name}")

    async def delete(self, path: str) -> None:
        code, answer = await self._call("DELETE", path)
        assert code in (200, 202, 404), answer


async def start_emulator(
    procs: ProcessGroup,
    data_dir: Path,
    *,
    port: int | None = None,
    name: str = "kube",
    tls: bool = False,
) -> Emulator:
    port = port or free_port()
    kubeconfig = data_dir.parent / f"{name}.kubeconfig"
    proc = await procs.start(
        "kube-emulator", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
        "--kubeconfig-out", str(kubeconfig), "--token", TOKEN, "--finalize-delay", "0.3",
        *(["--tls"] if tls else []), name=name,
    )
    emulator = Emulator(proc, port, kubeconfig, tls=tls)

    async def answers() -> bool:
        code, _ = await emulator._call("GET", "/api/v1/namespaces")
        return code == 200 and kubeconfig.exists()

    _ = await wait_until(answers, timeout=30, message=f"kube emulator on port {port}")
    return emulator


def write_kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig for an emulator that is not running yet (same token as `start_emulator`)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n"
        f"users:\n- name: u\n  user:\n    token: {TOKEN}\n"
        "contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
    )
    return path


async def start_daemon(
    procs: ProcessGroup,
    state_root: Path,
    cluster: str,
    kubeconfig: Path,
    endpoints: BrokerEndpoints,
    *args: str,
) -> Proc:
    return await procs.start(
        "daemon", "--cluster", cluster, "--kubeconfig", str(kubeconfig),
        "--broker", str(endpoints), *client_flags(f"cluster-{cluster}"),
        "--state-dir", str(state_root / f"daemon-{cluster}"),
        *FAST_DAEMON, *args, name=f"daemon-{cluster}",
    )


async def publish(endpoints: BrokerEndpoints, *envelopes: Envelope) -> None:
    async with BrokerConnector(endpoints, keys=api_keys()).publisher() as publisher:
        _ = await publisher.publish(list(envelopes))


async def consumers(endpoints: BrokerEndpoints) -> list[ConsumerInfo]:
    async with BrokerConnector(endpoints, keys=api_keys(), timeout=2.0).directory() as directory:
        return list(await directory.consumers())


async def consumer_info(endpoints: BrokerEndpoints, name: str) -> ConsumerInfo | None:
    return next((c for c in await consumers(endpoints) if c.name == name), None)


class EventReader:
    """Collects every record the broker delivers to a durable consumer of its own, in seq order
    (a compacted log: older records of a key may be gone before the reader sees them)."""

    def __init__(self, endpoints: BrokerEndpoints, keys: ClientKeys | None = None) -> None:
        """`keys`: the api identity's, default the test session's (a `fabric up` has its own)."""
        self.events: list[Envelope] = []
        self._connector = BrokerConnector(endpoints, keys=keys or api_keys())
        self._consumer = f"cache-reader-{uuid.uuid4().hex[:8]}"  # one the api identity may read
        self._task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> EventReader:
        sub = await self._stack.enter_async_context(self._connector.subscription(self._consumer))
        self._task = asyncio.create_task(self._collect(sub), name="event-reader")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stack.aclose()

    async def _collect(self, sub: EventSubscription) -> None:
        async for batch in sub.batches():
            self.events.extend(d.envelope for d in batch.deliveries)
            await sub.ack(batch.position)

    def of_type(self, wire_name: str, account_id: str | None = None) -> list[Envelope]:
        return [
            e for e in self.events
            if e.type == wire_name and (account_id is None or e.aggregate_id == account_id)
        ]

    def latest(self, key: str) -> Envelope | None:
        """The newest record of `key` seen (what the compacted log keeps)."""
        return next((e for e in reversed(self.events) if e.key == key), None)
