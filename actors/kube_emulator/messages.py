"""What the store actor understands: one frozen message per API operation.

Objects handed out by the store are never mutated afterwards (every change makes a new
dict), so readers may keep them; they must not mutate them either.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from actors.kube_emulator.objects import PatchType
from actors.kube_emulator.resources import ResourceType
from actors.runtime import Request

JSON = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    rv: int
    rtype: ResourceType
    object: JSON
    old: JSON | None  # the object before the change; selectors use it to derive ADDED/DELETED


@dataclass(frozen=True, slots=True)
class WatchStart:
    watch_id: int
    initial: list[WatchEvent]
    queue: asyncio.Queue[WatchEvent]
    resource_version: int


@dataclass(frozen=True, slots=True)
class Create(Request[JSON]):
    rtype: ResourceType
    namespace: str | None
    body: JSON
    manager: str
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Get(Request[JSON]):
    rtype: ResourceType
    namespace: str | None
    name: str


@dataclass(frozen=True, slots=True)
class ListObjects(Request[tuple[list[JSON], int]]):
    rtype: ResourceType
    namespace: str | None  # None: every namespace (or a cluster-scoped kind)


@dataclass(frozen=True, slots=True)
class Replace(Request[JSON]):
    rtype: ResourceType
    namespace: str | None
    name: str
    body: JSON
    manager: str
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Patch(Request[tuple[JSON, bool]]):
    """Reply: (object, created) - an apply patch may create."""

    rtype: ResourceType
    namespace: str | None
    name: str
    patch_type: PatchType
    patch: Any
    manager: str
    dry_run: bool = False
    force: bool = False  # apply only: take over fields other appliers own


@dataclass(frozen=True, slots=True)
class Delete(Request[JSON]):
    """Reply: the object (still terminating / finalizing) or a Success Status."""

    rtype: ResourceType
    namespace: str | None
    name: str
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Finalize(Request[JSON]):
    """PUT /api/v1/namespaces/NAME/finalize: replace spec.finalizers."""

    name: str
    body: JSON


@dataclass(frozen=True, slots=True)
class OpenWatch(Request[WatchStart]):
    rtype: ResourceType
    namespace: str | None
    resource_version: str | None


@dataclass(frozen=True, slots=True)
class CloseWatch:
    watch_id: int


@dataclass(frozen=True, slots=True)
class FinalizeDue:
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class SetStuck(Request[None]):
    """Keep (or stop keeping) a namespace Terminating, as a cluster with a stuck finalizer."""

    name: str
    stuck: bool


StoreMessage = (
    Create | Get | ListObjects | Replace | Patch | Delete | Finalize | OpenWatch | CloseWatch
    | FinalizeDue | SetStuck
)
