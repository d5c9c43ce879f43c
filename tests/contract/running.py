"""Waiting on a started process and stopping it the way the contract tests need.

- `wait_http(proc, url)` / `wait_logged(proc, text)`: until the process answers or logged
  something, failing at once (with its log) if it exits meanwhile.
- `stop_with(procs, proc, signal)`: send one signal, wait up to STOP_TIMEOUT, SIGKILL after
  that (so a hung stop shows as -9); returns the exit code and the process's stdout.
"""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from tests.support.kube import DEFAULT_TOKEN
from tests.support.processes import Proc, ProcessGroup
from tests.support.wait import wait_until

STOP_TIMEOUT = 15.0  # "promptly": far above a clean stop, far below the SIGKILL a supervisor uses


async def wait_http(proc: Proc, url: str) -> None:
    async with aiohttp.ClientSession() as http:

        async def answers() -> bool:
            assert proc.running, f"{proc.name} exited: {proc.log_text()[-3000:]}"
            async with http.get(url, headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}) as r:
                return r.status == 200

        _ = await wait_until(answers, timeout=60, message=f"{proc.name} answers {url}")


async def wait_logged(proc: Proc, text: str) -> None:
    def logged() -> bool:
        assert proc.running, f"{proc.name} exited: {proc.log_text()[-3000:]}"
        return text in proc.log_text()

    _ = await wait_until(logged, timeout=60, message=f"{proc.name} logged {text}")


async def stop_with(procs: ProcessGroup, proc: Proc, sig: signal.Signals) -> tuple[int, str]:
    """Send `sig`; returns the exit code (SIGKILL's -9 if it did not stop in time) and stdout."""
    stdout = proc.process.stdout
    assert stdout is not None
    proc.process.send_signal(sig)
    try:
        code = await asyncio.wait_for(proc.process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        code = await procs.kill(proc)
    return code, (await stdout.read()).decode(errors="replace")
