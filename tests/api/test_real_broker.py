"""The API with the real broker (in-process) and real ZeroMQ sockets: relay, event driver, directory."""

from __future__ import annotations

from pathlib import Path

from actors.api.driver import GetApplied
from core.events import NamespaceProvisioned, from_envelope, generation_of, to_envelope
from tests.api.harness import eventually, fast_settings, running_api
from tests.api.processes import consumers
from tests.support.broker import embedded_broker
from tests.support.keys import api_keys, client_keys
from transport.connector import BrokerConnector


async def test_created_account_travels_through_the_real_broker_and_back(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with embedded_broker(tmp_path / "broker") as endpoints:
        connector = BrokerConnector(endpoints, keys=api_keys(), timeout=2.0)
        daemon = BrokerConnector(endpoints, keys=client_keys("cluster-t"), timeout=2.0)  # cluster t's
        async with running_api(fast_settings(pg_dsn, tmp_path / "state"), connector) as api:
            account = await api.result("account.create", {"name": "Wired", "owner_email": "w@x.io"})
            async with daemon.subscription("cluster:t", key_prefix="account:") as sub:
                batches = sub.batches()
                first = await anext(batches)
                while not first.deliveries:
                    first = await anext(batches)
                envelope = first.deliveries[0].envelope
                assert (envelope.type, envelope.aggregate_id) == ("account.created", account["id"])
                assert (envelope.key, envelope.tombstone) == (f"account:{account['id']}", False)
                assert generation_of(from_envelope(envelope)) == 1
                await sub.ack(first.position)
                report = NamespaceProvisioned(account["id"], "t", account["namespace"], "u", "1", 1)
                async with daemon.publisher() as pub:
                    await pub.publish([to_envelope(report, correlation_id="daemon")])

                async def ready() -> bool:
                    got = await api.result("account.get", {"id": account["id"]})
                    return bool(got["status"] == "ready")

                await eventually(ready, timeout=10, message="ready via the real broker")
                clusters = await api.result("cluster.list", {})
                assert [c["name"] for c in clusters] == ["t"]
                assert clusters[0]["status"] == "online"

                async def cache_consumed_both() -> bool:
                    infos = await consumers(endpoints)
                    return "cache" in infos and (infos["cache"].acked_seq, infos["cache"].lag) == (2, 0)

                await eventually(cache_consumed_both, timeout=10, message="cache consumed both")
                # The create was in the cache already (read-your-writes); the report was not.
                assert await api.handles.driver.ask(GetApplied()) == 1
                aclose = getattr(batches, "aclose", None)
                if aclose is not None:
                    await aclose()
