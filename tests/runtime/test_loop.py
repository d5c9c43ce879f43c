"""The one loop runner: uvloop, import-time objects frozen, and the GIL switch interval a
process asks for (the broker asks, so its loop does not wait behind the log cleaner's thread)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import structlog

from actors.broker import main as broker_main
from actors.runtime.loop import GEN0_THRESHOLD
from tests.support.broker import new_endpoints
from tests.support.keys import broker_secret, keys_dir


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
        "    return f'{loop} {gc.get_freeze_count() > 0} {sys.getswitchinterval()} {gc.get_threshold()}'\n"
        "print(run(probe(), switch_interval=0.0005))\n"
    )
    assert out == f"uvloop True 0.0005 {(GEN0_THRESHOLD, 10, 10)}"


def test_run_leaves_the_switch_interval_alone_unless_asked() -> None:
    out = _in_a_fresh_interpreter(
        "import sys\n"
        "from actors.runtime.loop import run\n"
        "async def probe():\n"
        "    return sys.getswitchinterval()\n"
        "print(run(probe()))\n"
    )
    assert float(out) == 0.005



def test_the_broker_runs_its_loop_with_a_short_switch_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: dict[str, object] = {}

    def recording_run(main: Coroutine[Any, Any, int], **options: object) -> int:
        main.close()  # only how it would run matters here
        asked.update(options)
        return 0

    monkeypatch.setattr(broker_main, "run_loop", recording_run)
    argv = ["--data-dir", str(tmp_path), "--bind", str(new_endpoints()),
            "--curve-secret", str(broker_secret()), "--curve-clients", str(keys_dir())]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert broker_main.main(argv) == 0
    finally:
        # `main` configures logging for the process (at info): tests after this one in the
        # same process capture their debug lines.
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
    interval = asked["switch_interval"]
    assert isinstance(interval, float), asked
    assert 0 < interval <= 0.001
