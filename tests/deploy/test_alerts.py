"""deploy/alerts.yaml: promtool accepts the rules, its unit tests (deploy/alerts.test.yaml) pass,
and every metric a rule reads is exported by some Fabric process.

promtool comes from the Debian package `prometheus`, which `./bin/fabric test` installs
(bin/lib/system.sh); the test fails, rather than skips, when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.exported import exported_names, used_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "alerts.yaml"
RULE_TESTS = DEPLOY / "alerts.test.yaml"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not on PATH: install the Debian package `prometheus` "
            "(./bin/fabric test does so when run as root)"
        )
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
    )


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_alert_rules() -> None:
    result = _run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_unit_tests_pass() -> None:
    result = _run("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts - fired == set(), "alerts no test fires"
    assert alerts - quiet == set(), "alerts no test expects to stay quiet"


def test_every_alert_waits_has_a_severity_and_says_what_and_why() -> None:
    for rule in _rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_every_metric_an_alert_reads_is_exported_by_a_fabric_process() -> None:
    exported = exported_names()
    for rule in _rules():
        used = used_names(rule["expr"])
        assert used, f"{rule['alert']} reads no Fabric metric"
        assert used <= exported, f"{rule['alert']} reads unknown metrics: {sorted(used - exported)}"
