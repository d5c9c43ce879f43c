"""The PostgreSQL cache's SQL: its schema and every statement, for one schema name.

The same tables as the SQLite cache (actors/api/cache_file.py) in a schema
of their own, and the same generation guards written as `INSERT ... ON
CONFLICT DO UPDATE ... WHERE newer`: PostgreSQL evaluates that WHERE against
the newest committed row under its lock, so two replicas applying one
account at once still keep the newer state. Text compared or sorted in a
guard (report times, cluster names) is `COLLATE "C"`: byte order, as in
SQLite and Python. The schema name is checked to be a plain identifier
before it is put into any statement.
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 1

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.accounts (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    slug        text NOT NULL,
    name        text,
    owner_email text,
    namespace   text NOT NULL,
    created_at  text,
    deleted_at  text,
    generation  bigint NOT NULL,
    updated_at  text COLLATE "C" NOT NULL,
    plan        text NOT NULL DEFAULT 'standard',
    suspended   boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS accounts_slug ON {s}.accounts (slug);
CREATE TABLE IF NOT EXISTS {s}.reports (
    account_id          text NOT NULL,
    cluster             text COLLATE "C" NOT NULL,
    state               text NOT NULL,
    observed_generation bigint NOT NULL,
    attempts            integer,
    updated_at          text COLLATE "C" NOT NULL,
    error               text,
    PRIMARY KEY (account_id, cluster)
);
CREATE TABLE IF NOT EXISTS {s}.clusters (name text COLLATE "C" PRIMARY KEY);
CREATE TABLE IF NOT EXISTS {s}.meta (
    id             integer PRIMARY KEY CHECK (id = 1),
    needs_replay   boolean NOT NULL,
    schema_version integer NOT NULL
);
INSERT INTO {s}.meta (id, needs_replay, schema_version) VALUES (1, true, {version})
ON CONFLICT (id) DO NOTHING;
"""

_ACCOUNT_COLS = (
    "id, slug, name, owner_email, namespace, created_at, deleted_at, generation, updated_at, "
    "position, plan, suspended"
)
_REPORT_COLS = "cluster, state, observed_generation, updated_at, error, attempts"
_STATE_ORDER = "CASE {t}.state WHEN 'failed' THEN 0 WHEN 'created' THEN 1 ELSE 2 END"


