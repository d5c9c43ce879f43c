"""The API with the real broker (in-process) and real ZeroMQ sockets: relay, event driver, directory."""

from __future__ import annotations

from pathlib import Path

from actors.api.bus import BrokerConnector
from actors.api.cache import GetCursor
from core.events import NamespaceProvisioned, to_envelope
from tests.api.harness import eventually, fast_settings, running_api
from tests.support.broker import embedded_broker
from transport.client import Publisher, Subscriber
from transport.sockets import close_context, new_context


async def test_created_account_travels_through_the_real_broker_and_back(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with embedded_broker(tmp_path / "broker") as endpoints:
        connector = BrokerConnector(endpoints, timeout=2.0)
        async with running_api(fast_settings(pg_dsn, tmp_path / "state"), connector) as api:
            account = await api.result("account.create", {"name": "Wired", "owner_email": "w@x.io"})
            ctx = new_context()
            try:
                async with Subscriber(ctx, endpoints, consumer="cluster:t") as sub:
                    deliveries = sub.deliveries()
                    first = await anext(deliveries)
                    assert first.envelope.type == "account.created"
                    assert first.envelope.aggregate_id == account["id"]
                    await sub.ack(first.seq)
                    report = NamespaceProvisioned(account["id"], "t", account["namespace"], "u", "1")
                    async with Publisher(ctx, endpoints) as pub:
                        await pub.publish([to_envelope(report, correlation_id="daemon")])

                    async def ready() -> bool:
                        got = await api.result("account.get", {"id": account["id"]})
                        return bool(got["status"] == "ready")

                    await eventually(ready, timeout=10, message="ready via the real broker")
                    clusters = await api.result("cluster.list", {})
                    assert [c["name"] for c in clusters] == ["t"]
                    assert clusters[0]["status"] == "online"

                    async def cursor_at(seq: int) -> bool:
                        cursor: int = await api.handles.cache.ask(GetCursor())
                        return cursor == seq

                    await eventually(lambda: cursor_at(2), timeout=10, message="cache consumed both")
                    await deliveries.aclose()  # type: ignore[attr-defined]
            finally:
                close_context(ctx)
