"""The SQLite cache's file: one connection and every statement, used from one thread only.

`SqliteFile` is synchronous; `actors.api.cache_store.SqliteCache` opens one
for writes on its own worker thread and one for reads on the event loop's
thread (sqlite3 checks that the thread that opened a connection is the one
using it) and is what everything else uses. Read the contract there and
in `core.cache`. `synchronous=NORMAL` (in WAL mode: a commit survives the
process, not yet a power loss), and the cache's `sync` fsyncs the WAL before
the consumer acks the bus: the fsync is off the way from an outcome to the
reader waiting for it, which was a millisecond of every account's
create-to-ready.

`known_clusters`: a `clusters` table, written in the apply transaction, kept
in memory and re-read only when `PRAGMA data_version` says another
connection committed since (the writer's commits, seen from the reader's
connection; another process sharing the file); a connection's own commits do
not move it, so `apply` adds what it inserted itself.

Schema versions. The file records its schema in `PRAGMA user_version`.
Schema 3 (before the `clusters` table) gets the table, filled from its
reports. A file of another version (the event-history cache of schema 1,
with its `applied` table and cursor; schema 2, before plans and suspension),
or one that is not a database at all, is not migrated but recreated empty:
it is a cache. A file created empty is marked as needing a replay
(`needs_replay`), which makes the event driver reset its bus consumer and
read the log from the start; so a lost or recreated file never leaves the
cache behind a consumer position that has already passed its history.

`account.updated` is applied like `account.created` (it is the same whole
state at a later generation, guarded the same way); its time is the
account's `updated_at`. Each apply that changes an account or a report on it
is returned as changed, which is what the cache actor wakes waiters on.

A deleted account whose creation the cache never saw (the log compacted it
away, or the tombstone came first) is kept as a tombstone row to guard its
generation, but reads do not show it: only its id, slug and namespace are
known, and a reader of the compacted log would stop seeing it anyway once
the tombstone retention has passed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, assert_never

from actors.runtime.files import fsync_dir
from core.account import AccountRecord, ClusterReport, StatusHint
from core.cache import CacheView, Change, report_of, report_order
from core.events import (
    AccountCreated,
    AccountDeleted,
    AccountUpdated,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
)

SCHEMA_VERSION = 4  # `PRAGMA user_version` at the end of _SCHEMA says the same

# Idempotent: two processes opening a new shared file may both run it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    slug        TEXT NOT NULL,
    name        TEXT,
    owner_email TEXT,
    namespace   TEXT NOT NULL,
    created_at  TEXT,
    deleted_at  TEXT,
    generation  INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    plan        TEXT NOT NULL DEFAULT 'standard',
    suspended   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS accounts_slug ON accounts (slug);
CREATE TABLE IF NOT EXISTS reports (
    account_id          TEXT NOT NULL,
    cluster             TEXT NOT NULL,
    state               TEXT NOT NULL,
    observed_generation INTEGER NOT NULL,
    attempts            INTEGER,
    updated_at          TEXT NOT NULL,
    error               TEXT,
    PRIMARY KEY (account_id, cluster)
);
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), needs_replay INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (id, needs_replay) VALUES (1, 1);
CREATE TABLE IF NOT EXISTS clusters (name TEXT PRIMARY KEY) WITHOUT ROWID;
PRAGMA user_version = 4;
"""
# Schema 3 is schema 4 without the clusters table (the prefix of _SCHEMA up to it).
_FROM_3 = """
CREATE TABLE IF NOT EXISTS clusters (name TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT OR IGNORE INTO clusters (name) SELECT DISTINCT cluster FROM reports;
PRAGMA user_version = 4;
"""


_ACCOUNT_COLS = (
    "id, slug, name, owner_email, namespace, created_at, deleted_at, generation, updated_at, "
    "position, plan, suspended"
)
_VISIBLE = "name IS NOT NULL"  # tombstone-only rows guard a generation but are not shown
_REPORT_COLS = "cluster, state, observed_generation, updated_at, error, attempts"


