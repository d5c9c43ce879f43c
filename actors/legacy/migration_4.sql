-- Version 4: the outbox's NOTIFY says whether its writer publishes the rows itself. The
-- API publishes each account it creates at once, handing the committed envelope to its
-- own relay in-process (no claim, no round trip before the broker), and says so for the
-- creating transaction (`fabric.outbox_notify` = 'writer'); relays leave such rows to it.
-- Every other insert wakes every relay with an empty payload, as before. A writer that
-- cannot publish leaves its rows to a claim pass: its relay's at once, any relay's poll.
CREATE OR REPLACE FUNCTION fabric_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fabric_outbox', coalesce(current_setting('fabric.outbox_notify', true), ''));
    RETURN NULL;
END;
$$;

INSERT INTO legacy_schema_version (version) VALUES (4);
