"""The management API process (`bin/api`): JSON-RPC front end, domain, cache, outbox relay, event driver."""
