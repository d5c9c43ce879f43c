"""A daemon or an api whose broker refuses it does not hang: it exits 2 with one clear line
within a bounded time. Refused are a key the broker's allow-list does not hold, a broker key
that is not the broker's (no handshake ever completes), a consumer the key's identity may
not use, and a key file that cannot be read."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.contract.logs import error_lines, run_to_exit
from tests.support.broker import start_broker
from tests.support.keys import broker_public, client_flags
from tests.support.ports import free_port
from tests.support.processes import ProcessGroup
from transport.access import HANDSHAKE_WAIT
from transport.curve import ensure_certificate, public_file, secret_file

pytestmark = pytest.mark.processes

BOUND = HANDSHAKE_WAIT + 15.0  # the check's own wait, and a process's start and stop


def _kubeconfig(path: Path) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{free_port()}"}}}}]\n'
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    return path


def _key_flags(case: str, identity: str, elsewhere: Path) -> tuple[str, ...]:
    """--broker-key and --broker-public-key as each case gets them wrong."""
    if case == "unknown key":  # a valid pair, on no allow-list
        ensure_certificate(elsewhere, identity)
        return ("--broker-key", str(secret_file(elsewhere, identity)),
                "--broker-public-key", str(broker_public()))
    if case == "not the broker's key":
        ensure_certificate(elsewhere, "broker")
        return (*client_flags(identity)[:2], "--broker-public-key", str(public_file(elsewhere, "broker")))
    if case == "another cluster's key":
        return client_flags("cluster-west")
    assert case == "unreadable key file"
    return ("--broker-key", str(elsewhere / "absent.key_secret"), "--broker-public-key", str(broker_public()))


CASES = {
    "unknown key": "refused this client's key",
    "not the broker's key": "no CURVE handshake with the broker",
    "another cluster's key": "refused consumer cluster:east: cluster west may use only the consumer",
    "unreadable key file": "absent.key_secret: no such certificate file",
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_daemon_the_broker_refuses_exits_2_with_one_clear_line(
    procs: ProcessGroup, tmp_path: Path, case: str
) -> None:
    endpoints = await start_broker(procs, tmp_path / "broker")
    started = time.monotonic()
    code, _out, err = await run_to_exit(
        procs, "daemon", "--cluster", "east", "--kubeconfig", str(_kubeconfig(tmp_path / "kubeconfig")),
        "--broker", str(endpoints), "--state-dir", str(tmp_path / "daemon"),
        *_key_flags(case, "cluster-east", tmp_path / "elsewhere"), timeout=BOUND,
    )
    assert time.monotonic() - started < BOUND
    assert code == 2, err
    (line,) = [text for text in error_lines(err) if not text.startswith("{")]  # JSON: log lines
    assert line.startswith("daemon: ")
    assert CASES[case] in line


@pytest.mark.parametrize("case", ["unknown key", "unreadable key file"])
async def test_an_api_the_broker_refuses_exits_2_with_one_clear_line(
    procs: ProcessGroup, tmp_path: Path, case: str
) -> None:
    endpoints = await start_broker(procs, tmp_path / "broker")
    code, _out, err = await run_to_exit(
        procs, "api", "--listen", f"127.0.0.1:{free_port()}",
        "--legacy-dsn", f"postgresql://fabric@127.0.0.1:{free_port()}/legacy",
        "--broker", str(endpoints), "--state-dir", str(tmp_path / "api"), "--admin-key", "k",
        *_key_flags(case, "api", tmp_path / "elsewhere"), timeout=BOUND,
    )
    assert code == 2, err
    (line,) = [text for text in error_lines(err) if not text.startswith("{")]  # JSON: log lines
    assert line.startswith("bin/api: ")  # (argparse's prefix for an unreadable file)
    assert CASES[case] in line
