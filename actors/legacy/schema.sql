-- The legacy schema: the old system's tables as its API left them after an account
-- creation (user, organization = the account, owner membership, default project),
-- plus the transactional outbox that carries each account event to the broker.
-- This is version 1. A new database gets it and every later migration_N.sql in one
-- transaction; a database at an older version gets the migrations it lacks, also in one
-- transaction (see `db.ensure_schema`).

CREATE TABLE legacy_schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    email       varchar(254) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    slug        varchar(40) NOT NULL,
    name        varchar(64) NOT NULL,
    namespace   varchar(63) NOT NULL,
    created_by  bigint NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CONSTRAINT organizations_slug_key UNIQUE (slug),
    CONSTRAINT organizations_slug_format CHECK (slug ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
);

CREATE TABLE memberships (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         bigint NOT NULL REFERENCES users (id),
    role            varchar(16) NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);

CREATE TABLE projects (
    id              bigserial PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    slug            varchar(63) NOT NULL,
    name            varchar(64) NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projects_org_slug_key UNIQUE (organization_id, slug)
);

CREATE TABLE fabric_outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    aggregate_id  uuid NOT NULL,
    event_type    varchar(64) NOT NULL,
    envelope      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    published_seq bigint
);
CREATE INDEX fabric_outbox_unpublished ON fabric_outbox (id) WHERE published_at IS NULL;

-- NOTIFY is delivered at commit, so a relay woken by it always sees the row.
CREATE FUNCTION fabric_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fabric_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER fabric_outbox_inserted AFTER INSERT ON fabric_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION fabric_outbox_notify();

INSERT INTO legacy_schema_version (version) VALUES (1);
