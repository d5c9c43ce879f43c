"""Rate limits on the running API: per key (429 + Retry-After + -32029, then recovery) and per
remote address for wrong keys. Time is a hand-driven clock: no sleeps, no timed assertions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from actors.api.access import AccessSettings
from tests.api.harness import RunningApi, fast_settings
from tests.api.keyed import Answer, ManualClock, call, issue, running_api_on, send
from tests.support.fake_bus import FakeBus, FakeConnector

RATE_LIMITED = -32029
LIMITS = AccessSettings(key_rate=1.0, key_burst=3, fail_rate=1.0, fail_burst=2)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def api(pg_dsn: str, tmp_path: Path, bus: FakeBus, clock: ManualClock) -> AsyncIterator[RunningApi]:
    """The API with 1 call/s and a burst of 3 per key; 2 wrong keys per address, then 1/s."""
    settings = replace(fast_settings(pg_dsn, tmp_path / "state"), access=LIMITS)
    async with running_api_on(settings, FakeConnector(bus), clock) as running:
        yield running


def limited(answer: Answer, id_: object) -> int:
    """Assert a 429 rate-limit answer; return its Retry-After."""
    assert answer.status == 429, answer
    assert answer.error["code"] == RATE_LIMITED
    assert answer.body["id"] == id_
    retry_after = int(answer.headers["Retry-After"])
    assert retry_after >= 1
    assert answer.error["data"]["retry_after"] == retry_after
    return retry_after


async def test_a_burst_beyond_the_limit_gets_429_with_retry_after_and_then_recovers(
    api: RunningApi, clock: ManualClock
) -> None:
    for i in range(3):
        assert (await call(api, "account.list", {}, api.key, id_=i)).status == 200
    assert limited(await call(api, "account.list", {}, api.key, id_="over"), "over") == 1
    assert limited(await call(api, "account.get", {"slug": "x"}, api.key, id_=9), 9) == 1, (
        "a refused call costs nothing but is still refused while the bucket is empty"
    )
    clock.advance(1.0)
    assert "result" in (await call(api, "account.list", {}, api.key)).body
    assert (await call(api, "account.list", {}, api.key)).status == 429


async def test_each_key_has_its_own_bucket(api: RunningApi, clock: ManualClock) -> None:
    reader = await issue(api, "read")  # one of the admin key's 3
    for _ in range(2):
        assert (await call(api, "account.list", {}, api.key)).status == 200
    assert (await call(api, "account.list", {}, api.key)).status == 429
    for _ in range(3):
        assert "result" in (await call(api, "account.list", {}, reader["key"])).body
    assert (await call(api, "account.list", {}, reader["key"])).status == 429


async def test_a_batch_pays_per_call_and_is_refused_with_one_error(api: RunningApi) -> None:
    batch = [{"jsonrpc": "2.0", "method": "account.list", "params": {}, "id": i} for i in range(2)]
    assert (await call(api, "account.list", {}, api.key)).status == 200
    answer = await send(api, batch, api.key)
    assert [r["id"] for r in answer.body] == [0, 1], "2 of the 3 tokens left"
    answer = await send(api, batch, api.key)
    assert isinstance(answer.body, dict), "one error for the whole batch"
    limited(answer, None)


async def test_rpc_discover_and_health_are_not_limited(api: RunningApi) -> None:
    for _ in range(3):
        await call(api, "account.list", {}, api.key)
    assert (await call(api, "account.list", {}, api.key)).status == 429
    for _ in range(5):
        assert "result" in (await call(api, "rpc.discover", {}, api.key)).body
    async with api.http.get(api.url + "/healthz") as response:
        assert response.status == 200


async def test_wrong_keys_from_one_address_block_its_keyed_calls_until_it_recovers(
    api: RunningApi, clock: ManualClock
) -> None:
    for _ in range(2):
        answer = await call(api, "account.list", {}, "guess")
        assert answer.error["data"] == {"reason": "invalid"}
    limited(await call(api, "account.list", {}, "guess", id_=3), 3)
    # While blocked, even the right key is refused: a guess that happens to be right shows nothing.
    limited(await call(api, "account.list", {}, api.key, id_=4), 4)
    missing = await call(api, "account.list", {}, None)
    assert missing.status == 200
    assert missing.error["data"] == {"reason": "missing"}
    clock.advance(1.0)
    assert "result" in (await call(api, "account.list", {}, api.key)).body


async def test_a_notification_over_the_limit_gets_the_429_too(api: RunningApi) -> None:
    for _ in range(3):
        await call(api, "account.list", {}, api.key)
    answer = await send(api, {"jsonrpc": "2.0", "method": "account.list", "params": {}}, api.key)
    limited(answer, None)
