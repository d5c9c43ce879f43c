-- Version 2: each organization (account) carries its generation, 1 at creation and one
-- more per accepted change (a deletion is one), so the account events can carry it and
-- every consumer can tell a newer state from an older one. An organization deleted under
-- version 1 went through two changes: it is at generation 2.

ALTER TABLE organizations ADD COLUMN generation integer NOT NULL DEFAULT 1;
UPDATE organizations SET generation = 2 WHERE deleted_at IS NOT NULL;

INSERT INTO legacy_schema_version (version) VALUES (2);
