"""The one loop runner: uvloop, import-time objects frozen, and the GIL switch interval a
process asks for (the broker asks, so its loop does not wait behind the log cleaner's thread)."""

from __future__ import annotations

import subprocess
import sys


def _in_a_fresh_interpreter(code: str) -> str:
    # `run` sets process-wide state (the switch interval, the frozen generation) and starts
    # its own loop: a fresh interpreter keeps the test's process as it was.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_run_uses_uvloop_freezes_the_imports_and_sets_the_switch_interval_asked_for() -> None:
    out = _in_a_fresh_interpreter(
        "import asyncio, gc, sys\n"
        "from actors.runtime.loop import run\n"
        "async def probe():\n"
        "    loop = type(asyncio.get_running_loop()).__module__\n"
        "    return f'{loop} {gc.get_freeze_count() > 0} {sys.getswitchinterval()}'\n"
        "print(run(probe(), switch_interval=0.0005))\n"
    )
    assert out == "uvloop True 0.0005"


def test_run_leaves_the_switch_interval_alone_unless_asked() -> None:
    out = _in_a_fresh_interpreter(
        "import sys\n"
        "from actors.runtime.loop import run\n"
        "async def probe():\n"
        "    return sys.getswitchinterval()\n"
        "print(run(probe()))\n"
    )
    assert float(out) == 0.005

