"""`fabric up`: the whole system on one machine, supervised, resumable.

Job: parse the settings, claim the state dir (one `up` per dir), clear
children a killed earlier run left behind, choose or reuse ports, make the
CURVE keys still missing (`DIR/keys/`; security has no off switch), prepare
the embedded PostgreSQL, then run one `ChildActor` per child plus the
`Conductor` until SIGTERM/SIGINT/SIGHUP; stop the children in reverse order, exit 0.
Exit 2 with one line on a bad setting, 1 when the state dir is in use or unusable.

For people, on a terminal: stdout shows one live status block (`status.LiveStatus`)
and `up`'s own log lines appear above it in console form (unless `--log-format`
or FABRIC_LOG_FORMAT asks otherwise). Anywhere else (a pipe, a file, TERM=dumb)
stdout keeps its plain lines and stderr its JSON lines. SIGHUP (the terminal was
closed) moves whatever `up` still writes there to DIR/logs/up.log, then stops
as for SIGTERM; children die with `up` even when it is killed (child.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast

import structlog

from actors.cli.terminal import LineSink, LiveBlock, is_live
from actors.legacy import embedded
from actors.runtime import ActorSystem, RestartPolicy, run_until_signalled
from actors.runtime.logging import configure_logging, resolve_format
from actors.runtime.loop import run as run_loop
from actors.up.child import ChildActor, Timing
from actors.up.conductor import Conductor, Staged
from actors.up.layout import (
    Layout,
    LayoutError,
    Ports,
    admin_key,
    ensure_keys,
    ensure_nats_credentials,
    load_or_allocate_ports,
    read_pid,
    remove_file,
    write_endpoints,
    write_nats_config,
)
from actors.up.options import UpSettings, settings_from
from actors.up.plan import (
    CACHE_DATABASE,
    LOOPBACK,
    ChildSpec,
    api_url,
    child_specs,
    endpoints_document,
    metrics_children,
    needs_cache_database,
    postgres_probe,
    runs_local_nats,
)
from actors.up.probes import ensure_database
from actors.up.status import LiveStatus

LEFTOVER_WAIT = 5.0


def run(args: argparse.Namespace, state_dir: str) -> int:
    try:
        settings = settings_from(args, state_dir)
    except ValueError as exc:
        print(f"fabric up: {exc}", file=sys.stderr)
        return 2
    block = LiveBlock(sys.stdout, sys.stderr) if is_live(sys.stdout) else None
    log_format = resolve_format(args.log_format, sys.stderr)
    # With the block on the same terminal, log lines must go above it, never through it.
    log_stream = LineSink(block) if block is not None and sys.stderr.isatty() else sys.stderr
    configure_logging(log_format, args.log_level, process="up", stream=cast(TextIO, log_stream))
    layout = settings.layout
    try:
        layout.prepare()
        with _claim(layout):
            return run_loop(_run(settings, args, block))
    except (LayoutError, OSError, RuntimeError) as exc:
        print(f"fabric up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C before the supervisor runs (while PostgreSQL is being initialised): no children yet.
        print("fabric up: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _claim(layout: Layout) -> Iterator[None]:
    """One `fabric up` per state dir: an exclusive lock held for the whole run."""
    fd = os.open(layout.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another `fabric up` is running on {layout.root}")
        _clear_leftovers(layout)
        yield
    finally:
        os.close(fd)


def _clear_leftovers(layout: Layout) -> None:
    """Kill children a killed earlier run left behind (only ours: their argv names the state dir)."""
    killed: list[int] = []
    for pid_file in layout.run_dir.glob("*.pid"):
        pid = read_pid(pid_file)
        if pid is not None and _is_ours(pid, layout):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        remove_file(pid_file)
    remove_file(layout.ready_file)
    # Their ports and PostgreSQL's lock file must be free before the new children start.
    deadline = time.monotonic() + LEFTOVER_WAIT
    while any(not _dead(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)


def _dead(pid: int) -> bool:
    """Gone, or a zombie (holding no port or file any more) awaiting its reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _is_ours(pid: int, layout: Layout) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(layout.root).encode() in cmdline