class Statements:
    """Every statement, with the schema name filled in once (S608: a checked identifier)."""

    def __init__(self, s: str) -> None:
        newer = "excluded.generation > a.generation"
        self.created = (
            f"INSERT INTO {s}.accounts AS a (id, slug, name, owner_email, namespace, created_at, "  # noqa: S608
            "generation, updated_at, plan, suspended) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
            # A newer desired state replaces it all; an equal or older one only fills in what a
            # tombstone that came first did not carry (name, email, creation time, plan).
            f"ON CONFLICT (id) DO UPDATE SET "
            f"slug = CASE WHEN {newer} THEN excluded.slug ELSE a.slug END, "
            "name = excluded.name, owner_email = excluded.owner_email, "
            f"namespace = CASE WHEN {newer} THEN excluded.namespace ELSE a.namespace END, "
            "created_at = excluded.created_at, "
            f"deleted_at = CASE WHEN {newer} THEN NULL ELSE a.deleted_at END, "
            f"generation = GREATEST(a.generation, excluded.generation), "
            f"updated_at = CASE WHEN {newer} THEN excluded.updated_at ELSE a.updated_at END, "
            "plan = excluded.plan, "
            f"suspended = CASE WHEN {newer} THEN excluded.suspended ELSE a.suspended END "
            f"WHERE {newer} OR a.name IS NULL RETURNING 1"
        )
        self.deleted = (
            f"INSERT INTO {s}.accounts AS a (id, slug, name, owner_email, namespace, created_at, "  # noqa: S608
            "deleted_at, generation, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) "
            "ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, "
            "name = coalesce(excluded.name, a.name), "
            "owner_email = coalesce(excluded.owner_email, a.owner_email), "
            "namespace = excluded.namespace, created_at = coalesce(excluded.created_at, a.created_at), "
            "deleted_at = excluded.deleted_at, generation = excluded.generation, "
            f"updated_at = excluded.updated_at WHERE {newer} RETURNING 1"
        )
        # core.cache.report_order, as SQL: a row comparison is lexicographic.
        self.report = (
            f"INSERT INTO {s}.reports AS r (account_id, cluster, state, observed_generation, "  # noqa: S608
            "attempts, updated_at, error) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (account_id, cluster) DO UPDATE SET state = excluded.state, "
            "observed_generation = excluded.observed_generation, attempts = excluded.attempts, "
            "updated_at = excluded.updated_at, error = excluded.error "
            f"WHERE (excluded.observed_generation, {_STATE_ORDER.format(t='excluded')}, "
            "coalesce(excluded.attempts, 0), excluded.updated_at) > "
            f"(r.observed_generation, {_STATE_ORDER.format(t='r')}, coalesce(r.attempts, 0), "
            "r.updated_at) RETURNING 1"
        )
        self.add_cluster = (
            f"INSERT INTO {s}.clusters (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1"  # noqa: S608
        )
        self.clusters = f"SELECT name FROM {s}.clusters ORDER BY name"  # noqa: S608
        self.needs_replay = f"SELECT needs_replay FROM {s}.meta WHERE id = 1"  # noqa: S608
        self.mark_replayed = f"UPDATE {s}.meta SET needs_replay = false WHERE id = 1"  # noqa: S608
        visible = "name IS NOT NULL"  # tombstone-only rows guard a generation but are not shown
        self.by_id = f"SELECT {_ACCOUNT_COLS} FROM {s}.accounts WHERE id = $1 AND {visible}"  # noqa: S608
        self.by_slug = (
            f"SELECT {_ACCOUNT_COLS} FROM {s}.accounts WHERE slug = $1 AND {visible} "  # noqa: S608
            "ORDER BY deleted_at IS NULL DESC, position DESC LIMIT 1"
        )
        # An account with its reports in one round trip (`find`): the account's columns,
        # then a report's (all NULL when it has none), one row per report.
        with_reports = (
            f"SELECT a.*, {', '.join(f'r.{c}' for c in _REPORT_COLS.split(', '))} FROM a "  # noqa: S608
            f"LEFT JOIN {s}.reports r ON r.account_id = a.id ORDER BY r.cluster"
        )
        self.find_by_id = f"WITH a AS ({self.by_id}) {with_reports}"
        self.find_by_slug = f"WITH a AS ({self.by_slug}) {with_reports}"
        self.list_after = (
            f"SELECT {_ACCOUNT_COLS} FROM {s}.accounts WHERE position > $1 AND {visible} "  # noqa: S608
            "ORDER BY position LIMIT $2"
        )
        # A list by status (`StatusHint`): live or deleted, and whether the online clusters
        # ($3) all created the current generation (reports are keyed by account and cluster,
        # so counting them says it).
        settled = (
            f"(SELECT count(*) FROM {s}.reports r WHERE r.account_id = accounts.id "  # noqa: S608
            "AND r.cluster = ANY($3::text[]) AND r.state = 'created' "
            "AND r.observed_generation >= accounts.generation) = cardinality($3::text[])"
        )
        self.list_kept: dict[tuple[bool, bool | None], str] = {
            (deleted, kept): (
                f"SELECT {_ACCOUNT_COLS} FROM {s}.accounts WHERE position > $1 AND {visible} "  # noqa: S608
                f"AND deleted_at IS {'NOT ' if deleted else ''}NULL"
                + ("" if kept is None else f" AND {'' if kept else 'NOT '}{settled}")
                + " ORDER BY position LIMIT $2"
            )
            for deleted in (False, True) for kept in (None, True, False)
        }
        self.reports = (
            f"SELECT account_id, {_REPORT_COLS} FROM {s}.reports "  # noqa: S608
            "WHERE account_id = ANY($1::text[]) ORDER BY cluster"
        )
        self.dump_accounts = (
            "SELECT id, slug, name, owner_email, namespace, created_at, deleted_at, generation, "  # noqa: S608
            f'updated_at, plan, suspended::int FROM {s}.accounts ORDER BY id COLLATE "C"'
        )
        self.dump_reports = (
            f"SELECT account_id, {_REPORT_COLS} FROM {s}.reports "  # noqa: S608
            'ORDER BY account_id COLLATE "C", cluster'
        )


def identifier(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain schema name: {name!r}")
    return name
