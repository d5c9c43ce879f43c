"""CONTRACT.md section 2, for every process: help, bad settings, FABRIC_* env, flags, signals.

Each process is run through its bin/ launcher, as users run it:
- `--help` exits 0 and names the process's settings (flags and their FABRIC_* variables);
- a bad setting (malformed address, a word where a number belongs, a missing required
  setting), given by flag or by environment, exits non-zero with one clear line on stderr
  and no traceback;
- started for real with its settings from FABRIC_* variables only, it uses them, logs JSON
  lines to stderr, and SIGTERM ends it promptly with exit 0 and a JSON last line;
- started with a flag that contradicts its FABRIC_* variable, the flag wins (also for
  `--log-format console` over FABRIC_LOG_FORMAT=json: no JSON), and SIGINT ends it with 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.harness import ADMIN_KEY
from tests.contract.logs import (
    check_log_line,
    error_lines,
    json_lines,
    run_to_exit,
    without_bootstrap,
)
from tests.contract.running import stop_with, wait_http, wait_logged
from tests.support.broker import new_endpoints, start_broker, wait_broker_ready
from tests.support.keys import broker_env, broker_flags, client_env, client_flags
from tests.support.kube import DEFAULT_TOKEN, start_kube_emulator
from tests.support.ports import free_port
from tests.support.postgres import PgAdmin
from tests.support.processes import Proc, ProcessGroup
from tests.support.wait import wait_until
from tests.system.harness import FAST_ENV as UP_FAST_ENV

pytestmark = pytest.mark.processes

PROCESSES = ["broker", "api", "daemon", "kube-emulator", "fabric"]

# ---- --help ------------------------------------------------------------------------------

HELP_NAMES: dict[str, tuple[str, ...]] = {
    "broker": ("--data-dir", "--bind", "FABRIC_BROKER_DATA_DIR", "FABRIC_BROKER_BIND",
               "--log-format"),
    "api": ("--listen", "--legacy-dsn", "--broker", "--state-dir", "--admin-key",
            "FABRIC_API_LISTEN", "FABRIC_LEGACY_DSN", "FABRIC_BROKER", "FABRIC_STATE_DIR",
            "FABRIC_ADMIN_KEY", "--log-format"),
    "daemon": ("--cluster", "--kubeconfig", "--broker", "--state-dir", "--resync",
               "FABRIC_CLUSTER", "FABRIC_KUBECONFIG", "FABRIC_BROKER", "FABRIC_STATE_DIR",
               "FABRIC_RESYNC_SECONDS", "--log-format"),
    "kube-emulator": ("--data-dir", "--listen", "--kubeconfig-out", "--token",
                      "FABRIC_KUBE_DATA_DIR", "FABRIC_KUBE_LISTEN", "--log-format"),
    "fabric": ("up", "test", "bench", "keys", "account", "cluster", "--state-dir"),
    "fabric up": ("--state-dir", "--port", "--clusters", "--kubeconfig", "--log-format"),
}


@pytest.mark.parametrize("command", list(HELP_NAMES))
async def test_help_exits_zero_and_names_the_settings(procs: ProcessGroup, command: str) -> None:
    exe, *sub = command.split()
    code, out, err = await run_to_exit(procs, exe, *sub, "--help")
    assert code == 0, f"{command} --help exited {code}: {err}"
    assert out.startswith("usage:"), f"{command} --help printed no usage: {out[:300]!r}"
    missing = [name for name in HELP_NAMES[command] if name not in out]
    assert not missing, f"{command} --help does not name {missing}:\n{out}"


# ---- bad settings ------------------------------------------------------------------------

BROKER = "tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3"


@dataclass(frozen=True)
class BadSetting:
    what: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    names: str  # a word the error line must contain, so it says which setting is wrong


def bad(what: str, names: str, *args: str, **env: str) -> BadSetting:
    return BadSetting(what, args, tuple(env.items()), names)


def bad_settings(tmp: Path, busy: int) -> dict[str, list[BadSetting]]:
    """Per process: settings that are wrong by their form, and ones found wrong at start
    (a port in use: `busy`; a directory that is a file; a kubeconfig that is not one)."""
    broker = ("--data-dir", str(tmp / "b"), *broker_flags())
    a_file = tmp / "a-file"
    a_file.write_text("not a directory\n")
    not_kubeconfig = tmp / "not-a-kubeconfig"
    not_kubeconfig.write_text("{{{ not yaml")
    taken = f"tcp://127.0.0.1:{busy},tcp://127.0.0.1:{free_port()},tcp://127.0.0.1:{free_port()}"
    api = ("--listen", "127.0.0.1:1", "--legacy-dsn", "postgresql://u@127.0.0.1:1/d",
           "--broker", BROKER, "--state-dir", str(tmp / "a"), *client_flags("api"))
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    daemon = ("--cluster", "east", "--kubeconfig", str(kubeconfig), "--broker", BROKER,
              "--state-dir", str(tmp / "d"), *client_flags("cluster-east"))
    kube = ("--data-dir", str(tmp / "k"))
    return {
        "broker": [
            bad("malformed address", "bind", *broker, "--bind", "nonsense"),
            bad("word for a number", "heartbeat", *broker, "--bind", BROKER,
                "--heartbeat-interval", "soon"),
            bad("missing data dir", "data-dir", "--bind", BROKER, *broker_flags()),
            bad("malformed address in env", "bind", *broker, FABRIC_BROKER_BIND="nonsense"),
            bad("address in use", f"{busy}", *broker, "--bind", taken),
            bad("data dir is a file", str(a_file), "--data-dir", str(a_file / "b"),
                "--bind", BROKER, *broker_flags()),
        ],
        "api": [
            bad("malformed listen address", "listen", *api[2:], "--listen", "nonsense"),
            bad("malformed broker address", "broker", *api, "--broker", "tcp://only-one"),
            bad("word for a number", "relay-poll", *api, "--relay-poll", "often"),
            bad("missing legacy dsn", "legacy-dsn", *api[:2], *api[4:]),
            bad("malformed listen address in env", "listen", *api[2:],
                FABRIC_API_LISTEN="127.0.0.1:port"),
            bad("listen address in use", f"{busy}", *api, "--listen", f"127.0.0.1:{busy}"),
            bad("state dir is a file", str(a_file), *api, "--state-dir", str(a_file / "a")),
            bad("malformed legacy dsn", "legacy-dsn", *api, "--legacy-dsn", "not a dsn"),
        ],
        "daemon": [
            bad("malformed broker address", "broker", *daemon, "--broker", "nonsense"),
            bad("word for a number", "resync", *daemon, "--resync", "often"),
            bad("missing cluster", "cluster", *daemon[2:]),
            # The cases run at once: those that get past parsing need state dirs of their own,
            # or one would meet the other's single-daemon lock instead of its own bad setting.
            bad("missing kubeconfig file", "kubeconfig", *daemon, "--kubeconfig",
                str(tmp / "absent"), "--state-dir", str(tmp / "d-absent")),
            bad("word for a number in env", "resync", *daemon, FABRIC_RESYNC_SECONDS="often"),
            bad("state dir is a file", str(a_file), *daemon, "--state-dir", str(a_file / "d")),
            bad("kubeconfig that is not one", str(not_kubeconfig), *daemon,
                "--kubeconfig", str(not_kubeconfig), "--state-dir", str(tmp / "d-not-one")),
        ],
        "kube-emulator": [
            bad("malformed listen address", "listen", *kube, "--listen", "nonsense"),
            bad("word for a number", "finalize-delay", *kube, "--finalize-delay", "later"),
            bad("missing data dir", "data-dir", "--listen", "127.0.0.1:0"),
            bad("malformed listen address in env", "listen", *kube, FABRIC_KUBE_LISTEN="x:y"),
            bad("listen address in use", f"{busy}", *kube, "--listen", f"127.0.0.1:{busy}"),
            bad("data dir is a file", str(a_file), "--data-dir", str(a_file / "k")),
        ],
        "fabric": [
            bad("word for a number", "port", "up", "--state-dir", str(tmp / "f"),
                "--port", "eighty"),
            bad("bad cluster name", "clusters", "up", "--state-dir", str(tmp / "f"),
                "--clusters", "Not A Name!"),
            bad("unknown command", "bogus", "bogus"),
            bad("malformed api url", "url", "--url", "nonsense", "account", "list"),
            bad("word for a number in env", "FABRIC_RESYNC_SECONDS", "up", "--state-dir",
                str(tmp / "f"), FABRIC_RESYNC_SECONDS="often"),
            bad("state dir is a file", str(a_file), "up", "--state-dir", str(a_file / "s")),
        ],
    }


@pytest.mark.parametrize("command", PROCESSES)
async def test_a_bad_setting_exits_non_zero_with_one_clear_line(
    procs: ProcessGroup, tmp_path: Path, command: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        cases = bad_settings(tmp_path, holder.getsockname()[1])[command]
        results = await asyncio.gather(
            *(run_to_exit(procs, command, *case.args, env=dict(case.env)) for case in cases)
        )
    problems = []
    for case, (code, _out, err) in zip(cases, results, strict=True):
        lines = error_lines(err)
        if code == 0:
            problems.append(f"{case.what}: exited 0")
        elif "Traceback" in err:
            problems.append(f"{case.what}: a traceback instead of one line:\n{err[-1500:]}")
        elif len(lines) != 1:
            problems.append(f"{case.what}: {len(lines)} lines instead of one: {lines}")
        elif case.names.lower() not in lines[0].lower():
            problems.append(f"{case.what}: the line does not name {case.names!r}: {lines[0]}")
    assert not problems, f"{command}:\n" + "\n".join(problems)


# ---- started for real --------------------------------------------------------------------


@dataclass(frozen=True)
class Launched:
    proc: Proc
    used: str  # how the chosen setting shows in the process's log
    unused: str  # how the other value (the losing env var) would show
    child_logs: Path | None = None  # `fabric up`: where its children's logs go
    stdout_shows: str | None = None  # `fabric up`: what it prints for people (else nothing)


@dataclass(frozen=True)
class Context:
    procs: ProcessGroup
    tmp: Path
    dsn: str


# A launcher starts its process with one observable setting from env (and, with `flag`, the
# same setting contradicted by a flag) and waits until the process is up.
Launcher = Callable[[Context, bool, tuple[str, ...], dict[str, str]], Awaitable[Launched]]


async def launch_broker(
    ctx: Context, flag: bool, args: tuple[str, ...], env: dict[str, str]
) -> Launched:
    from_env, from_flag = new_endpoints(), new_endpoints()
    env = {**env, "FABRIC_BROKER_DATA_DIR": str(ctx.tmp / "broker"),
           "FABRIC_BROKER_BIND": str(from_env), **broker_env()}
    chosen = from_flag if flag else from_env
    flags = ("--bind", str(from_flag)) if flag else ()
    proc = await ctx.procs.start("broker", *flags, *args, env=env, stdout_to_log=False)
    await wait_broker_ready(chosen)
    other = from_env if flag else from_flag
    return Launched(proc, chosen.control, other.control)


async def launch_api(
    ctx: Context, flag: bool, args: tuple[str, ...], env: dict[str, str]
) -> Launched:
    endpoints = await start_broker(ctx.procs, ctx.tmp / "broker")
    env_port, flag_port = free_port(), free_port()
    env = {**env, "FABRIC_API_LISTEN": f"127.0.0.1:{env_port}", "FABRIC_LEGACY_DSN": ctx.dsn,
           "FABRIC_BROKER": str(endpoints), "FABRIC_STATE_DIR": str(ctx.tmp / "api"),
           "FABRIC_ADMIN_KEY": ADMIN_KEY, **client_env("api")}
    port = flag_port if flag else env_port
    flags = ("--listen", f"127.0.0.1:{flag_port}") if flag else ()
    proc = await ctx.procs.start("api", *flags, *args, env=env, stdout_to_log=False)
    await wait_http(proc, f"http://127.0.0.1:{port}/healthz")
    other = env_port if flag else flag_port
    return Launched(proc, logged_field("port", port, args), logged_field("port", other, args))


async def launch_daemon(
    ctx: Context, flag: bool, args: tuple[str, ...], env: dict[str, str]
) -> Launched:
    endpoints = await start_broker(ctx.procs, ctx.tmp / "broker")
    kube = await start_kube_emulator(ctx.procs, ctx.tmp / "kube")
    env = {**env, "FABRIC_CLUSTER": "east", "FABRIC_KUBECONFIG": str(kube.kubeconfig),
           "FABRIC_BROKER": str(endpoints), "FABRIC_STATE_DIR": str(ctx.tmp / "daemon"),
           "FABRIC_RESYNC_SECONDS": "7", "FABRIC_HEARTBEAT_SECONDS": "0.2",
           **client_env("cluster-east")}
    flags = ("--resync", "3") if flag else ()
    proc = await ctx.procs.start("daemon", *flags, *args, env=env, stdout_to_log=False)
    await wait_logged(proc, "daemon_started")
    used, unused = ("3.0", "7.0") if flag else ("7.0", "3.0")
    return Launched(proc, logged_field("resync_seconds", used, args),
                    logged_field("resync_seconds", unused, args))


async def launch_kube(
    ctx: Context, flag: bool, args: tuple[str, ...], env: dict[str, str]
) -> Launched:
    env_port, flag_port = free_port(), free_port()
    env = {**env, "FABRIC_KUBE_DATA_DIR": str(ctx.tmp / "kube"),
           "FABRIC_KUBE_LISTEN": f"127.0.0.1:{env_port}", "FABRIC_KUBE_TOKEN": DEFAULT_TOKEN}
    port = flag_port if flag else env_port
    flags = ("--listen", f"127.0.0.1:{flag_port}") if flag else ()
    proc = await ctx.procs.start("kube-emulator", *flags, *args, env=env, stdout_to_log=False)
    await wait_http(proc, f"http://127.0.0.1:{port}/version")
    other = env_port if flag else flag_port
    return Launched(proc, logged_field("port", port, args), logged_field("port", other, args))


async def launch_up(
    ctx: Context, flag: bool, args: tuple[str, ...], env: dict[str, str]
) -> Launched:
    state = ctx.tmp / "state"
    env_port, flag_port = free_port(), free_port()
    env = {**UP_FAST_ENV, **env, "FABRIC_STATE_DIR": str(state), "FABRIC_LEGACY_DSN": ctx.dsn,
           "FABRIC_UP_PORT": str(env_port), "FABRIC_CLUSTERS": "east"}
    port = flag_port if flag else env_port
    flags = ("--port", str(flag_port)) if flag else ()
    proc = await ctx.procs.start("fabric", "up", *flags, *args, env=env, stdout_to_log=False)

    def ready() -> bool:
        assert proc.running, f"fabric up exited: {proc.log_text()[-3000:]}"
        return (state / "ready").exists()

    try:
        _ = await wait_until(ready, timeout=90, interval=0.1, message="fabric up ready")
    except TimeoutError as exc:
        children = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                             for p in sorted((state / "logs").glob("*.log")))
        raise AssertionError(f"{exc}\n{proc.log_text()[-3000:]}\n{children}") from None
    endpoints = json.loads((state / "endpoints.json").read_text())
    assert endpoints["api"] == f"http://127.0.0.1:{port}", endpoints
    await wait_http(proc, f"http://127.0.0.1:{port}/healthz")
    other = env_port if flag else flag_port
    return Launched(proc, f"127.0.0.1:{port}", f"127.0.0.1:{other}", state / "logs",
                    stdout_shows=f"http://127.0.0.1:{port}")


LAUNCHERS: dict[str, Launcher] = {
    "broker": launch_broker,
    "api": launch_api,
    "daemon": launch_daemon,
    "kube-emulator": launch_kube,
    "fabric": launch_up,
}


def logged_field(name: str, value: object, args: tuple[str, ...]) -> str:
    """How `name=value` shows in a log line: `"name": value` in JSON, `name=value` in console."""
    return f"{name}={value}" if "console" in args else f'"{name}": {value}'


@pytest.fixture
async def context(
    procs: ProcessGroup, tmp_path: Path, pg_admin: PgAdmin
) -> AsyncIterator[Context]:
    """What a launcher needs; a fresh legacy database (only api and `fabric up` use it)."""
    dsn = await pg_admin.fresh_database()
    try:
        yield Context(procs, tmp_path, dsn)
    finally:
        await procs.close()  # the database goes once nothing is connected to it any more
        await pg_admin.drop_database(dsn)


@pytest.mark.parametrize("command", PROCESSES)
async def test_configured_by_env_alone_it_logs_json_and_sigterm_ends_it_with_0(
    procs: ProcessGroup, context: Context, command: str
) -> None:
    launched = await LAUNCHERS[command](context, False, (), {})
    code, out = await stop_with(procs, launched.proc, signal.SIGTERM)
    log = launched.proc.log_text()
    assert code == 0, f"{command} exited {code} on SIGTERM:\n{log[-3000:]}"
    lines = json_lines(log, source=command)
    assert lines, f"{command} logged nothing"
    for line in lines:
        check_log_line(line, source=command)
    assert launched.used in log, f"{command} did not use its FABRIC_* setting:\n{log[-3000:]}"
    for path in child_logs(launched):
        for line in json_lines(path.read_text(errors="replace"), source=path.name):
            check_log_line(line, source=path.name)
    # Logs go to stderr; stdout is for people: only `fabric up` prints there (the API URL).
    if launched.stdout_shows is None:
        assert not out.strip(), f"{command} wrote to stdout: {out[:500]!r}"
    else:
        assert launched.stdout_shows in out, f"{command} stdout: {out[:500]!r}"


@pytest.mark.parametrize("command", PROCESSES)
async def test_a_flag_wins_over_its_env_var_and_sigint_ends_it_with_0(
    procs: ProcessGroup, context: Context, command: str
) -> None:
    launched = await LAUNCHERS[command](
        context, True, ("--log-format", "console"), {"FABRIC_LOG_FORMAT": "json"}
    )
    code, _out = await stop_with(procs, launched.proc, signal.SIGINT)
    log = launched.proc.log_text()
    assert code == 0, f"{command} exited {code} on SIGINT:\n{log[-3000:]}"
    assert log.strip(), f"{command} logged nothing"
    for line in without_bootstrap(log.splitlines()):
        assert not line.startswith("{"), f"{command} logged JSON despite --log-format console: {line}"
    assert launched.used in log, f"{command} did not use the flag's value:\n{log[-3000:]}"
    assert launched.unused not in log, f"{command} used the env var over the flag:\n{log[-3000:]}"
    for path in child_logs(launched):
        for line in path.read_text(errors="replace").splitlines():
            assert not line.startswith("{"), f"{path.name} logged JSON under console: {line}"


def child_logs(launched: Launched) -> list[Path]:
    if launched.child_logs is None:
        return []
    paths = sorted(launched.child_logs.glob("*.log"))
    assert paths, f"no child logs in {launched.child_logs}"
    return paths


async def test_the_cli_takes_its_api_url_from_env_and_a_flag_wins(procs: ProcessGroup) -> None:
    env_url, flag_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    env = {"FABRIC_URL": env_url}
    (code, _, err), (flag_code, _, flag_err) = await asyncio.gather(
        run_to_exit(procs, "fabric", "account", "list", env=env),
        run_to_exit(procs, "fabric", "account", "list", "--url", flag_url, env=env),
    )
    # Nothing listens there: the "unreachable" line names the URL the CLI used.
    assert code == flag_code == 3, (err, flag_err)
    assert env_url in err, err
    assert flag_url in flag_err, flag_err
    assert env_url not in flag_err, flag_err
