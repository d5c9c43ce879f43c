"""The JSON-RPC call metrics, kept as plain numbers: what a scrape shows."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from actors.api.metrics import ApiMetrics


def _samples(metrics: ApiMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def test_calls_are_counted_and_bucketed_by_method_and_code() -> None:
    metrics = ApiMetrics()
    for seconds in (0.001, 0.005, 0.02, 2.0, 100.0):  # 0.005 sits on a bound: le is inclusive
        metrics.rpc.observe("account.get", 0, seconds)
    metrics.rpc.observe("-", -32700, 0.0)
    samples = _samples(metrics)

    def get(name: str, **labels: str) -> float:
        return samples[(name, frozenset({"method": "account.get", "code": "0", **labels}.items()))]

    assert get("fabric_rpc_requests_total") == 5
    assert get("fabric_rpc_request_seconds_count") == 5
    assert get("fabric_rpc_request_seconds_sum") == 102.026
    assert get("fabric_rpc_request_seconds_bucket", le="0.005") == 2
    assert get("fabric_rpc_request_seconds_bucket", le="0.025") == 3
    assert get("fabric_rpc_request_seconds_bucket", le="1.0") == 3
    assert get("fabric_rpc_request_seconds_bucket", le="2.5") == 4
    assert get("fabric_rpc_request_seconds_bucket", le="+Inf") == 5
    parse_errors = frozenset({"method": "-", "code": "-32700"}.items())
    assert samples[("fabric_rpc_requests_total", parse_errors)] == 1
    assert ("fabric_rpc_requests_total", frozenset({"method": "account.list", "code": "0"}.items())) \
        not in samples
