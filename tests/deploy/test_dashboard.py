"""deploy/grafana-dashboard.json: a Grafana dashboard model whose panels query, through a
datasource variable, only metrics some Fabric process exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.deploy.exported import exported_names, used_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
GRID_WIDTH = 24


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def test_the_dashboard_is_a_grafana_model_with_a_prometheus_datasource_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["title"]
    assert dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_every_panel_has_a_unique_id_a_place_on_the_grid_and_queries_through_the_variable() -> None:
    panels = list(_panels(_dashboard()))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["refId"], panel["title"]


def test_every_metric_a_panel_reads_is_exported_by_a_fabric_process() -> None:
    exported = exported_names()
    dashboard = _dashboard()
    queries = [(p["title"], t["expr"]) for p in _panels(dashboard) for t in p.get("targets", [])]
    queries += [
        (f"variable {v['name']}", v["definition"])
        for v in dashboard["templating"]["list"] if v.get("definition")
    ]
    for title, expr in queries:
        used = used_names(expr)
        assert used, f"{title}: reads no Fabric metric"
        assert used <= exported, f"{title}: unknown metrics {sorted(used - exported)}"


def test_the_dashboard_shows_readiness_consumers_the_broker_and_every_daemon_family() -> None:
    targets = [t for p in _panels(_dashboard()) for t in p.get("targets", [])]
    used = {name for t in targets for name in used_names(t["expr"])}
    for needed in ("fabric_account_ready_seconds_bucket", "fabric_broker_fsync_seconds_bucket",
                   "fabric_bus_consumer_lag", "fabric_daemon_kube_errors_total",
                   "fabric_daemon_queue_depth", "fabric_daemon_failed_accounts"):
        assert needed in used, needed
