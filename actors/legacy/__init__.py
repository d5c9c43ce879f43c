"""The legacy PostgreSQL database: schema, the legacy actor, the outbox queries, embedded server."""
