"""What the outside contract says about a process's output, as small checks tests share.

- `run_to_exit` runs a bin/ command that is expected to end by itself (help, a bad setting)
  and returns its exit code, stdout and stderr.
- `error_lines` is stderr without argparse's usage block: a bad setting must leave exactly
  one line there (argparse's own `prog: error: ...` line counts as that one line).
- `json_lines` parses every stderr line as a JSON object (the default log format) and
  fails naming the first line that is not one.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tests.support.processes import Proc, ProcessGroup

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
BOOTSTRAP_NOTICE = "fabric: preparing "  # bin/lib/venv.sh, while it (re)builds the venv


def fabric_settings_in(environ: dict[str, str]) -> list[str]:
    """The FABRIC_* settings of an environment, leaving FABRIC_TEST_* (test-runner settings)."""
    return [k for k in environ if k.startswith("FABRIC_") and not k.startswith("FABRIC_TEST_")]


async def run_to_exit(
    procs: ProcessGroup, command: str, *args: str, env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, str, str]:
    """Run `bin/<command> args` to its end; returns (exit code, stdout, stderr)."""
    proc = await procs.start(command, *args, env=env, stdout_to_log=False)
    stdout = proc.process.stdout
    assert stdout is not None
    out = await asyncio.wait_for(stdout.read(), timeout)
    code = await asyncio.wait_for(proc.process.wait(), timeout)
    return code, out.decode(errors="replace"), proc.log_text()


def error_lines(stderr: str) -> list[str]:
    """The non-empty stderr lines outside argparse's usage block."""
    kept: list[str] = []
    in_usage = False
    for line in stderr.splitlines():
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line[:1].isspace():
            continue
        in_usage = False
        if line.strip() and not line.startswith(BOOTSTRAP_NOTICE):
            kept.append(line)
    return kept


def without_bootstrap(lines: list[str]) -> list[str]:
    """The process's own lines: without what the bin/ launcher printed while it (re)built the
    venv (bin/lib/venv.sh: a `fabric: preparing ...` notice, then pip), which happens only on
    a first run or after setup.cfg changed, before the process itself starts."""
    if not lines or not lines[0].startswith(BOOTSTRAP_NOTICE):
        return lines
    for index, line in enumerate(lines):
        if line.startswith("{"):
            return lines[index:]
    return []


def json_lines(text: str, *, source: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object; fails on the first line that is not one."""
    parsed: list[dict[str, Any]] = []
    for number, line in enumerate(without_bootstrap(text.splitlines()), 1):
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"{source} line {number} is not JSON: {line[:300]!r}") from None
        assert isinstance(value, dict), f"{source} line {number} is not a JSON object: {line[:300]!r}"
        parsed.append(value)
    return parsed


def check_log_line(line: dict[str, Any], *, source: str) -> None:
    """A log line carries a snake_case `event` and a `level`."""
    event = line.get("event")
    assert isinstance(event, str), f"{source}: no `event`: {line}"
    assert SNAKE_CASE.match(event), f"{source}: `event` is not a snake_case name: {line}"
    assert isinstance(line.get("level"), str), f"{source}: no `level`: {line}"


def log_events(proc: Proc) -> list[dict[str, Any]]:
    """The JSON log lines a process has written so far (a partly written last line is left out)."""
    text = proc.log_text()
    complete = text[: text.rfind("\n") + 1]
    return json_lines(complete, source=proc.name)


def has_event(proc: Proc, event: str, **fields: object) -> dict[str, Any] | None:
    """The first log line of `proc` named `event` with every given field equal, else None."""
    for line in log_events(proc):
        if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
            return line
    return None
