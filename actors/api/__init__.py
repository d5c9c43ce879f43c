"""The management API process (`bin/api`): JSON-RPC front end, domain, cache, outbox relay, event driver.

    http (aiohttp, /rpc /healthz /readyz /metrics)
      -> jsonrpc.Dispatcher over methods.build_table (the same table feeds rpc.discover)
         -> domain-N actors (rules, events) -> legacy-N actors (asyncpg: account + outbox row, one tx)
                                             -> cache actor (SQLite; the committed event, at once)
         -> cache actor + directory actor (reads)
    outbox relay actor: outbox rows -> broker (LISTEN/NOTIFY + poll, SKIP LOCKED, retries)
    event driver actor: broker consumer `cache` -> cache actor (event + cursor in one tx) -> ack
    directory actor: the broker's consumers (`cluster:NAME` = clusters, `cache` = our lag)

Wiring in `app.py`, process main in `main.py`.
"""
