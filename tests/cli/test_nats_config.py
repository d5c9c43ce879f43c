"""`fabric nats config`: a config nats-server accepts, with the state dir's passwords, kept
private, and one that really lets our users in (and nobody else)."""

from __future__ import annotations

import asyncio
import io
import re
import stat
from pathlib import Path

import pytest

import tests.support.nats
from actors.cli.main import parse
from actors.cli.nats import EXIT_OK, EXIT_USAGE, config
from actors.up.layout import Layout
from tests.support.nats import NatsServer
from transport.access import BusRefused
from transport.jetstream.identities import load_password, password_file
from transport.jetstream.server import nats_server_binary

USER = re.compile(r'\{user: "([^"]+)", password: "([^"]+)"')
CLUSTER_FLAGS = ("--cluster-listen", "0.0.0.0:6222", "--routes", "nats://n2:6222,nats://n3:6222")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_caller_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FABRIC_CALLER_CWD", raising=False)


def fabric_nats_config(
    state: Path, *argv: str, out: io.StringIO | None = None
) -> tuple[int, str, str]:
    stdout, stderr = out or io.StringIO(), io.StringIO()
    args = parse(["nats", "config", "--state-dir", str(state), *argv])
    code = config(args, Layout.at(state), stdout, stderr)
    return code, stdout.getvalue(), stderr.getvalue()


async def nats_server_accepts(path: Path) -> tuple[bool, str]:
    proc = await asyncio.create_subprocess_exec(
        str(nats_server_binary()), "-t", "-c", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    return proc.returncode == 0, output.decode(errors="replace")


@pytest.mark.parametrize("extra", [(), CLUSTER_FLAGS], ids=["single-node", "cluster-node"])
async def test_the_config_is_accepted_by_nats_server(tmp_path: Path, extra: tuple[str, ...]) -> None:
    code, text, _ = fabric_nats_config(
        tmp_path / "state", "--clusters", "a,b", "--server-name", "n1",
        "--store-dir", str(tmp_path / "store"), *extra,
    )
    assert code == EXIT_OK
    conf = tmp_path / "n1.conf"
    conf.write_text(text)
    accepted, output = await nats_server_accepts(conf)
    assert accepted, output
    assert ("cluster {" in text) == bool(extra), "no routes and no cluster listen: a single node"
    if extra:
        assert 'routes: ["nats://n2:6222", "nats://n3:6222"]' in text
        assert 'listen: "0.0.0.0:6222"' in text


def test_routes_alone_listen_for_routes_on_the_default_cluster_port(tmp_path: Path) -> None:
    code, text, _ = fabric_nats_config(tmp_path, "--clusters", "a", "--server-name", "n1",
                                       "--listen", "10.0.0.1:4222", "--routes", "nats://n2:6222")
    assert code == EXIT_OK
    assert 'listen: "10.0.0.1:6222"' in text


def test_the_passwords_are_the_state_dirs_and_stay_the_same_across_runs(tmp_path: Path) -> None:
    argv = ("--clusters", "a,b", "--server-name", "n1", *CLUSTER_FLAGS)
    code, first, _ = fabric_nats_config(tmp_path, *argv)
    assert code == EXIT_OK
    users = dict(USER.findall(first))
    assert set(users) == {"api", "cluster-a", "cluster-b"}
    keys = Layout.at(tmp_path).keys_dir
    for identity, password in users.items():
        assert load_password(password_file(keys, identity)) == password
    _, second, _ = fabric_nats_config(tmp_path, *argv)
    assert second == first
    # Another node, and a cluster added later: the existing users keep their passwords.
    _, n2, _ = fabric_nats_config(tmp_path, "--clusters", "a,b,c", "--server-name", "n2")
    later = dict(USER.findall(n2))
    assert {k: later[k] for k in users} == users
    assert later["cluster-c"] == load_password(password_file(keys, "cluster-c"))


def test_out_writes_the_file_0600_even_over_a_readable_one(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "n1.conf"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o644)
    code, out, err = fabric_nats_config(tmp_path / "state", "--clusters", "a", "--server-name", "n1",
                                        "--out", str(target))
    assert code == EXIT_OK
    assert out == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert 'server_name: "n1"' in target.read_text()
    assert "0600" in err


def test_printing_to_a_terminal_warns_on_stderr_that_it_holds_passwords(tmp_path: Path) -> None:
    code, _, err = fabric_nats_config(tmp_path, "--clusters", "a", "--server-name", "n1",
                                      out=Terminal())
    assert code == EXIT_OK
    assert "passwords" in err
    code, _, piped = fabric_nats_config(tmp_path, "--clusters", "a", "--server-name", "n1")
    assert code == EXIT_OK
    assert piped == "", "a pipe or a file gets the config alone"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (("--clusters", "a,B"), "--clusters"),
        (("--clusters", "a,a"), "--clusters"),
        (("--clusters", ","), "--clusters"),
        (("--clusters", "a", "--server-name", "n 1"), "--server-name"),
        (("--clusters", "a", "--routes", "http://n2:6222"), "--routes"),
        (("--clusters", "a", "--routes", "nats://n2"), "--routes"),
        (("--clusters", "a", "--routes", "nats://n2:70000"), "--routes"),
        (("--clusters", "a", "--listen", "0.0.0.0:0"), "--listen"),
        (("--clusters", "a", "--listen", "4222"), "--listen"),
        (("--clusters", "a", "--monitor-port", "65536"), "--monitor-port"),
        (("--clusters", "a", "--monitor-port", "4222"), "--listen, --monitor-port"),
        (("--clusters", "a", "--cluster-listen", "0.0.0.0:x"), "--cluster-listen"),
        (("--clusters", "a", "--cluster-listen", "10.0.0.1:6222"), "--cluster-listen"),
        (("--clusters", "a", "--store-dir", "data"), "--store-dir"),
    ],
)
def test_a_wrong_flag_is_one_line_and_exit_2_and_writes_nothing(
    tmp_path: Path, argv: tuple[str, ...], flag: str
) -> None:
    if "--server-name" not in argv:
        argv = (*argv, "--server-name", "n1")
    code, out, err = fabric_nats_config(tmp_path / "state", *argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert err.startswith(f"fabric nats config: {flag}"), err
    assert err.count("\n") == 1, "one line"
    assert not (tmp_path / "state").exists(), "no passwords made for a rejected command"


async def test_a_server_run_with_the_config_lets_a_cluster_in_and_refuses_a_wrong_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    server = NatsServer(tmp_path, name="n1", passwords={})
    code, _, _ = fabric_nats_config(
        state, "--clusters", "a,b", "--server-name", "n1", "--listen", f"127.0.0.1:{server.port}",
        "--monitor-port", str(server.monitor_port), "--store-dir", str(server.store_dir),
        "--out", str(server.config),
    )
    assert code == EXIT_OK
    server.passwords = {i: load_password(password_file(Layout.at(state).keys_dir, i))
                        for i in ("api", "cluster-a")}
    # The server runs the file the command wrote, not one the helper renders.
    monkeypatch.setattr(tests.support.nats, "write_server_config", lambda *_a, **_k: None)
    await server.start()
    try:
        assert await server.connector("cluster-a").check_access("cluster:a")
        with pytest.raises(BusRefused, match="refused user 'cluster-a'"):
            await server.connector("cluster-a", password="not-the-password").check_access(
                "cluster:a", wait=10
            )
    finally:
        await server.stop()
