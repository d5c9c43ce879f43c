"""The SQLite query cache (stdlib sqlite3): accounts, per-cluster reports, applied event ids, cursor.

Implements `core.cache.AccountCache`. Each `apply` is one transaction that
records the event id, changes the projection and moves the cursor together,
so a crash leaves either all of it or none: an event is never applied twice
and never skipped. Only the cache actor holds an instance (one connection,
one thread).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import assert_never

from core.account import AccountRecord, ClusterReport, ReportState
from core.events import (
    AccountCreated,
    AccountDeleted,
    DomainEvent,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    owner_email TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE TABLE IF NOT EXISTS reports (
    account_id  TEXT NOT NULL,
    cluster     TEXT NOT NULL,
    state       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    error       TEXT,
    PRIMARY KEY (account_id, cluster)
);
CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO cursor (id, seq) VALUES (1, 0);
"""

StoreError = sqlite3.Error  # what a failing store raises (disk full, corrupt file, locked)

_ACCOUNT_COLS = "id, slug, name, owner_email, namespace, created_at, deleted_at, position"


class SqliteCache:
    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    # writes -----------------------------------------------------------------------------
    def apply(self, event_id: str, seq: int | None, event: DomainEvent, occurred_at: str) -> bool:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if seq is not None:
                (cursor,) = db.execute("SELECT seq FROM cursor WHERE id = 1").fetchone()
                if seq <= cursor:
                    db.execute("ROLLBACK")
                    return False
                db.execute("UPDATE cursor SET seq = ? WHERE id = 1", (seq,))
            fresh = db.execute("INSERT OR IGNORE INTO applied (event_id) VALUES (?)", (event_id,))
            if fresh.rowcount == 1:
                self._project(event, occurred_at)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return fresh.rowcount == 1

    def _project(self, event: DomainEvent, occurred_at: str) -> None:
        db = self._db
        match event:
            case AccountCreated():
                db.execute(
                    "INSERT OR IGNORE INTO accounts (id, slug, name, owner_email, namespace, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (event.account_id, event.slug, event.name, event.owner_email,
                     event.namespace, event.created_at),
                )
            case AccountDeleted():
                db.execute(
                    "UPDATE accounts SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                    (event.deleted_at, event.account_id),
                )
            case NamespaceProvisioned():
                self._report(event.account_id, event.cluster, "created", occurred_at, None)
            case NamespaceProvisionFailed():
                self._report(event.account_id, event.cluster, "failed", occurred_at, event.reason)
            case NamespaceDeleted():
                self._report(event.account_id, event.cluster, "deleted", occurred_at, None)
            case _:
                assert_never(event)

    def _report(
        self, account_id: str, cluster: str, state: ReportState, at: str, error: str | None
    ) -> None:
        # Once a deleted account's namespace is reported gone, a late "created" must not revive it.
        self._db.execute(
            "INSERT INTO reports (account_id, cluster, state, updated_at, error) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, cluster) DO UPDATE SET "
            "state = excluded.state, updated_at = excluded.updated_at, error = excluded.error "
            "WHERE NOT (reports.state = 'deleted' AND EXISTS ("
            "SELECT 1 FROM accounts a WHERE a.id = reports.account_id AND a.deleted_at IS NOT NULL))",
            (account_id, cluster, state, at, error),
        )

    # reads ------------------------------------------------------------------------------
    def cursor(self) -> int:
        return int(self._db.execute("SELECT seq FROM cursor WHERE id = 1").fetchone()[0])

    def set_cursor(self, seq: int) -> None:
        self._db.execute("UPDATE cursor SET seq = max(seq, ?) WHERE id = 1", (seq,))

    def get_by_id(self, account_id: str) -> AccountRecord | None:
        row = self._db.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ?", (account_id,)  # noqa: S608
        ).fetchone()
        return None if row is None else AccountRecord(*row)

    def get_by_slug(self, slug: str) -> AccountRecord | None:
        row = self._db.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE slug = ?", (slug,)  # noqa: S608
        ).fetchone()
        return None if row is None else AccountRecord(*row)

    def list_after(self, after: int | None, limit: int) -> list[AccountRecord]:
        rows = self._db.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE position > ? "  # noqa: S608
            "ORDER BY position LIMIT ?",
            (after or 0, limit),
        ).fetchall()
        return [AccountRecord(*row) for row in rows]

    def reports(self, account_ids: list[str]) -> dict[str, list[ClusterReport]]:
        out: dict[str, list[ClusterReport]] = {a: [] for a in account_ids}
        if not account_ids:
            return out
        marks = ",".join("?" * len(account_ids))
        for account_id, cluster, state, updated_at, error in self._db.execute(
            "SELECT account_id, cluster, state, updated_at, error FROM reports "  # noqa: S608
            f"WHERE account_id IN ({marks}) ORDER BY cluster",
            account_ids,
        ):
            out[account_id].append(ClusterReport(cluster, state, updated_at, error))
        return out

    def known_clusters(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT cluster FROM reports ORDER BY 1")]

    def dump(self) -> dict[str, object]:
        """Everything the cache knows, in a form two caches can be compared by (not positions)."""
        accounts = self._db.execute(
            "SELECT id, slug, name, owner_email, namespace, created_at, deleted_at FROM accounts "
            "ORDER BY id"
        ).fetchall()
        reports = self._db.execute(
            "SELECT account_id, cluster, state, updated_at, error FROM reports ORDER BY 1, 2"
        ).fetchall()
        return {"accounts": accounts, "reports": reports}
