"""Fixtures for the kube emulator tests: a running emulator and a kubernetes-asyncio client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from tests.support.kube import KubeEndpoint, kube_emulator_process, start_kube_emulator
from tests.support.processes import ProcessGroup


@pytest.fixture
async def kube(procs: ProcessGroup, tmp_path: Path) -> KubeEndpoint:
    """A fresh emulator of the test's own (for tests that restart it or need it empty)."""
    return await start_kube_emulator(procs, tmp_path / "kube", finalize_delay=0.2)


@pytest.fixture(scope="module")
def shared_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEndpoint]:
    """One emulator for a whole module: tests use their own namespace names."""
    with kube_emulator_process(tmp_path_factory.mktemp("kube") / "data",
                               finalize_delay=0.2) as kube:
        yield kube


async def api_client(kube: KubeEndpoint) -> client.ApiClient:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


@pytest.fixture
async def faulty(shared_kube: KubeEndpoint) -> AsyncIterator[KubeEndpoint]:
    """The module's emulator, with every fault rule cleared after the test."""
    yield shared_kube
    await shared_kube.clear_faults()


@pytest.fixture
async def api(shared_kube: KubeEndpoint) -> AsyncIterator[client.ApiClient]:
    async with await api_client(shared_kube) as api:
        yield api


# The generated client is typed for model bodies; tests send dicts as the daemon may, so
# they hold the API objects as Any.
def core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


def networking(api: client.ApiClient) -> Any:
    return client.NetworkingV1Api(api)


def rbac(api: client.ApiClient) -> Any:
    return client.RbacAuthorizationV1Api(api)
