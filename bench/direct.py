"""The direct path: a bare aiohttp client creating an account's Kubernetes objects itself.

The baseline of create-to-ready latency and of convergence throughput. For
each account it POSTs what a daemon creates for a new account, built by the
same functions (`core.desired.desired_namespace` and `desired_children`, in
the same order: the namespace, then each child once the one before was
created), to the same emulators. Nothing else: no bus, no state, no report.

Its objects carry `managed-by: fabric-bench` instead of `fabric` (the only
difference), so no daemon ever adopts them or collects them as garbage while
the figures run next to it. Namespaces are `acc-direct-...`, so they never
meet the system's accounts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Sequence

import aiohttp

from bench.figures import BenchError
from bench.system import Kube
from core.desired import desired_children, desired_namespace
from core.tenancy import KubeObject, TenancyPolicy, Tenant

POLICY = dataclasses.replace(TenancyPolicy(), managed_by_value="fabric-bench")
PLURALS = {
    "Namespace": "namespaces",
    "ResourceQuota": "resourcequotas",
    "LimitRange": "limitranges",
    "NetworkPolicy": "networkpolicies",
    "RoleBinding": "rolebindings",
}
OBJECT_TIMEOUT = 30.0


def tenant(tag: str, n: int) -> Tenant:
    slug = f"direct-{tag}-{n}"
    return Tenant(account_id=str(uuid.uuid4()), slug=slug, namespace=f"acc-{slug}",
                  name=f"Direct {tag} {n}", generation=1)


def objects(t: Tenant) -> list[KubeObject]:
    """Everything one account owns in a cluster, in the order it is created."""
    return [desired_namespace(t, POLICY), *desired_children(t, POLICY)]


def collection_path(obj: KubeObject) -> str:
    kind = obj["kind"]
    try:
        plural = PLURALS[kind]
    except KeyError:
        raise BenchError(f"the direct path does not know how to create a {kind}")
    api_version = obj["apiVersion"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    namespace = obj["metadata"].get("namespace")
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


class DirectClient:
    """One aiohttp session to every emulator; `async with DirectClient(kubes) as direct:`."""

    def __init__(self, kubes: dict[str, Kube], limit: int = 100) -> None:
        self._kubes = kubes
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DirectClient:
        self._session = aiohttp.ClientSession(
            trust_env=False, connector=aiohttp.TCPConnector(limit=self._limit),
            timeout=aiohttp.ClientTimeout(total=OBJECT_TIMEOUT),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def provision(self, cluster: str, t: Tenant) -> None:
        """Create the account's objects in one cluster, one after the other."""
        assert self._session is not None
        kube = self._kubes[cluster]
        headers = {"Authorization": f"Bearer {kube.token}"}
        for obj in objects(t):
            async with self._session.post(
                kube.url + collection_path(obj), json=obj, headers=headers
            ) as resp:
                body = await resp.read()
                if resp.status not in (200, 201, 202):
                    raise BenchError(f"direct path: {cluster} answered {resp.status} to a "
                                     f"{obj['kind']}: {body[:300]!r}")

    async def provision_everywhere(self, t: Tenant) -> float:
        """The account in every cluster at once; seconds until the last object was created."""
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for cluster in self._kubes:
                _ = tg.create_task(self.provision(cluster, t), name=f"bench:direct-{cluster}")
        return time.perf_counter() - start

    async def converge(self, tenants: Sequence[Tenant], parallel: int) -> float:
        """Every tenant in every cluster, `parallel` accounts in flight per cluster; seconds taken."""

        async def cluster_worker(cluster: str, todo: asyncio.Queue[Tenant]) -> None:
            while not todo.empty():
                await self.provision(cluster, todo.get_nowait())

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for cluster in self._kubes:
                todo: asyncio.Queue[Tenant] = asyncio.Queue()
                for t in tenants:
                    todo.put_nowait(t)
                for w in range(parallel):
                    _ = tg.create_task(cluster_worker(cluster, todo), name=f"bench:direct-{cluster}-{w}")
        return time.perf_counter() - start
