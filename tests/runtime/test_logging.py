"""JSON log lines: one object per line, whatever the values, from structlog and from the
stdlib loggers libraries use; the bound ids ride along."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from actors.runtime.logging import configure_logging


class Labelled:
    def __structlog__(self) -> str:
        return "labelled"


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    configure_logging("json", "debug", process="test", stream=out)
    yield out
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_carries_its_bound_ids_and_renders_any_value(stream: io.StringIO) -> None:
    log = structlog.get_logger().bind(account_id="a-1", cluster="east")
    log.info("namespace_created", event_id="e-1", labelled=Labelled(), opaque=Opaque(),
             counts={1: "one"}, name="Zürich", ratio=0.5, missing=None)
    [line] = lines(stream)
    assert line["event"] == "namespace_created"
    assert line["level"] == "info"
    assert line["process"] == "test"
    assert (line["account_id"], line["cluster"], line["event_id"]) == ("a-1", "east", "e-1")
    assert line["labelled"] == "labelled"
    assert line["opaque"] == "<opaque>"
    assert line["counts"] == {"1": "one"}
    assert line["name"] == "Zürich"
    assert (line["ratio"], line["missing"]) == (0.5, None)
    assert str(line["timestamp"]).endswith("Z")


def test_an_exception_is_rendered_into_the_line(stream: io.StringIO) -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        structlog.get_logger().exception("failed")
    [line] = lines(stream)
    assert "ValueError: broken" in str(line["exception"])


def test_a_library_logging_through_the_stdlib_gets_json_lines_too(stream: io.StringIO) -> None:
    logging.getLogger("some.library").warning("disk %s is slow", "sda")
    [line] = lines(stream)
    assert line["event"] == "disk sda is slow"
    assert line["level"] == "warning"
