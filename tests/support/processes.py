"""Real processes started through the same bin/ entry points users run.

Every process a test starts is registered here and ended by the fixture's
teardown, by pid, whatever the outcome (SIGTERM, then SIGKILL). Each process's
stderr goes to a log file under the test's tmp dir, printed when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "bin"


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class ProcessGroup:
    """Start, signal and reap test processes; `close()` guarantees none survives."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self._counter = 0

    async def start(
        self,
        command: str,
        *args: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
        stdout_to_log: bool = True,
    ) -> Proc:
        """Start `bin/<command> args...` (or an absolute executable path)."""
        exe = command if os.path.isabs(command) else str(BIN / command)
        self._counter += 1
        label = name or command
        log_path = self.log_dir / f"{self._counter:02d}-{label}.log"
        full_env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", **(env or {})}
        log = log_path.open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                exe,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log if stdout_to_log else asyncio.subprocess.PIPE,
                stderr=log,
                env=full_env,
                start_new_session=True,
            )
        finally:
            log.close()
        proc = Proc(label, process, log_path, [exe, *args], env or {})
        self.procs.append(proc)
        return proc

    async def kill(self, proc: Proc, sig: signal.Signals = signal.SIGKILL) -> int:
        if proc.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        return await proc.process.wait()

    async def stop(self, proc: Proc, timeout: float = 10.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit within `timeout`."""
        if proc.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.process.wait(), timeout)
        except TimeoutError:
            return await self.kill(proc)

    async def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.running:
                await self.stop(proc, timeout=5.0)
            # The process group catches children a process may have left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (pid {p.pid}, rc {p.process.returncode}) -----\n{p.log_text()[-6000:]}"
            for p in self.procs
        )
