"""Daemon settings: flags win over FABRIC_* variables; a bad setting is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.daemon.settings import parse_settings

BROKER = "tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3"
ENV = {
    "FABRIC_CLUSTER": "east", "FABRIC_BROKER": BROKER, "FABRIC_STATE_DIR": "/tmp/d",
    "FABRIC_BROKER_KEY": "/k/cluster-east.key_secret", "FABRIC_BROKER_PUBLIC_KEY": "/k/broker.key",
}


def test_settings_come_from_the_environment_and_flags_win() -> None:
    s = parse_settings(["--resync", "5"], {**ENV, "FABRIC_RESYNC_SECONDS": "7"})
    assert s.cluster == "east"
    assert s.consumer == "cluster:east"
    assert s.resync_seconds == 5.0
    assert str(s.broker) == BROKER
    assert s.kubeconfig is None
    assert parse_settings([], ENV).resync_seconds == 30.0


def test_the_failure_threshold_and_crash_points_are_settings() -> None:
    assert parse_settings([], ENV).failed_after == 5
    env = {**ENV, "FABRIC_DAEMON_FAILED_AFTER": "3"}
    assert parse_settings([], env).failed_after == 3
    assert parse_settings(["--failed-after", "7"], env).failed_after == 7
    for point in ("after_store", "after_create", "after_publish"):
        assert parse_settings(["--crash-at", point], ENV).crash_at == point


def test_tenancy_file_and_flags_override_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "east.tenancy"
    path.write_text("pod_security_level = baseline\nquota.pods = 5\n")
    s = parse_settings(["--tenancy", str(path), "--tenancy-set", "quota.pods=7"], ENV)
    assert s.policy.pod_security_level == "baseline"
    assert s.policy.quota["pods"] == "7"


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        ([], {**ENV, "FABRIC_CLUSTER": "East!"}, "--cluster (from FABRIC_CLUSTER): not a DNS-1123 label"),
        ([], {k: v for k, v in ENV.items() if k != "FABRIC_BROKER"}, "--broker"),
        (["--broker", "tcp://x"], ENV, "CONTROL,EVENTS,ACKS"),
        (["--resync", "0"], ENV, "must be a positive number"),
        (["--resync", "soon"], ENV, "not a number"),
        (["--tenancy-set", "colour=blue"], ENV, "unknown setting"),
        (["--tenancy", "/nonexistent/file"], ENV, "cannot read"),
        (["--retry-initial", "5", "--retry-cap", "1"], ENV, "--retry-cap"),
        (["--failed-after", "0"], ENV, "must be at least 1"),
        (["--crash-at", "whenever"], ENV, "--crash-at: must be one of after_store"),
    ],
)
def test_a_bad_setting_exits_with_one_clear_line(
    argv: list[str], env: dict[str, str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv, env)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert words in last
