"""How a JetStream API error is classified: the bus away (`BusUnavailable`, retry later) or a
refusal (`ApiError`). The server's answers are canned here; the codes are nats-server's."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from core.bus import BusUnavailable
from transport.jetstream.connection import ApiError, Connection


def _answering(error: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Connection:
    conn = Connection(["nats://127.0.0.1:1"], user="api", password="", timeout=1.0, name="test")

    async def request(_subject: str, _payload: bytes, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(data=json.dumps({"error": error}).encode())

    monkeypatch.setattr(conn, "check_connected", lambda: None)
    monkeypatch.setattr(conn.nc, "request", request)
    return conn


@pytest.mark.parametrize("error", [
    {"code": 503, "err_code": 10008, "description": "JetStream system temporarily unavailable"},
    {"code": 500, "err_code": 10049, "description": "stream create failed"},
    {"code": 408, "err_code": 0, "description": "request timeout"},
    {"code": 400, "err_code": 10005, "description": "no suitable peers for placement, peer offline"},
])
async def test_an_answer_meaning_wait_is_the_bus_away(
    error: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BusUnavailable, match=error["description"]):
        _ = await _answering(error, monkeypatch).request("$JS.API.STREAM.CREATE.FABRIC", {})


async def test_any_other_error_is_a_refusal_with_its_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    error = {"code": 400, "err_code": 10058, "description": "stream name already in use"}
    with pytest.raises(ApiError) as raised:
        _ = await _answering(error, monkeypatch).request("$JS.API.STREAM.CREATE.FABRIC", {})
    assert (raised.value.code, raised.value.err_code) == (400, 10058)
