"""A small block of text redrawn in place at the bottom of a terminal, with log lines above it.

    if is_live(sys.stdout):
        block = LiveBlock(sys.stdout, sys.stderr)
        block.draw(["CHILD  STATE", "api    ready"])   # replaces the block drawn before
        block.print_above("a log line")              # scrolls up, the block stays below it
        block.erase()                                # off the screen until the next draw
        block.close()                                # erases it for good; later lines print plainly

Plain ANSI (cursor up, erase to the end of the screen), no curses: enough for a
block of a few dozen lines. `is_live` says whether a stream is a terminal that
understands it (a TTY whose TERM is set and not `dumb`); callers print plain
lines otherwise. A terminal that went away (hangup: EIO) or a closed stream
never raises here: the display is a courtesy, never a reason to stop.
`LineSink` is a file-like for loggers that routes every complete line through
`print_above`, so log lines and the block never overwrite each other.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import TextIO

CURSOR_UP = "\x1b[{n}A"
ERASE_DOWN = "\x1b[J"
DUMB_TERMS = ("", "dumb")


def is_live(stream: TextIO, env: Mapping[str, str] = os.environ) -> bool:
    """A terminal that takes ANSI cursor movement (not a pipe, a file or TERM=dumb)."""
    try:
        tty = stream.isatty()
    except (OSError, ValueError):
        return False
    return tty and env.get("TERM", "") not in DUMB_TERMS


class LiveBlock:
    """The block at the bottom of `out`; `above` (often the same terminal) gets log lines."""

    def __init__(self, out: TextIO, above: TextIO | None = None) -> None:
        self.out = out
        self.above = above or out
        self.lines: list[str] = []
        self.drawn = 0  # rows the block occupies on screen now
        self.closed = False

    def draw(self, lines: Sequence[str]) -> None:
        """Show `lines` in place of the block drawn before (nothing is written if unchanged)."""
        if self.closed:
            return
        fitted = self._fit(lines)
        if fitted == self.lines and self.drawn:
            return
        self.lines = fitted
        self._write(self.out, self._erase() + "".join(line + "\n" for line in fitted))
        self.drawn = len(fitted)

    def print_above(self, text: str) -> None:
        """Print `text` where the block was, then draw the block again below it."""
        if self.closed or not self.drawn:
            self._write(self.above, text + "\n")
            return
        self._write(self.out, self._erase())
        self.drawn = 0
        self._write(self.above, text + "\n")
        self._write(self.out, "".join(line + "\n" for line in self.lines))
        self.drawn = len(self.lines)

    def erase(self) -> None:
        """Remove the block from the screen; the next `draw` shows it again."""
        if self.drawn and not self.closed:
            self._write(self.out, self._erase())
        self.drawn = 0

    def close(self, *, erase: bool = True) -> None:
        """Stop redrawing; with `erase`, remove the block (else it stays as last drawn)."""
        if self.closed:
            return
        if erase and self.drawn:
            self._write(self.out, self._erase())
        self.closed = True
        self.drawn = 0

    def detach(self) -> None:
        """The terminal is gone (hangup): write nothing more to it, not even an erase."""
        self.closed = True
        self.drawn = 0

    def _erase(self) -> str:
        if not self.drawn:
            return "\r" + ERASE_DOWN
        return CURSOR_UP.format(n=self.drawn) + "\r" + ERASE_DOWN

    def _fit(self, lines: Sequence[str]) -> list[str]:
        # A line wider than the terminal wraps onto two rows and the cursor-up count would be
        # wrong, so lines are cut; a block taller than the screen could not be erased at all.
        size = self._size()
        width = max(size.columns - 1, 10)
        height = max(size.lines - 1, 3)
        cut = [line if len(line) <= width else line[: width - 1] + "…" for line in lines]
        if len(cut) > height:
            hidden = len(cut) - height + 1
            cut = [*cut[: height - 1], f"… {hidden} more lines (a taller terminal shows them)"]
        return cut

    def _size(self) -> os.terminal_size:
        try:
            size = os.get_terminal_size(self.out.fileno())
        except (OSError, ValueError):
            return shutil.get_terminal_size()
        # A terminal nobody sized (a bare pty says 0x0): COLUMNS/LINES, else 80x24.
        return size if size.columns and size.lines else shutil.get_terminal_size()

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            stream.write(text)
            stream.flush()


class LineSink(io.TextIOBase):
    """A write-only text stream for loggers: each complete line goes above the block."""

    def __init__(self, block: LiveBlock) -> None:
        super().__init__()
        self.block = block
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *complete, self.pending = self.pending.split("\n")
        for line in complete:
            self.block.print_above(line)
        return len(text)

    def flush(self) -> None:
        """Lines are written as soon as they are complete; a partial line waits for its end."""

    def isatty(self) -> bool:
        return self.block.above.isatty()

    def fileno(self) -> int:
        return self.block.above.fileno()
