"""PostgreSQL for tests: one embedded server per session, a fresh database per test.

    server = EmbeddedServer.from_pristine(pristine, base, port)   # a copy of an initdb'd dir
    server.start(); server.stop(); server.kill()
    admin = PgAdmin(dsn)                      # any server we may CREATE DATABASE on
    admin.prepare_template()                  # `fabric_template` with the legacy schema
    dsn = await admin.fresh_database()        # CREATE DATABASE ... TEMPLATE fabric_template

FABRIC_TEST_PG_DSN, when set, names an existing server to use instead of the
embedded one. Server start/stop are synchronous (session fixtures call them);
the server runs as a foreground child of the test process, killed by pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from actors.legacy import db, embedded

TEMPLATE_DB = "fabric_template"
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
}


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def psql(dsn: str, *args: str) -> str:
    result = subprocess.run(
        [str(embedded.bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, *args],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return result.stdout


@contextlib.contextmanager
def server_base() -> Iterator[Path]:
    """A private dir for server data that the server's system user can reach (0711 parents)."""
    base = Path(tempfile.mkdtemp(prefix="fabric-pg-"))
    base.chmod(0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_pristine(path: Path) -> Path:
    """initdb once; servers are started from copies of this directory."""
    embedded.prepare(path, sync=False)
    return path


class EmbeddedServer:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.socket_dir = data_dir.parent / f"{data_dir.name}-sock"
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_pristine(cls, pristine: Path, data_dir: Path, port: int) -> EmbeddedServer:
        # cp -a keeps the owner (the system user when we run as root) and the 0700 mode.
        subprocess.run(["cp", "-a", str(pristine), str(data_dir)], check=True)
        return cls(data_dir, port)

    def dsn(self, database: str = "postgres") -> str:
        return embedded.dsn(self.port, database)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        argv = embedded.command(
            self.data_dir, self.port, self.socket_dir, settings=FAST_SETTINGS, die_with_parent=True
        )
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        isready = [str(embedded.bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1",
                   "-p", str(self.port), "-U", embedded.SUPERUSER]
        while subprocess.run(isready, check=False).returncode != 0:
            if not self.running or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"postgres did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)  # a poll interval while the server starts, not a synchronisation

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open sessions are cut, committed work is kept."""
        self._signal(signal.SIGINT, 20.0)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (the session), as a crash would."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class PgAdmin:
    """A server we may create databases on (the embedded one or FABRIC_TEST_PG_DSN)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def prepare_template(self) -> None:
        psql(self.dsn, "-c", f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        psql(self.dsn, "-c", f"CREATE DATABASE {TEMPLATE_DB} TEMPLATE template0")
        psql(with_database(self.dsn, TEMPLATE_DB), "-c", db.schema_sql())

    async def fresh_database(self, *, migrated: bool = True) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        template = TEMPLATE_DB if migrated else "template0"
        conn = await db.connect(self.dsn)
        try:
            try:
                # FILE_COPY is several times faster for a small template (PostgreSQL 15+).
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {template} STRATEGY FILE_COPY')
            except Exception:  # an older server: the default strategy
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {template}')
        finally:
            await db.close_connection(conn)
        return with_database(self.dsn, name)

    async def drop_database(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        conn = await db.connect(self.dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await db.close_connection(conn)
