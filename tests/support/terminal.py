"""A process on a pseudo-terminal: what a person at a terminal would see it write.

    async with on_terminal([exe, *args], env={...}) as term:
        await term.wait_for("text")          # fails with the screen so far after a deadline
        term.signal(signal.SIGINT)
        code = await term.wait()

Reads the terminal side continuously (the process would block on a full pty
otherwise) through the event loop; the process gets the pty as stdin, stdout and
stderr, in a session of its own, and is SIGKILLed with its group at the end
whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import termios
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from tests.support.wait import wait_until

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ROWS, COLUMNS = 60, 200


class Terminal:
    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.raw = bytearray()

    @property
    def text(self) -> str:
        return self.raw.decode(errors="replace")

    def plain(self) -> str:
        """What was written, without the escape sequences."""
        return ANSI.sub("", self.text)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer closed its side (the process is gone)
            chunk = b""
        if chunk:
            self.raw += chunk
        else:
            asyncio.get_running_loop().remove_reader(self.master)

    async def wait_for(self, text: str, timeout: float = 90) -> str:
        def shown() -> bool:
            return text in self.plain()

        try:
            _ = await wait_until(shown, timeout=timeout, interval=0.05, message=f"{text!r} shown")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; the terminal so far:\n{self.plain()[-4000:]}") from None
        return self.plain()

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 30) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


@asynccontextmanager
async def on_terminal(
    argv: Sequence[str], *, env: dict[str, str], cwd: str | None = None
) -> AsyncIterator[Terminal]:
    master, slave = pty.openpty()
    # A sized terminal, as a person's is: wide enough that no line of interest is cut.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
            start_new_session=True,
        )
    finally:
        os.close(slave)
    term = Terminal(process, master)
    loop = asyncio.get_running_loop()
    loop.add_reader(master, term._readable)
    try:
        yield term
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            _ = await process.wait()
        loop.remove_reader(master)
        os.close(master)
