-- Version 3: an organization's plan and its suspension, kept the way the old system kept
-- such facts about an organization: the plan as a short code on the row, checked against
-- the plans on sale (core.tenancy.PLANS; a new plan is a new migration), and a suspension
-- as the moment it began (NULL: not suspended). Every existing organization is on the
-- default plan and not suspended. A change of either is a change of the organization: it
-- moves its generation on, like any other accepted change.

ALTER TABLE organizations
    ADD COLUMN plan varchar(16) NOT NULL DEFAULT 'standard',
    ADD COLUMN suspended_at timestamptz,
    ADD CONSTRAINT organizations_plan_check CHECK (plan IN ('small', 'standard', 'large'));

INSERT INTO legacy_schema_version (version) VALUES (3);
