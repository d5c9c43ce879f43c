"""Watch: ordered ADDED/MODIFIED/DELETED, resume from a resourceVersion, 410, bookmarks, selectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.rest import ApiException

from tests.kube_emulator.conftest import api_client, core
from tests.support.kube import KubeEndpoint, restart_kube_emulator, start_kube_emulator
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.processes


async def marker(v1: Any) -> str:
    """A resourceVersion to watch from ("0" would mean: the current state, then changes)."""
    created = await v1.create_namespace({"metadata": {"generateName": "marker-"}})
    return str(created.metadata.resource_version)


async def drain(v1: Any, **kwargs: Any) -> None:
    async with watch.Watch() as w:
        async for _ in w.stream(v1.list_namespace, timeout_seconds=5, **kwargs):
            pass


async def collect(
    v1: Any, *, until: str, resource_version: str, **kwargs: Any
) -> list[tuple[str, str, int]]:
    seen: list[tuple[str, str, int]] = []
    async with watch.Watch() as w:
        async for event in w.stream(v1.list_namespace, resource_version=resource_version,
                                    timeout_seconds=10, **kwargs):
            obj = event["object"]
            seen.append((event["type"], obj.metadata.name, int(obj.metadata.resource_version)))
            if (event["type"], obj.metadata.name) == ("DELETED", until):
                break
    return seen


async def test_watch_sees_added_modified_deleted_in_order(
    api: client.ApiClient
) -> None:
    v1 = core(api)
    start = await marker(v1)
    await v1.create_namespace({"metadata": {"name": "w-1"}})
    await v1.patch_namespace("w-1", {"metadata": {"labels": {"a": "b"}}})
    await v1.delete_namespace("w-1")
    seen = await collect(v1, until="w-1", resource_version=start)
    types = [t for t, _, _ in seen]
    assert types[:3] == ["ADDED", "MODIFIED", "MODIFIED"]  # created, labelled, Terminating
    assert types[-1] == "DELETED"
    versions = [rv for _, _, rv in seen]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


async def test_watch_resumes_after_a_resource_version(api: client.ApiClient) -> None:
    v1 = core(api)
    first = await v1.create_namespace({"metadata": {"name": "r-1"}})
    await v1.create_namespace({"metadata": {"name": "r-2"}})
    await v1.delete_namespace("r-2")
    seen = await collect(v1, until="r-2", resource_version=first.metadata.resource_version)
    assert [n for _, n, _ in seen] == ["r-2"] * len(seen)
    assert seen[0][0] == "ADDED"


async def test_watch_without_version_starts_with_the_current_state(api: client.ApiClient) -> None:
    v1 = core(api)
    await v1.create_namespace({"metadata": {"name": "c-1"}})
    await v1.create_namespace({"metadata": {"name": "c-2"}})
    await v1.delete_namespace("c-2")
    seen = await collect(v1, until="c-2", resource_version="0")
    assert ("ADDED", "c-1") in [(t, n) for t, n, _ in seen]


async def test_label_selector_watch_reports_objects_leaving_the_selection_as_deleted(
    api: client.ApiClient,
) -> None:
    v1 = core(api)
    start = await marker(v1)
    await v1.create_namespace({"metadata": {"name": "l-1", "labels": {"managed": "yes"}}})
    await v1.patch_namespace("l-1", {"metadata": {"labels": {"managed": None}}})
    await v1.patch_namespace("l-1", {"metadata": {"labels": {"managed": "yes"}}})
    seen: list[str] = []
    async with watch.Watch() as w:
        async for event in w.stream(v1.list_namespace, resource_version=start,
                                    label_selector="managed=yes", timeout_seconds=5):
            seen.append(event["type"])
            if len(seen) == 3:
                break
    assert seen == ["ADDED", "DELETED", "ADDED"]


async def test_too_old_resource_version_after_restart_is_410_expired(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    kube = await start_kube_emulator(procs, tmp_path / "kube")
    async with await api_client(kube) as api:
        v1 = core(api)
        await v1.create_namespace({"metadata": {"name": "old-1"}})
        await v1.create_namespace({"metadata": {"name": "old-2"}})
    kube = await restart_kube_emulator(procs, kube)
    async with await api_client(kube) as api:
        v1 = core(api)
        with pytest.raises(ApiException) as info:
            await drain(v1, resource_version="1")
        assert info.value.status == 410
        assert info.value.reason == "Expired: too old resource version: 1 (3)"


async def test_bookmarks_carry_the_resource_version(procs: ProcessGroup, tmp_path: Path) -> None:
    kube = await start_kube_emulator(procs, tmp_path / "kube",
                                     extra_args=("--bookmark-interval", "0.1"))
    code, listed = await kube.request("GET", "/api/v1/namespaces")
    assert code == 200
    rv = listed["metadata"]["resourceVersion"]
    url = (f"{kube.url}/api/v1/namespaces?watch=True&allowWatchBookmarks=True"
           f"&resourceVersion={rv}&timeoutSeconds=5")
    async with aiohttp.ClientSession() as session, session.get(
        url, headers={"Authorization": f"Bearer {kube.token}"}
    ) as resp:
        assert resp.status == 200
        event = json.loads(await resp.content.readline())
    assert event == {"type": "BOOKMARK", "object": {
        "kind": "Namespace", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}}
    async with await api_client(kube) as api:
        v1 = core(api)
        async with watch.Watch() as w:
            async for seen in w.stream(v1.list_namespace, resource_version=rv,
                                       allow_watch_bookmarks=True, timeout_seconds=5):
                assert seen["type"] == "BOOKMARK"
                break


async def test_send_initial_events_ends_with_an_annotated_bookmark(
    shared_kube: KubeEndpoint,
) -> None:
    kube = shared_kube
    await kube.request("POST", "/api/v1/namespaces",
                       json={"metadata": {"name": "initial", "labels": {"initial": "yes"}}})
    url = (f"{kube.url}/api/v1/namespaces?watch=1&sendInitialEvents=true&allowWatchBookmarks=1"
           "&resourceVersionMatch=NotOlderThan&labelSelector=initial&timeoutSeconds=5")
    async with aiohttp.ClientSession() as session, session.get(
        url, headers={"Authorization": f"Bearer {kube.token}"}
    ) as resp:
        first = json.loads(await resp.content.readline())
        second = json.loads(await resp.content.readline())
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "initial")
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_watch_ends_when_its_timeout_expires(shared_kube: KubeEndpoint) -> None:
    kube = shared_kube
    url = f"{kube.url}/api/v1/namespaces?watch=1&timeoutSeconds=1&labelSelector=none-such"
    async with aiohttp.ClientSession() as session, session.get(
        url, headers={"Authorization": f"Bearer {kube.token}"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert await resp.read() == b""
