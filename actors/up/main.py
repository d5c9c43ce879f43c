"""`fabric up`: the whole system on one machine, supervised, resumable.

Job: parse the settings, claim the state dir (one `up` per dir), clear
children a killed earlier run left behind, choose or reuse ports, make the
CURVE keys still missing (`DIR/keys/`; security has no off switch), prepare
the embedded PostgreSQL, then run one `ChildActor` per child plus the
`Conductor` until SIGTERM/SIGINT; stop the children in reverse order, exit 0.
Exit 2 with one line on a bad setting, 1 when the state dir is in use or unusable.
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

import structlog

from actors.legacy import embedded
from actors.runtime import ActorSystem, RestartPolicy, run_until_signalled
from actors.runtime.logging import configure_logging
from actors.up.child import ChildActor, Timing
from actors.up.conductor import Conductor, Staged
from actors.up.layout import (
    Layout,
    LayoutError,
    admin_key,
    ensure_keys,
    load_or_allocate_ports,
    read_pid,
    remove_file,
    write_endpoints,
)
from actors.up.options import UpSettings, settings_from
from actors.up.plan import ChildSpec, api_url, child_specs, endpoints_document, postgres_probe

LEFTOVER_WAIT = 5.0


def run(args: argparse.Namespace, state_dir: str) -> int:
    try:
        settings = settings_from(args, state_dir)
    except ValueError as exc:
        print(f"fabric up: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, args.log_level, process="up")  # type: ignore[arg-type]
    layout = settings.layout
    try:
        layout.prepare()
        with _claim(layout):
            return asyncio.run(_run(settings, args))
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


async def _run(settings: UpSettings, args: argparse.Namespace) -> int:
    layout = settings.layout
    kube_clusters = [c for c in settings.clusters if c not in settings.external_kubeconfigs]
    ports = load_or_allocate_ports(layout, api_port=settings.api_port, kube_clusters=kube_clusters)
    key = admin_key(layout, os.environ)
    created = ensure_keys(layout, settings.clusters)
    if created:
        structlog.get_logger().info("curve_keys_created", identities=created, keys_dir=str(layout.keys_dir))
    postgres: ChildSpec | None = None
    if settings.legacy_dsn is None:
        await asyncio.to_thread(embedded.prepare, layout.postgres_dir)
        socket_dir = Path(tempfile.gettempdir()) / f"fabric-pg-{ports.postgres}"
        argv = embedded.command(layout.postgres_dir, ports.postgres, socket_dir)
        postgres = ChildSpec(
            name="postgres", argv=tuple(argv), probe=postgres_probe(ports.postgres), stage=0,
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to leave.
            stop_signal=signal.SIGINT,
        )
        settings = _with_dsn(settings, embedded.dsn(ports.postgres))
    write_endpoints(layout, endpoints_document(settings, ports))
    specs = child_specs(settings, ports, admin_key=lambda: _current_key(layout, key), postgres=postgres)
    timing = Timing(backoff_max=args.restart_backoff_max, stop_timeout=args.stop_timeout)

    async def setup(system: ActorSystem) -> None:
        staged: list[Staged] = []
        for spec in specs:
            ref = system.spawn(
                lambda spec=spec: ChildActor(spec, layout, timing),  # type: ignore[misc]
                name=spec.name,
                policy=RestartPolicy(max_restarts=100, window=60.0),
            )
            staged.append(Staged(spec.name, spec.stage, ref))
        system.spawn(lambda: Conductor(staged, layout, api_url(ports)), name="conductor")

    return await run_until_signalled(setup, stop_timeout=args.stop_timeout + 5)


def _current_key(layout: Layout, fallback: str) -> str:
    """Read at each api start, so `fabric keys rotate` takes effect on the next restart."""
    return admin_key(layout, os.environ) or fallback


def _with_dsn(settings: UpSettings, dsn: str) -> UpSettings:
    return dataclasses.replace(settings, legacy_dsn=dsn)
