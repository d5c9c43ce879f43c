"""bin/broker as an operator meets it: --help, bad settings, clean stop, refusing a corrupt log."""

from __future__ import annotations

import signal
import struct
import zlib
from pathlib import Path

import pytest

from actors.broker.segments import segment_name
from actors.broker.settings import DedupSetting, dedup_window, duration
from tests.broker.helpers import envelope
from tests.support.broker import new_endpoints, start_broker_process
from tests.support.keys import api_keys, broker_flags, broker_public, broker_secret, keys_dir
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.client import Publisher
from transport.sockets import close_context, new_context

pytestmark = pytest.mark.processes


async def test_help_describes_every_setting(procs: ProcessGroup) -> None:
    proc = await procs.start("broker", "--help")
    assert await proc.process.wait() == 0
    text = proc.log_text()
    for flag in (
        "--data-dir", "--bind", "--curve-secret", "--curve-clients", "--heartbeat-interval",
        "--consumer-timeout", "--segment-bytes", "--dedup-window", "--tombstone-retention",
        "--clean-interval", "--log-format",
    ):
        assert flag in text


@pytest.mark.parametrize(
    "args",
    [
        ["--bind", "tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3"],
        ["--data-dir", "x", "--bind", "tcp://127.0.0.1:1"],
        ["--data-dir", "x", "--bind", "a,b,c"],
        ["--data-dir", "x", "--bind", "tcp://a:1,tcp://b:2,tcp://c:3", "--heartbeat-interval", "0"],
        ["--data-dir", "x", "--bind", "tcp://a:1,tcp://b:2,tcp://c:3", "--dedup-window", "0"],
        ["--data-dir", "x", "--bind", "tcp://a:1,tcp://b:2,tcp://c:3", "--dedup-window", "ten"],
        ["--data-dir", "x", "--bind", "tcp://a:1,tcp://b:2,tcp://c:3", "--tombstone-retention", "1w"],
        ["--data-dir", "x", "--bind", "tcp://a:1,tcp://b:2,tcp://c:3", "--clean-interval", "0s"],
    ],
)
async def test_a_bad_setting_exits_non_zero_with_one_clear_line(
    procs: ProcessGroup, tmp_path: Path, args: list[str]
) -> None:
    proc = await procs.start("broker", *args)
    assert await proc.process.wait() == 2
    lines = [line for line in proc.log_text().splitlines() if line.strip()]
    assert lines[-1].startswith("broker: error:")


def _bind() -> list[str]:
    return ["--data-dir", "x", "--bind", str(new_endpoints())]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--curve-clients", "k"],
         "broker: error: --curve-secret (or FABRIC_BROKER_CURVE_SECRET) is required: every broker "
         "socket requires CURVE"),
        (["--curve-secret", "k"],
         "broker: error: --curve-clients (or FABRIC_BROKER_CURVE_CLIENTS) is required: every "
         "broker socket requires CURVE"),
        (["--curve-secret", "/nonexistent/broker.key_secret", "--curve-clients", "k"],
         "broker: cannot start: /nonexistent/broker.key_secret: no such certificate file"),
        (["--curve-secret", "PUBLIC", "--curve-clients", "k"], "holds no secret key"),
        (["--curve-secret", "SECRET", "--curve-clients", "/nonexistent"],
         "broker: cannot start: /nonexistent: not a readable directory of client certificates"),
    ],
)
async def test_a_broker_without_usable_curve_keys_refuses_to_start_with_one_clear_line(
    procs: ProcessGroup, tmp_path: Path, args: list[str], line: str
) -> None:
    known = {"PUBLIC": str(broker_public()), "SECRET": str(broker_secret())}
    argv = [*_bind(), *(known.get(a, a) for a in args)]
    proc = await procs.start("broker", *argv)
    assert await proc.process.wait() == 2
    lines = [text for text in proc.log_text().splitlines() if text.strip()]
    assert line in lines[-1]
    assert lines[-1].startswith("broker:")


