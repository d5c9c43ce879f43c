"""The durable broker: append-only log with group commit, durable consumers, ZeroMQ front."""
