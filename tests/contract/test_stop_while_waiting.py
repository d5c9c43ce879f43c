"""SIGTERM ends a process promptly with exit 0 also while it waits on a dependency that is down.

The api with neither its legacy database nor its broker reachable, and the daemon with
neither its broker nor its Kubernetes API reachable, are each caught in their retry loops
and then sent SIGTERM: exit 0, every log line JSON, the last one too.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.api.harness import ADMIN_KEY
from tests.contract.logs import check_log_line, json_lines
from tests.contract.running import stop_with, wait_http, wait_logged
from tests.support.broker import new_endpoints
from tests.support.keys import client_flags
from tests.support.ports import free_port
from tests.support.processes import Proc, ProcessGroup

pytestmark = pytest.mark.processes


def dead_kubeconfig(path: Path) -> Path:
    """A kubeconfig naming a loopback port nothing listens on."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{free_port()}"}}}}]\n'
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    return path


async def start_api(procs: ProcessGroup, tmp: Path) -> Proc:
    port = free_port()
    proc = await procs.start(
        "api", "--listen", f"127.0.0.1:{port}",
        "--legacy-dsn", f"postgresql://fabric@127.0.0.1:{free_port()}/legacy",
        "--broker", str(new_endpoints()), *client_flags("api"), "--state-dir", str(tmp / "api"),
        "--admin-key", ADMIN_KEY, "--retry-backoff-max", "0.5", stdout_to_log=False,
    )
    await wait_http(proc, f"http://127.0.0.1:{port}/healthz")
    await wait_logged(proc, "relay_backed_off")
    return proc


async def start_daemon(procs: ProcessGroup, tmp: Path) -> Proc:
    proc = await procs.start(
        "daemon", "--cluster", "east", "--kubeconfig", str(dead_kubeconfig(tmp / "kubeconfig")),
        "--broker", str(new_endpoints()), *client_flags("cluster-east"),
        "--state-dir", str(tmp / "daemon"), "--resync", "1",
        stdout_to_log=False,
    )
    await wait_logged(proc, "consumer_reset_retried")  # its broker is unreachable: retrying
    return proc


@pytest.mark.parametrize("command", ["api", "daemon"])
async def test_sigterm_ends_a_process_waiting_on_dependencies_that_are_down_with_0(
    procs: ProcessGroup, tmp_path: Path, command: str
) -> None:
    start = start_api if command == "api" else start_daemon
    proc = await start(procs, tmp_path)
    code, _out = await stop_with(procs, proc, signal.SIGTERM)
    log = proc.log_text()
    assert code == 0, f"{command} exited {code} on SIGTERM:\n{log[-3000:]}"
    lines = json_lines(log, source=command)
    for line in lines:
        check_log_line(line, source=command)
    assert lines[-1]["event"] == "process_stopped", lines[-1]
