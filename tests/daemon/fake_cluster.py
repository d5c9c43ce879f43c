"""An in-memory `core.tenancy.ClusterApi` with Kubernetes-like semantics and fault injection.

Objects are JSON dicts keyed by (kind, namespace, name); every write bumps one
resourceVersion counter; a namespace gets a fresh uid on each create. Deleting
a namespace marks it terminating; it (and everything in it) disappears after
`finalize_after_reads` further reads of (or create attempts on) it, like the
namespace controller.
`list_objects` takes `key=value[,key=value]` selectors and, like a read,
counts as a look at each terminating namespace it lists.
Faults are queued per operation: `fail("create", TemporaryKubeError(...))`
fails the next create; `lose_response("create")` applies the next create and
then raises a temporary error, as when the answer is lost on the wire;
`break_namespace(name, error)` fails every call about that namespace (or in it)
until `heal_namespace(name)`. `namespace_creates` counts create calls per
namespace name; `deletes` lists every delete asked for.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter, defaultdict, deque

from core.tenancy import (
    AlreadyExists,
    KubeError,
    KubeObject,
    NamespaceTerminating,
    ObjectRef,
    TemporaryKubeError,
    ref_of,
)

Key = tuple[str, str | None, str]


class FakeCluster:
    def __init__(self, *, finalize_after_reads: int = 1) -> None:
        self.objects: dict[Key, KubeObject] = {}
        self.calls: Counter[str] = Counter()
        self.finalize_after_reads = finalize_after_reads
        self._rv = 0
        self._faults: dict[str, deque[KubeError]] = defaultdict(deque)
        self._lost: Counter[str] = Counter()
        self._terminating: dict[str, int] = {}
        self._broken: dict[str, KubeError] = {}
        self.namespace_creates: Counter[str] = Counter()
        self.deletes: list[ObjectRef] = []

    # fault injection -----------------------------------------------------------------
    def fail(self, op: str, error: KubeError, times: int = 1) -> None:
        for _ in range(times):
            self._faults[op].append(error)

    def lose_response(self, op: str, times: int = 1) -> None:
        self._lost[op] += times

    def break_namespace(self, name: str, error: KubeError) -> None:
        self._broken[name] = error

    def heal_namespace(self, name: str) -> None:
        self._broken.pop(name, None)

    # test-side helpers ---------------------------------------------------------------
    def namespace(self, name: str) -> KubeObject | None:
        return self.objects.get(("Namespace", None, name))

    def put_namespace(self, name: str, labels: dict[str, str] | None = None) -> KubeObject:
        """Create a namespace by hand (as an operator would), bypassing faults."""
        obj: KubeObject = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})},
        }
        return self._store(("Namespace", None, name), obj, new=True)

    def remove_by_hand(self, name: str) -> None:
        """`kubectl delete ns` that completes at once: the namespace and its content go."""
        self._purge(name)

    def children(self, namespace: str) -> list[KubeObject]:
        return [o for (_, ns, _), o in self.objects.items() if ns == namespace]

    # ClusterApi ----------------------------------------------------------------------
    async def create(self, obj: KubeObject) -> KubeObject:
        ref = ref_of(obj)
        if ref.kind == "Namespace":
            self.namespace_creates[ref.name] += 1
        self._fault("create", ref)
        key = (ref.kind, ref.namespace, ref.name)
        if ref.namespace is not None:
            ns = self.objects.get(("Namespace", None, ref.namespace))
            if ns is None:
                raise TemporaryKubeError(f"404 NotFound: namespaces {ref.namespace!r} not found")
            if ref.namespace in self._terminating:
                raise NamespaceTerminating("403 Forbidden: namespace is being terminated")
        if ref.kind == "Namespace":
            self._tick(ref.name)
        if key in self.objects:
            if ref.kind == "Namespace" and ref.name in self._terminating:
                raise NamespaceTerminating("409 AlreadyExists: object is being deleted")
            raise AlreadyExists(f"409 AlreadyExists: {ref.kind} {ref.name} already exists")
        stored = self._store(key, copy.deepcopy(obj), new=True)
        self._maybe_lose("create")
        return copy.deepcopy(stored)

    async def read(self, ref: ObjectRef) -> KubeObject | None:
        self._fault("read", ref)
        if ref.kind == "Namespace":
            self._tick(ref.name)
        obj = self.objects.get((ref.kind, ref.namespace, ref.name))
        return copy.deepcopy(obj) if obj is not None else None

    async def patch(self, obj: KubeObject) -> KubeObject:
        ref = ref_of(obj)
        self._fault("patch", ref)
        key = (ref.kind, ref.namespace, ref.name)
        current = self.objects.get(key)
        if current is None:
            raise TemporaryKubeError(f"404 NotFound: {ref.kind} {ref.name}")
        merged = _merge(current, copy.deepcopy(obj))
        stored = self._store(key, merged, new=False)
        self._maybe_lose("patch")
        return copy.deepcopy(stored)

    async def delete(self, ref: ObjectRef) -> None:
        self._fault("delete", ref)
        self.deletes.append(ref)
        key = (ref.kind, ref.namespace, ref.name)
        obj = self.objects.get(key)
        if obj is None:
            return
        if ref.kind == "Namespace":
            if ref.name not in self._terminating:
                self._terminating[ref.name] = self.finalize_after_reads
                obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
                obj["status"] = {"phase": "Terminating"}
                self._bump(obj)
        else:
            del self.objects[key]

    async def list_objects(self, kind: str, label_selector: str) -> list[KubeObject]:
        self._fault("list")
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        if kind == "Namespace":
            for name in list(self._terminating):
                self._tick(name)

        def matches(obj: KubeObject) -> bool:
            labels = obj["metadata"].get("labels") or {}
            return all(labels.get(k) == v for k, v in wanted.items())

        return [
            copy.deepcopy(o) for (k, _, _), o in list(self.objects.items()) if k == kind and matches(o)
        ]

    # internals -----------------------------------------------------------------------
    def _fault(self, op: str, ref: ObjectRef | None = None) -> None:
        self.calls[op] += 1
        if ref is not None:
            name = ref.name if ref.kind == "Namespace" else ref.namespace
            broken = self._broken.get(name or "")
            if broken is not None:
                raise broken
        queue = self._faults.get(op)
        if queue:
            raise queue.popleft()

    def _tick(self, name: str) -> None:
        """The namespace controller's progress: each look at a terminating namespace is a step."""
        if name in self._terminating:
            self._terminating[name] -= 1
            if self._terminating[name] < 0:
                self._purge(name)

    def _maybe_lose(self, op: str) -> None:
        if self._lost[op] > 0:
            self._lost[op] -= 1
            raise TemporaryKubeError(f"{op} timed out (response lost after the write)")

    def _store(self, key: Key, obj: KubeObject, *, new: bool) -> KubeObject:
        meta = obj.setdefault("metadata", {})
        if new:
            meta["uid"] = str(uuid.uuid4())
            if obj["kind"] == "Namespace":
                obj["status"] = {"phase": "Active"}
        self._bump(obj)
        self.objects[key] = obj
        return obj

    def _bump(self, obj: KubeObject) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def _purge(self, name: str) -> None:
        self._terminating.pop(name, None)
        for key in [k for k in self.objects if k[1] == name or k == ("Namespace", None, name)]:
            del self.objects[key]


def _merge(current: KubeObject, patch: KubeObject) -> KubeObject:
    """RFC 7386 merge patch: maps merge, everything else replaces."""
    result = dict(current)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(result.get(k), dict):
            result[k] = _merge(result[k], v)
        elif v is None:
            result.pop(k, None)
        else:
            result[k] = v
    return result