async def test_settings_come_from_the_environment_when_no_flag_is_given(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints = new_endpoints()
    proc = await procs.start(
        "broker",
        env={
            "FABRIC_BROKER_DATA_DIR": str(tmp_path / "b"),
            "FABRIC_BROKER_BIND": str(endpoints),
            "FABRIC_BROKER_CURVE_SECRET": str(broker_secret()),
            "FABRIC_BROKER_CURVE_CLIENTS": str(keys_dir()),
            "FABRIC_BROKER_DEDUP_WINDOW": "10m",
            "FABRIC_BROKER_TOMBSTONE_RETENTION": "30s",
        },
    )
    _ = await wait_until(lambda: "broker_started" in proc.log_text(), message="broker started")
    assert await procs.stop(proc) == 0
    bad = await procs.start(
        "broker",
        env={
            "FABRIC_BROKER_DATA_DIR": str(tmp_path / "c"),
            "FABRIC_BROKER_BIND": str(new_endpoints()),
            "FABRIC_BROKER_SEGMENT_BYTES": "-1",
        },
        name="bad",
    )
    assert await bad.process.wait() == 2


def test_durations_and_dedup_windows_parse_as_documented() -> None:
    assert [duration(t) for t in ("500ms", "30s", "10m", "24h", "7d", "2")] == [
        0.5, 30, 600, 86400, 7 * 86400, 2,
    ]
    assert dedup_window("100000") == DedupSetting(count=100_000)
    assert dedup_window("10m") == DedupSetting(count=None, seconds=600)


async def test_an_address_in_use_exits_with_a_clear_line(procs: ProcessGroup, tmp_path: Path) -> None:
    _proc, endpoints = await start_broker_process(procs, tmp_path / "a")
    second = await procs.start(
        "broker", "--data-dir", str(tmp_path / "b"), "--bind", str(endpoints), *broker_flags(),
        name="second",
    )
    assert await second.process.wait() == 2
    assert "broker: cannot start: cannot bind" in second.log_text()


async def test_sigterm_stops_cleanly_and_keeps_every_confirmed_event(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    proc, endpoints = await start_broker_process(procs, tmp_path / "b")
    ctx = new_context()
    try:
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            await pub.publish([envelope(i) for i in range(10)])
    finally:
        close_context(ctx)
    assert await procs.kill(proc, signal.SIGTERM) == 0
    assert '"broker_stopped"' in proc.log_text()
    proc, endpoints = await start_broker_process(procs, tmp_path / "b", name="again")
    assert '"head": 10' in proc.log_text()


async def test_a_corrupt_sealed_segment_makes_the_broker_refuse_to_start(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    data = tmp_path / "b"
    proc, endpoints = await start_broker_process(procs, data, "--segment-bytes", "300")
    ctx = new_context()
    try:
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            for i in range(10):
                await pub.publish([envelope(i)])
    finally:
        close_context(ctx)
    assert await procs.stop(proc) == 0
    sealed = sorted((data / "log").iterdir())[0]
    raw = bytearray(sealed.read_bytes())
    raw[30] ^= 0xFF
    sealed.write_bytes(bytes(raw))
    again = await procs.start(
        "broker", "--data-dir", str(data), "--bind", str(new_endpoints()), *broker_flags(), name="again"
    )
    assert await again.process.wait() == 3
    assert f"broker: refusing to start: sealed segment {sealed.name} is corrupt" in again.log_text()


async def test_a_log_of_the_previous_record_format_is_refused_with_one_clear_line(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    log_dir = tmp_path / "b" / "log"
    log_dir.mkdir(parents=True)
    body = struct.pack(">BBQ16s", 1, 1, 1, bytes(16)) + b"\x80" * 40  # a format 1 record
    crc = zlib.crc32(body, zlib.crc32(len(body).to_bytes(4, "big")))
    (log_dir / segment_name(1)).write_bytes(struct.pack(">II", len(body), crc) + body)
    proc = await procs.start(
        "broker", "--data-dir", str(tmp_path / "b"), "--bind", str(new_endpoints()), *broker_flags()
    )
    assert await proc.process.wait() == 3
    (line,) = [line for line in proc.log_text().splitlines() if line.startswith("broker:")]
    assert "record format 1" in line
    assert "start from an empty data dir" in line
