"""The store actor: sole owner of every object, the resourceVersion counter and watchers.

One mutation at a time (the mailbox serialises them, like etcd's single revision). Each
change bumps the global counter and is appended to the journal and fsynced (persistence.py)
BEFORE any reply that could show it; only then do open watches see its event (watch_hub.py).
The journal is written by a flusher task with group commit (durability.py): changes made
while one write is in flight go out together in the next, so concurrent requests share an
fsync instead of queueing one fsync each behind the mailbox. A bounded event
history lets a watch resume from a resourceVersion; older versions get 410 Expired. The
simulated controllers also live here: ResourceQuota status, and the namespace controller.

Namespace deletion follows the real lifecycle: DELETE sets deletionTimestamp and phase
Terminating; after `finalize_delay` the simulated namespace controller removes the
namespace's content and its `kubernetes` finalizer; with no finalizers left the namespace
is removed (DELETED event).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from actors.kube_emulator import errors, jsonvalue, objects, ownership, persistence
from actors.kube_emulator.durability import Durability
from actors.kube_emulator.messages import (
    JSON,
    CloseWatch,
    Create,
    Delete,
    EventType,
    Finalize,
    FinalizeDue,
    Get,
    ListObjects,
    OpenWatch,
    Patch,
    Replace,
    SetStuck,
    StoreMessage,
    WatchEvent,
)
from actors.kube_emulator.resources import NAMESPACES, RESOURCES, ResourceType, by_kind
from actors.kube_emulator.watch_hub import WatchHub
from actors.runtime import Actor

Key = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    data_dir: Path
    finalize_delay: float = 2.0
    history: int = 1000
    compact_after: int = 1000  # journal records before a new snapshot (at least 2x objects)


class Store(Actor[StoreMessage]):
    def __init__(self, settings: StoreSettings, durability: Durability | None = None) -> None:
        self.settings = settings
        self.durability = durability or Durability()
        self._flusher: asyncio.Task[None] | None = None
        self.rv = 0
        self.tables: dict[ResourceType, dict[Key, JSON]] = {r: {} for r in RESOURCES}
        self.watches = WatchHub(settings.history)
        self.stuck: set[str] = set()
        self.pending: list[JSON] = []  # journal records not yet written
        self.journal_records = 0

    async def started(self) -> None:
        await self._load()
        for obj in self.tables[NAMESPACES].values():
            if obj["metadata"].get("deletionTimestamp"):
                self._schedule_finalize(obj)
        self.log.info("store_loaded", objects=sum(len(t) for t in self.tables.values()),
                      resource_version=self.rv)

    async def _load(self) -> None:
        snapshot = await asyncio.to_thread(persistence.load, self.settings.data_dir)
        self.rv = snapshot.resource_version
        self.watches.reset(self.rv)
        self.journal_records = snapshot.journal_records
        self.tables = {r: {} for r in RESOURCES}
        for obj in snapshot.objects:
            rtype = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            if rtype is not None:
                self.tables[rtype][self._key(obj)] = obj

    async def receive(self, message: StoreMessage) -> object:
        try:
            return self._handle(message)
        finally:
            if self.pending:
                # The reply waits for this (callers await `durability.settled()`).
                self.durability.mark()
                if self._flusher is None or self._flusher.done():
                    self._flusher = self.start_task(self._flush(), name="flusher")

    async def stopped(self) -> None:
        if self.pending:  # marked but not written: the flusher was cancelled with the actor
            records, self.pending = self.pending, []
            self.durability.begin()
            try:
                persistence.append(self.settings.data_dir, records)
            except OSError as exc:
                self.durability.end(exc)
            else:
                self.durability.end()

    async def _flush(self) -> None:
        """Write whatever is queued, one group per fsync, until nothing is."""
        while self.pending:
            records, self.pending = self.pending, []
            through = self.rv  # every queued record's event has a version at most this
            self.durability.begin()
            try:
                await asyncio.to_thread(persistence.append, self.settings.data_dir, records)
                self.journal_records += len(records)
                objects = sum(len(t) for t in self.tables.values())
                if self.journal_records > max(self.settings.compact_after, 2 * objects):
                    # The snapshot is taken now, in the loop: it may hold changes still queued,
                    # whose journal records then come after it and are skipped on load.
                    await asyncio.to_thread(persistence.compact, self.settings.data_dir,
                                            self._snapshot())
                    self.journal_records = 0
            except Exception as exc:
                # Memory ran ahead of the disk: go back to what is durable and refuse every
                # request that saw the lost changes (or any made on top of them).
                self.log.error("store_write_failed", error=str(exc))
                await self._load()
                self.pending = []
                self.durability.fail_all(errors.ApiError(
                    500, "InternalError", f"Internal error occurred: storage write failed: {exc}",
                    {},
                ))
                return
            self.durability.end()
            self.watches.publish(through)

    def _handle(self, message: StoreMessage) -> object:
        match message:
            case Create():
                return self._create(message)
            case Get(rtype, namespace, name):
                return self._require(rtype, namespace, name)
            case ListObjects(rtype, namespace):
                table = self.tables[rtype]
                items = [o for (ns, _), o in sorted(table.items())
                         if namespace is None or ns == namespace]
                return items, self.rv
            case Replace():
                return self._replace(message)
            case Patch():
                return self._patch(message)
            case Delete():
                return self._delete(message)
            case Finalize(name, body):
                return self._finalize(name, body)
            case OpenWatch(rtype, namespace, resource_version):
                current = [o for _, o in sorted(self.tables[rtype].items())]
                return self.watches.open(rtype, namespace, resource_version, current, self.rv)
            case CloseWatch(watch_id):
                self.watches.close(watch_id)
                return None
            case FinalizeDue(name, uid):
                self._finalize_due(name, uid)
                return None
            case SetStuck(name, stuck):
                self._set_stuck(name, stuck)
                return None
            case _:
                assert_never(message)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _key(obj: JSON) -> Key:
        meta = obj["metadata"]
        return (meta.get("namespace") or "", meta["name"])

    def _snapshot(self) -> persistence.Snapshot:
        return persistence.Snapshot(
            self.rv, [o for table in self.tables.values() for o in table.values()]
        )

    def _require(self, rtype: ResourceType, namespace: str | None, name: str) -> JSON:
        obj = self.tables[rtype].get((namespace or "", name))
        if obj is None:
            raise errors.not_found(rtype, name)
        return obj

    def _check_namespace(self, rtype: ResourceType, namespace: str | None, name: str) -> None:
        if not rtype.namespaced or namespace is None:
            return
        ns = self.tables[NAMESPACES].get(("", namespace))
        if ns is None:
            raise errors.namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.namespace_terminating(rtype, name, namespace)

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _emit(self, type_: EventType, rtype: ResourceType, obj: JSON, old: JSON | None) -> None:
        event = WatchEvent(type_, int(obj["metadata"]["resourceVersion"]), rtype, obj, old)
        self.pending.append(persistence.delete_record(event.rv, obj) if type_ == "DELETED"
                            else persistence.put_record(event.rv, obj))
        self.watches.record(event)

    def _store(self, rtype: ResourceType, obj: JSON, old: JSON | None) -> None:
        self.tables[rtype][self._key(obj)] = obj
        self._emit("ADDED" if old is None else "MODIFIED", rtype, obj, old)

    def _remove(self, rtype: ResourceType, obj: JSON) -> JSON:
        self.tables[rtype].pop(self._key(obj), None)
        gone = jsonvalue.copy(obj)
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        self._emit("DELETED", rtype, gone, obj)
        return gone

    # -- operations ---------------------------------------------------------------------------

    def _create(self, msg: Create) -> JSON:
        rtype = msg.rtype
        name_hint = str((msg.body.get("metadata") or {}).get("name") or "")
        obj = objects.prepare_create(rtype, msg.body, msg.namespace, self.rv + 1, msg.manager)
        name = obj["metadata"]["name"]
        self._check_namespace(rtype, msg.namespace, name or name_hint)
        existing = self.tables[rtype].get((msg.namespace or "", name))
        if existing is not None:
            raise errors.already_exists(
                rtype, name, being_deleted=bool(existing["metadata"].get("deletionTimestamp"))
            )
        if msg.dry_run:
            return obj
        self._next_rv()
        self._store(rtype, obj, None)
        return obj

    def _replace(self, msg: Replace) -> JSON:
        old = self._require(msg.rtype, msg.namespace, msg.name)
        objects.check_precondition(msg.rtype, old, (msg.body.get("metadata") or {}).get(
            "resourceVersion"))
        new = objects.prepare_update(msg.rtype, old, msg.body, self.rv + 1, msg.manager)
        return self._commit_update(msg.rtype, old, new, msg.dry_run)

    def _commit_update(self, rtype: ResourceType, old: JSON, new: JSON, dry_run: bool) -> JSON:
        if new is old or dry_run:
            return new
        self._next_rv()
        self._store(rtype, new, old)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if rtype is not NAMESPACES:
                self._remove(rtype, new)
            elif not (new.get("spec") or {}).get("finalizers"):
                self._remove_namespace(new)
        return new

    def _patch(self, msg: Patch) -> tuple[JSON, bool]:
        rtype = msg.rtype
        old = self.tables[rtype].get((msg.namespace or "", msg.name))
        if msg.patch_type == "apply":
            body = objects.ensure_object(msg.patch)
            objects.check_kind(rtype, body)
            if (body.get("metadata") or {}).get("name") != msg.name:
                raise errors.bad_request(
                    "the name of the object in the apply configuration does not match the name "
                    "on the URL")
            applied = set(ownership.leaves(body))
            if old is None:
                created = objects.prepare_create(rtype, body, msg.namespace, self.rv + 1,
                                                 msg.manager, "Apply", applied)
                self._check_namespace(rtype, msg.namespace, msg.name)
                if not msg.dry_run:
                    self._next_rv()
                    self._store(rtype, created, None)
                return created, True
            if not msg.force:
                ownership.check_conflicts(rtype, old, body, msg.manager)
            patched = ownership.prune(objects.apply_patch(old, "apply", body), old, body,
                                      msg.manager)
        elif old is None:
            raise errors.not_found(rtype, msg.name)
        else:
            applied = None
            patched = objects.apply_patch(old, msg.patch_type, msg.patch)
        objects.check_precondition(rtype, old, (patched.get("metadata") or {}).get(
            "resourceVersion"))
        operation = "Apply" if msg.patch_type == "apply" else "Update"
        new = objects.prepare_update(rtype, old, patched, self.rv + 1, msg.manager, operation,
                                     applied)
        return self._commit_update(rtype, old, new, msg.dry_run), False

    def _delete(self, msg: Delete) -> JSON:
        rtype = msg.rtype
        obj = self._require(rtype, msg.namespace, msg.name)
        meta = obj["metadata"]
        if msg.precondition_uid not in (None, meta["uid"]):
            raise errors.conflict(
                rtype, msg.name,
                f"Precondition failed: UID in precondition: {msg.precondition_uid}, "
                f"UID in object meta: {meta['uid']}")
        if msg.precondition_rv not in (None, meta["resourceVersion"]):
            raise errors.conflict(
                rtype, msg.name,
                f"Precondition failed: ResourceVersion in precondition: {msg.precondition_rv}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}")
        if msg.dry_run:
            return obj
        if meta.get("deletionTimestamp"):
            return obj  # already going; real servers answer 200 with the object again
        if rtype is NAMESPACES or meta.get("finalizers"):
            new = jsonvalue.copy(obj)
            new["metadata"]["deletionTimestamp"] = objects.now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            if rtype is NAMESPACES:
                new["status"] = {**(new.get("status") or {}), "phase": "Terminating"}
                self._store(rtype, new, obj)
                self._schedule_finalize(new)
            else:
                self._store(rtype, new, obj)
            return new
        self._remove(rtype, obj)
        return objects.deleted_status(rtype, obj)

    # -- namespace lifecycle ------------------------------------------------------------------

    def _schedule_finalize(self, ns: JSON) -> None:
        name, uid = ns["metadata"]["name"], ns["metadata"]["uid"]
        delay = self.settings.finalize_delay

        async def later() -> None:
            await asyncio.sleep(delay)
            self.ref.tell(FinalizeDue(name, uid))

        _ = self.start_task(later(), name=f"finalize:{name}")

    def _finalize_due(self, name: str, uid: str) -> None:
        ns = self.tables[NAMESPACES].get(("", name))
        if ns is None or ns["metadata"]["uid"] != uid or name in self.stuck:
            return
        reported = objects.with_deletion_conditions(ns)  # what the controller reports first
        reported["metadata"]["resourceVersion"] = str(self._next_rv())
        self._store(NAMESPACES, reported, ns)
        for rtype in RESOURCES:
            if rtype.namespaced:
                for key, obj in list(self.tables[rtype].items()):
                    if key[0] == name:
                        self._remove(rtype, obj)
        finalizers = [f for f in (ns.get("spec") or {}).get("finalizers", []) if f != "kubernetes"]
        self._finalize(name, {"spec": {"finalizers": finalizers}})
        self.log.info("namespace_finalized", namespace=name)

    def _finalize(self, name: str, body: JSON) -> JSON:
        old = self._require(NAMESPACES, None, name)
        raw_spec = body.get("spec")
        spec: JSON = raw_spec if isinstance(raw_spec, dict) else {}
        finalizers = spec.get("finalizers") or []
        if not isinstance(finalizers, list):
            raise errors.bad_request("spec.finalizers must be a list")
        new = jsonvalue.copy(old)
        new["spec"] = {**(new.get("spec") or {}), "finalizers": finalizers}
        if new == old:
            return old
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        self._store(NAMESPACES, new, old)
        if new["metadata"].get("deletionTimestamp") and not finalizers and not new[
                "metadata"].get("finalizers"):
            self._remove_namespace(new)
        return new

    def _remove_namespace(self, ns: JSON) -> None:
        self._remove(NAMESPACES, ns)
        self.log.info("namespace_removed", namespace=ns["metadata"]["name"])

    def _set_stuck(self, name: str, stuck: bool) -> None:
        if stuck:
            self.stuck.add(name)
            return
        self.stuck.discard(name)
        ns = self.tables[NAMESPACES].get(("", name))
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            self._schedule_finalize(ns)