class SqliteFile:
    """One connection and every statement; used on the thread that opened it only, unless
    opened `any_thread` (its owner then makes sure no two calls overlap)."""

    def __init__(self, path: Path | str, *, any_thread: bool = False) -> None:
        self.path = Path(path)
        self._any_thread = any_thread
        self.recreated = False  # an old-schema or broken file was replaced by an empty one
        self._clusters: list[str] | None = None  # known_clusters as of `_clusters_version`
        self._clusters_version = -1
        self._added: set[str] = set()  # clusters the open transaction inserted
        self._db = self._connect()
        try:
            version, tables = self._probe()
            if version not in (SCHEMA_VERSION, 3) and tables:
                self._db.close()
                remove_files(self.path)
                self.recreated = True
                self._db = self._connect()
                version = 0
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")  # a second writer (a shared file) waits
            if version == 3:
                self._db.executescript(f"BEGIN IMMEDIATE; {_FROM_3} COMMIT;")
            elif version != SCHEMA_VERSION:
                self._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        except BaseException:
            self._db.close()
            raise

    @property
    def wal_path(self) -> Path:
        """The write-ahead log, where commits are until a checkpoint (which syncs both files)."""
        return self.path.with_name(self.path.name + "-wal")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=not self._any_thread
        )

    def _probe(self) -> tuple[int, int]:
        """The file's schema version and table count; an unreadable file counts as another schema."""
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            tables = int(self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorname not in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise  # e.g. locked: not ours to throw away
            return -1, 1
        return version, tables

    def close(self) -> None:
        self._db.close()

    def checkpoint(self, *, wait: bool = True) -> None:
        """Move every committed change from the WAL into the main file: all of it and an
        empty WAL after (waiting for readers), or, not `wait`ing, what no reader still needs
        (as SQLite's own automatic checkpoint does)."""
        mode = "TRUNCATE" if wait else "PASSIVE"
        self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()

    def checkpoint_by_hand(self, wal_bytes: int) -> None:
        """No commit of this connection checkpoints the WAL any more: its owner calls
        `checkpoint` once the WAL file is past `wal_bytes` (a checkpoint writes and syncs the
        main file). The first commit after a checkpoint cuts the file back to `wal_bytes`, so
        its size says again whether frames are waiting."""
        self._db.execute("PRAGMA wal_autocheckpoint=0").fetchone()
        self._db.execute(f"PRAGMA journal_size_limit={int(wal_bytes)}").fetchone()

    def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    # writes -----------------------------------------------------------------------------
    def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Apply a batch in one transaction; per change, whether the cache changed."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        self._added.clear()
        try:
            changed = [self._apply(c) for c in changes]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if self._added and self._clusters is not None:
            # Our own commit does not move data_version: the kept list must follow it.
            self._clusters = sorted(set(self._clusters) | self._added)
        return changed

    def _apply(self, change: Change) -> bool:
        event = change.event
        match event:
            case AccountCreated():
                # AccountUpdated too (a subclass): the whole state at its generation.
                updated_at = change.occurred_at if isinstance(event, AccountUpdated) else None
                return self._created(event, updated_at or event.created_at)
            case AccountDeleted():
                return self._deleted(event)
            case NamespaceProvisioned() | NamespaceProvisionFailed() | NamespaceDeleted():
                return self._report(event.account_id, report_of(event, change.occurred_at))
            case _:
                assert_never(event)

    def _generation(self, account_id: str) -> tuple[int, bool] | None:
        """The cached account's generation and whether its creation was seen; None if unknown."""
        row = self._db.execute(
            "SELECT generation, name IS NOT NULL FROM accounts WHERE id = ?", (account_id,)
        ).fetchone()
        return None if row is None else (int(row[0]), bool(row[1]))

    def _created(self, e: AccountCreated, updated_at: str) -> bool:
        cached = self._generation(e.account_id)
        if cached is None:
            self._db.execute(
                "INSERT INTO accounts (id, slug, name, owner_email, namespace, created_at, "
                "generation, updated_at, plan, suspended) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.account_id, e.slug, e.name, e.owner_email, e.namespace, e.created_at,
                 e.generation, updated_at, e.plan, e.suspended),
            )
            return True
        generation, seen = cached
        if e.generation > generation:
            # A newer desired state of a live account (an accepted change).
            self._db.execute(
                "UPDATE accounts SET slug = ?, name = ?, owner_email = ?, namespace = ?, "
                "created_at = ?, deleted_at = NULL, generation = ?, updated_at = ?, plan = ?, "
                "suspended = ? WHERE id = ?",
                (e.slug, e.name, e.owner_email, e.namespace, e.created_at, e.generation,
                 updated_at, e.plan, e.suspended, e.account_id),
            )
            return True
        if not seen:
            # The tombstone came first: fill in what it does not carry, keep its state.
            self._db.execute(
                "UPDATE accounts SET name = ?, owner_email = ?, created_at = ?, plan = ? "
                "WHERE id = ?",
                (e.name, e.owner_email, e.created_at, e.plan, e.account_id),
            )
            return True
        return False

    def _deleted(self, e: AccountDeleted) -> bool:
        cached = self._generation(e.account_id)
        # The tombstone carries the account's last state; an empty one (a tombstone written
        # without it) keeps the row hidden until a create fills it in.
        name, email, created = (e.name or None), (e.owner_email or None), (e.created_at or None)
        if cached is None:
            self._db.execute(
                "INSERT INTO accounts (id, slug, name, owner_email, namespace, created_at, "
                "deleted_at, generation, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.account_id, e.slug, name, email, e.namespace, created, e.deleted_at,
                 e.generation, e.deleted_at),
            )
            return True
        if e.generation <= cached[0]:
            return False
        self._db.execute(
            "UPDATE accounts SET slug = ?, name = coalesce(?, name), "
            "owner_email = coalesce(?, owner_email), namespace = ?, "
            "created_at = coalesce(?, created_at), deleted_at = ?, generation = ?, "
            "updated_at = ? WHERE id = ?",
            (e.slug, name, email, e.namespace, created, e.deleted_at, e.generation,
             e.deleted_at, e.account_id),
        )
        return True

    def _report(self, account_id: str, new: ClusterReport) -> bool:
        row = self._db.execute(
            f"SELECT {_REPORT_COLS} FROM reports WHERE account_id = ? AND cluster = ?",  # noqa: S608
            (account_id, new.cluster),
        ).fetchone()
        if row is not None and report_order(new) <= report_order(ClusterReport(*row)):
            return False
        if row is None and (self._clusters is None or new.cluster not in self._clusters):
            self._db.execute("INSERT OR IGNORE INTO clusters (name) VALUES (?)", (new.cluster,))
            self._added.add(new.cluster)
        self._db.execute(
            "INSERT INTO reports (account_id, cluster, state, observed_generation, attempts, "
            "updated_at, error) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (account_id, cluster) DO UPDATE SET state = excluded.state, "
            "observed_generation = excluded.observed_generation, attempts = excluded.attempts, "
            "updated_at = excluded.updated_at, error = excluded.error",
            (account_id, new.cluster, new.state, new.observed_generation, new.attempts, new.updated_at,
             new.error),
        )
        return True

    def needs_replay(self) -> bool:
        return bool(self._db.execute("SELECT needs_replay FROM meta WHERE id = 1").fetchone()[0])

    def mark_replayed(self) -> None:
        self._db.execute("UPDATE meta SET needs_replay = 0 WHERE id = 1")

    # reads ------------------------------------------------------------------------------
    def get_by_id(self, account_id: str) -> AccountRecord | None:
        row = self._db.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ? AND {_VISIBLE}",  # noqa: S608
            (account_id,),
        ).fetchone()
        return None if row is None else _record(row)

    def get_by_slug(self, slug: str) -> AccountRecord | None:
        # Slugs are unique in the legacy database; should one ever be reused, the live one wins.
        row = self._db.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE slug = ? AND {_VISIBLE} "  # noqa: S608
            "ORDER BY deleted_at IS NULL DESC, position DESC LIMIT 1",
            (slug,),
        ).fetchone()
        return None if row is None else _record(row)

    def list_after(
        self, after: int | None, limit: int, hint: StatusHint | None = None
    ) -> list[AccountRecord]:
        kept, args = _kept_by(hint)
        rows = self._db.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE position > ? AND {_VISIBLE}{kept} "  # noqa: S608
            "ORDER BY position LIMIT ?",
            (after or 0, *args, limit),
        ).fetchall()
        return [_record(row) for row in rows]

    def reports(self, account_ids: list[str]) -> dict[str, list[ClusterReport]]:
        out: dict[str, list[ClusterReport]] = {a: [] for a in account_ids}
        if not account_ids:
            return out
        marks = ",".join("?" * len(account_ids))
        for account_id, *report in self._db.execute(
            f"SELECT account_id, {_REPORT_COLS} FROM reports "  # noqa: S608
            f"WHERE account_id IN ({marks}) ORDER BY cluster",
            account_ids,
        ):
            out[account_id].append(ClusterReport(*report))
        return out

    def known_clusters(self) -> list[str]:
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if self._clusters is None or version != self._clusters_version:
            self._clusters = [r[0] for r in self._db.execute("SELECT name FROM clusters ORDER BY 1")]
            self._clusters_version = version
        return list(self._clusters)

    def view(self, records: list[AccountRecord]) -> CacheView:
        reports = self.reports([r.id for r in records]) if records else {}
        return CacheView(records, reports, self.known_clusters())

    def find(self, account_id: str | None, slug: str | None) -> CacheView:
        record = self.get_by_id(account_id) if account_id is not None else self.get_by_slug(slug or "")
        return self.view([record] if record is not None else [])

    def page(self, after: int | None, limit: int, hint: StatusHint | None = None) -> CacheView:
        return self.view(self.list_after(after, limit, hint))

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything the cache knows, in a form two caches can be compared by (not positions)."""
        accounts = self._db.execute(
            "SELECT id, slug, name, owner_email, namespace, created_at, deleted_at, generation, "
            "updated_at, plan, suspended FROM accounts ORDER BY id"
        ).fetchall()
        reports = self._db.execute(
            f"SELECT account_id, {_REPORT_COLS} FROM reports ORDER BY 1, 2"  # noqa: S608
        ).fetchall()
        return {"accounts": accounts, "reports": reports}


def _kept_by(hint: StatusHint | None) -> tuple[str, list[Any]]:
    """The `StatusHint` as a condition on `accounts` (with a leading AND) and its arguments."""
    if hint is None:
        return "", []
    kept = " AND deleted_at IS NOT NULL" if hint.deleted else " AND deleted_at IS NULL"
    if hint.settled is None:
        return kept, []
    # Reports are keyed by (account, cluster): counting the online clusters that created the
    # current generation says whether all of them did.
    marks = ",".join("?" * len(hint.online))  # placeholders only: the names are arguments
    settled = (
        "(SELECT count(*) FROM reports r WHERE r.account_id = accounts.id "  # noqa: S608
        f"AND r.cluster IN ({marks}) AND r.state = 'created' "
        "AND r.observed_generation >= accounts.generation) = ?"
    )
    return f"{kept} AND {'' if hint.settled else 'NOT '}{settled}", [*hint.online, len(hint.online)]


def _record(row: tuple[Any, ...]) -> AccountRecord:
    (account_id, slug, name, owner_email, namespace, created_at, deleted_at, generation,
     updated_at, position, plan, suspended) = row
    return AccountRecord(
        account_id, slug, name, owner_email, namespace, created_at, deleted_at, generation,
        updated_at, position, plan, bool(suspended),
    )


def remove_files(path: Path) -> None:
    """Remove a cache file with its WAL and shared-memory files, durably."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)
    if path.parent.exists():
        fsync_dir(path.parent)
