"""The one settings mechanism (`actors.runtime.settings.Setting`): the same rules in every process."""

from __future__ import annotations

import pytest

from actors.runtime.settings import Setting, positive_float, settings_parser

SETTINGS = (
    Setting("--resync", "FABRIC_T_RESYNC", "seconds", type=positive_float, default="30"),
    Setting("--state-dir", "FABRIC_T_STATE_DIR", "where", required="the state lives there"),
    Setting("--no-relay", "FABRIC_T_NO_RELAY", "skip it", switch=True),
    Setting("--set", None, "repeatable", repeat=True, metavar="K=V"),
    Setting("--heartbeat", "FABRIC_T_HEARTBEAT", "seconds", type=positive_float, default="1",
            aliases=("FABRIC_T_OLD_HEARTBEAT",)),
)


def parse(argv: list[str], env: dict[str, str]) -> dict[str, object]:
    return vars(settings_parser("t", "A test.", SETTINGS, env).parse_settings(argv))


def test_a_flag_wins_over_its_variable_which_wins_over_the_default() -> None:
    base = ["--state-dir", "d"]
    assert parse(base, {})["resync"] == 30.0
    assert parse(base, {"FABRIC_T_RESYNC": "5"})["resync"] == 5.0
    assert parse([*base, "--resync", "2"], {"FABRIC_T_RESYNC": "5"})["resync"] == 2.0


def test_an_empty_variable_counts_as_unset() -> None:
    got = parse([], {"FABRIC_T_RESYNC": "", "FABRIC_T_STATE_DIR": "d", "FABRIC_T_NO_RELAY": ""})
    assert got["resync"] == 30.0
    assert got["no_relay"] is False
    with pytest.raises(SystemExit):
        parse([], {"FABRIC_T_STATE_DIR": ""})


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        ([], {}, "--state-dir (or FABRIC_T_STATE_DIR) is required: the state lives there"),
        (["--state-dir", "d"], {"FABRIC_T_RESYNC": "-1"},
         "--resync (from FABRIC_T_RESYNC): must be a positive number"),
        (["--state-dir", "d", "--resync", "soon"], {}, "--resync: not a number"),
        (["--state-dir", "d"], {"FABRIC_T_NO_RELAY": "maybe"}, "FABRIC_T_NO_RELAY: expected one of"),
    ],
)
def test_a_bad_or_missing_setting_exits_2_with_one_line_naming_it(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        parse(argv, env)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1], err
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("value", "on"), [("1", True), ("true", True), ("YES", True), ("0", False), ("off", False)]
)
def test_switch_variables_read_the_usual_words(value: str, on: bool) -> None:
    assert parse(["--state-dir", "d"], {"FABRIC_T_NO_RELAY": value})["no_relay"] is on


def test_repeated_flags_collect_and_older_variable_names_are_still_read() -> None:
    got = parse(["--state-dir", "d", "--set", "a=1", "--set", "b=2"], {"FABRIC_T_OLD_HEARTBEAT": "0.2"})
    assert got["set"] == ["a=1", "b=2"]
    assert got["heartbeat"] == 0.2
    newer = parse(["--state-dir", "d"], {"FABRIC_T_OLD_HEARTBEAT": "0.2", "FABRIC_T_HEARTBEAT": "0.5"})
    assert newer["heartbeat"] == 0.5


def test_help_names_each_variable_and_default() -> None:
    text = settings_parser("t", "A test.", SETTINGS, {}).format_help()
    assert "FABRIC_T_RESYNC; default 30" in text
    assert "FABRIC_T_STATE_DIR" in text


def process_settings() -> dict[str, tuple[Setting, ...]]:
    from actors.api.main import SETTINGS as API
    from actors.broker.settings import SETTINGS as BROKER
    from actors.daemon.settings import SETTINGS as DAEMON
    from actors.kube_emulator.main import SETTINGS as KUBE
    from actors.up.options import SETTINGS as UP

    return {"bin/api": API, "bin/broker": BROKER, "bin/daemon": DAEMON, "bin/kube-emulator": KUBE,
            "fabric up": UP}


PREFIXES = {"bin/api": "FABRIC_API_", "bin/broker": "FABRIC_BROKER_", "bin/daemon": "FABRIC_DAEMON_",
            "bin/kube-emulator": "FABRIC_KUBE_", "fabric up": "FABRIC_UP_"}


def test_every_process_declares_its_settings_through_the_one_mechanism_and_they_agree() -> None:
    by_flag: dict[str, set[str]] = {}
    by_env: dict[str, set[str]] = {}
    own: set[tuple[str, str]] = set()  # (flag, env) of values that are one process's own
    for process, settings in process_settings().items():
        flags = [s.flag for s in settings]
        assert len(flags) == len(set(flags)), f"{process}: a flag declared twice"
        for s in settings:
            if s.env is None:
                continue
            assert s.env.startswith("FABRIC_"), (process, s.flag, s.env)
            if s.env.startswith(PREFIXES[process]):
                own.add((s.flag, s.env))
            by_flag.setdefault(s.flag, set()).add(s.env)
            by_env.setdefault(s.env, set()).add(s.flag)
    # A flag several processes share reads one variable everywhere, and the other way round,
    # unless its value is each process's own (an address, a data dir: `fabric up`'s children
    # inherit its environment, so one variable would give them all the same one).
    differing = {f: e for f, e in by_flag.items() if len(e) > 1}
    assert {f: e for f, e in differing.items() if not all((f, v) in own for v in e)} == {}
    assert set(differing) == {"--listen", "--data-dir"}
    assert {e: f for e, f in by_env.items() if len(f) > 1} == {}
    shared = {f for f in by_flag if sum(f in {s.flag for s in ss} for ss in process_settings().values()) > 1}
    assert {"--log-format", "--log-level", "--bus", "--broker", "--metrics-listen",
            "--heartbeat-interval", "--resync"} <= shared