async def _run(settings: UpSettings, args: argparse.Namespace, block: LiveBlock | None) -> int:
    layout = settings.layout
    kube_clusters = [c for c in settings.clusters if c not in settings.external_kubeconfigs]
    ports = load_or_allocate_ports(layout, api_port=settings.api_port, kube_clusters=kube_clusters,
                                   metrics_children=metrics_children(settings),
                                   api_replicas=settings.api_replicas)
    key = admin_key(layout, os.environ)
    created = ensure_keys(layout, settings.clusters)
    if created:
        structlog.get_logger().info("curve_keys_created", identities=created, keys_dir=str(layout.keys_dir))
    postgres: ChildSpec | None = None
    if settings.legacy_dsn is None:
        await asyncio.to_thread(embedded.prepare, layout.postgres_dir)
        socket_dir = Path(tempfile.gettempdir()) / f"fabric-pg-{ports.postgres}"
        # die_with_parent: as root the server runs behind a setuid, which clears the death
        # signal child.py arms; this re-arms it after the setuid (SIGQUIT, its immediate stop).
        argv = embedded.command(layout.postgres_dir, ports.postgres, socket_dir, die_with_parent=True)
        postgres = ChildSpec(
            name="postgres", argv=tuple(argv), probe=postgres_probe(settings, ports.postgres), stage=0,
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to leave.
            stop_signal=signal.SIGINT,
        )
        settings = _with_dsn(settings, embedded.dsn(ports.postgres))
    if postgres is None and needs_cache_database(settings):
        await _ensure_cache_database(settings)
    nats_server = _prepare_jetstream(settings, ports)
    write_endpoints(layout, endpoints_document(settings, ports))
    specs = child_specs(settings, ports, admin_key=lambda: _current_key(layout, key), postgres=postgres,
                        nats_server=nats_server)
    timing = Timing(backoff_max=args.restart_backoff_max, stop_timeout=args.stop_timeout)
    url = api_url(ports)
    live = None if block is None else LiveStatus(
        block, url, lambda: _current_key(layout, key), str(layout.root)
    )

    async def setup(system: ActorSystem) -> None:
        _stop_on_hangup(layout, live)
        staged: list[Staged] = []
        for spec in specs:
            ref = system.spawn(
                lambda spec=spec: ChildActor(spec, layout, timing),  # type: ignore[misc]
                name=spec.name,
                policy=RestartPolicy(max_restarts=100, window=60.0),
            )
            staged.append(Staged(spec.name, spec.stage, ref))
        system.spawn(lambda: Conductor(staged, layout, url, live=live), name="conductor")

    try:
        return await run_until_signalled(setup, stop_timeout=args.stop_timeout + 5)
    finally:
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


def _stop_on_hangup(layout: Layout, live: LiveStatus | None) -> None:
    """SIGHUP (the terminal was closed) stops `up` in order, as SIGTERM does.

    Installed once `run_until_signalled` handles SIGTERM, which it re-raises as. Not
    installed when SIGHUP is ignored (`nohup fabric up`): that caller asked to survive it.
    """
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return

    def hangup() -> None:
        if live is not None:
            live.detach()
        _leave_terminal(layout)
        structlog.get_logger().info("hangup_received")
        signal.raise_signal(signal.SIGTERM)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup)


def _leave_terminal(layout: Layout) -> None:
    """Point stdout and stderr, where they are a terminal, at DIR/logs/up.log.

    A closed terminal fails every write (EIO), and a log line failing in a child's stop
    would leave that child running; the log file keeps the rest of the stop readable.
    """
    fd = os.open(layout.log_file("up"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream.isatty():
                    stream.flush()
                    os.dup2(fd, stream.fileno())
    finally:
        os.close(fd)


async def _ensure_cache_database(settings: UpSettings) -> None:
    """The api replicas' shared cache on an outside legacy PostgreSQL (the embedded one's
    probe makes it), before they start."""
    assert settings.legacy_dsn is not None
    try:
        await ensure_database(settings.legacy_dsn, CACHE_DATABASE)
    except Exception as exc:  # whatever the server says, the operator's remedy is the same
        raise RuntimeError(f"cannot create the query cache database {CACHE_DATABASE} on the legacy "
                           f"PostgreSQL ({type(exc).__name__}: {exc}); give --cache-dsn")


def _prepare_jetstream(settings: UpSettings, ports: Ports) -> Path | None:
    """Before any child: the NATS credentials, and the local server's config. Returns the
    local nats-server binary when `up` runs one.

    The credentials are written even for an outside NATS cluster: its operator gives its
    servers the users of DIR/keys/*.nats (the test suite's NatsCluster does the same).
    """
    layout = settings.layout
    if settings.bus != "jetstream":
        return None
    users = ensure_nats_credentials(layout, settings.clusters)
    if not runs_local_nats(settings):
        return None
    write_nats_config(layout, users, host=LOOPBACK, port=ports.nats, monitor_port=ports.nats_monitor)
    from transport.jetstream.server import nats_server_binary  # only on this bus

    return nats_server_binary()


def _current_key(layout: Layout, fallback: str) -> str:
    """Read at each api start, so `fabric keys rotate` takes effect on the next restart."""
    return admin_key(layout, os.environ) or fallback


def _with_dsn(settings: UpSettings, dsn: str) -> UpSettings:
    return dataclasses.replace(settings, legacy_dsn=dsn)
