"""The broker's metrics move when the thing they count happens, and /metrics serves them.

An embedded broker with its own `BrokerMetrics`, served by the same metrics server
`bin/broker --metrics-listen` uses, scraped over HTTP and parsed as Prometheus text.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.broker.metrics import BrokerMetrics
from actors.broker.service import spawn_broker
from actors.broker.settings import BrokerSettings, parse_settings
from actors.runtime import ActorSystem
from actors.runtime.metrics_server import GetMetricsAddress, serve_metrics
from core.bus import BusRejected
from tests.broker.helpers import envelope, publish, settle_position
from tests.support.broker import new_endpoints
from tests.support.keys import api_keys, broker_flags, broker_secret, keys_dir
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Publisher
from transport.sockets import Context

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Running:
    endpoints: BrokerEndpoints
    metrics: BrokerMetrics
    url: str


@asynccontextmanager
async def _broker(ctx: Context, data_dir: Path, *, segment_bytes: int = 1 << 20) -> AsyncIterator[Running]:
    settings = BrokerSettings(
        data_dir=data_dir, endpoints=new_endpoints(), curve_secret=broker_secret(),
        curve_clients=keys_dir(), heartbeat_interval=0.2, consumer_timeout=2.0,
        segment_bytes=segment_bytes, clean_interval=0.05,
    )
    metrics = BrokerMetrics()
    async with ActorSystem() as system:
        server = await serve_metrics(system, metrics.registry, ("127.0.0.1", 0))
        host, port = await server.ask(GetMetricsAddress())
        spawn_broker(system, ctx, settings, metrics)
        yield Running(settings.endpoints, metrics, f"http://{host}:{port}/metrics")


async def _scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_publishes_are_counted_with_duplicates_and_every_confirmation_follows_a_timed_fsync(
    ctx: Context, tmp_path: Path
) -> None:
    async with _broker(ctx, tmp_path) as broker:
        events = [envelope(i) for i in range(3)]
        assert await publish(ctx, broker.endpoints, events) == [1, 2, 3]
        assert await publish(ctx, broker.endpoints, [events[0]]) == [1]  # a duplicate
        samples = await _scrape(broker.url)
    assert _get(samples, "fabric_broker_records_stored_total") == 3
    assert _get(samples, "fabric_broker_duplicates_total") == 1
    fsyncs = _get(samples, "fabric_broker_fsync_seconds_count")
    assert fsyncs is not None
    assert fsyncs >= 1
    assert _get(samples, "fabric_broker_group_commit_records_sum") == 3  # every record synced once
    assert _get(samples, "fabric_broker_head_seq") == 3
    assert _get(samples, "fabric_broker_live_keys") == 3
    assert (_get(samples, "fabric_broker_log_bytes") or 0) > 0
    assert _get(samples, "fabric_broker_segments") == 1


async def test_each_consumer_shows_its_acked_seq_lag_and_liveness(ctx: Context, tmp_path: Path) -> None:
    async with _broker(ctx, tmp_path) as broker:
        await publish(ctx, broker.endpoints, [envelope(i) for i in range(2)])
        await settle_position(ctx, broker.endpoints, "cache-metrics")
        await publish(ctx, broker.endpoints, [envelope(i) for i in range(2, 5)])
        samples = await _scrape(broker.url)
    consumer = {"consumer": "cache-metrics"}
    assert _get(samples, "fabric_broker_consumer_acked_seq", **consumer) == 2
    assert _get(samples, "fabric_broker_consumer_lag", **consumer) == 3
    assert _get(samples, "fabric_broker_consumer_online", **consumer) == 1
    online = _get(samples, "fabric_broker_consumers_online")
    assert online is not None
    assert online >= 1


async def test_a_refused_publish_is_counted_by_identity_and_reason(ctx: Context, tmp_path: Path) -> None:
    async with _broker(ctx, tmp_path) as broker:
        async with Publisher(ctx, broker.endpoints, keys=api_keys()) as pub:
            with pytest.raises(BusRejected):
                await pub.publish([envelope(1, key="outcome:a:x")])
        samples = await _scrape(broker.url)
    labels = {"identity": "api", "request": "PUB", "reason": "event_not_allowed"}
    assert _get(samples, "fabric_broker_refused_requests_total", **labels) == 1
    assert _get(samples, "fabric_broker_records_stored_total") == 0


async def test_a_compaction_round_is_counted_and_timed(ctx: Context, tmp_path: Path) -> None:
    async with _broker(ctx, tmp_path, segment_bytes=2000) as broker:
        # Many records of one key: sealed segments full of superseded records to clean.
        await publish(ctx, broker.endpoints, [envelope(i, key=0) for i in range(40)])

        async def compacted() -> float:
            samples = await _scrape(broker.url)
            return sum(
                v for (name, _l), v in samples.items() if name == "fabric_broker_compaction_runs_total"
            )

        await wait_until(compacted, message="a compaction round committed")
        samples = await _scrape(broker.url)
    count = _get(samples, "fabric_broker_compaction_seconds_count")
    assert count is not None
    assert count >= 1


def test_metrics_listen_takes_host_and_port_and_a_bad_one_is_one_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--data-dir", "d", "--bind", "tcp://a:1,tcp://a:2,tcp://a:3",
            "--curve-secret", "s", "--curve-clients", "c"]
    assert parse_settings([*base, "--metrics-listen", "127.0.0.1:9101"]).metrics_listen == (
        "127.0.0.1", 9101,
    )
    assert parse_settings(base).metrics_listen is None
    with pytest.raises(SystemExit) as exit_info:
        parse_settings([*base, "--metrics-listen", "nope"])
    assert exit_info.value.code == 2
    assert "--metrics-listen" in capsys.readouterr().err


async def test_a_metrics_address_in_use_stops_the_broker_with_one_clear_line(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await procs.start(
            "broker", "--data-dir", str(tmp_path / "b"), "--bind", str(new_endpoints()),
            *broker_flags(), "--metrics-listen", f"127.0.0.1:{port}", name="broker",
        )
        assert await proc.process.wait() == 2
    assert "broker: cannot start:" in proc.log_text()
