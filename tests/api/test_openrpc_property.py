"""Calls generated from the API's own OpenRPC document are accepted and answered in shape.

For every method `rpc.discover` lists, hypothesis-jsonschema generates params
from the published param schemas (required and optional ones, filtered by the
method's `x-params-constraint`), the call goes to the in-process API (real
HTTP and PostgreSQL, the in-memory bus with a fake daemon so accounts
converge), and:

- no valid input is refused as invalid (-32602), none breaks the server
  (-32603), and every error is one the method declares;
- every result validates against the method's published result schema.

Three narrowings keep the inputs inside what the document allows while
making them useful: an account id is sometimes one of a few seeded accounts
(ready, suspended, deleted) so the calls reach real accounts; a cursor is
null or one the server issued (an opaque token: the document says so, and a
forged one is refused by design); `account.wait`'s timeout is at most 0.2 s
(and always given) so a wait that cannot converge stays short.

Hypothesis runs in a worker thread and sends each call to the test's event
loop, where the API runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from actors.api.access import AccessSettings
from actors.api.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from tests.api.fake_daemon import fake_daemon
from tests.api.harness import RunningApi, fast_settings, running_api
from tests.support.fake_bus import FakeBus, FakeConnector

EXAMPLES_PER_METHOD = 30
WAIT_AT_MOST = 0.2

Call = Callable[[str, dict[str, Any]], Any]


def param_strategy(
    method: Mapping[str, Any], ids: list[str], cursors: list[str]
) -> st.SearchStrategy[dict[str, Any]]:
    """Params for `method` as its OpenRPC entry allows them (with the narrowings above)."""

    def value(param: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        schema = dict(param["schema"])
        if param["name"] == "cursor":
            return st.one_of(st.none(), st.sampled_from(cursors))
        if method["name"] == "account.wait" and param["name"] == "timeout":
            schema["maximum"] = min(schema["maximum"], WAIT_AT_MOST)
        generated = from_schema(schema)
        if schema.get("format") == "uuid" and method["name"].startswith("account."):
            return st.one_of(generated, st.sampled_from(ids))
        return generated

    params = method["params"]

    def always(param: Mapping[str, Any]) -> bool:
        # A wait without a timeout waits its default 30 s: always give one.
        return bool(param.get("required")) or (
            method["name"] == "account.wait" and param["name"] == "timeout"
        )

    strategy = st.fixed_dictionaries(
        {p["name"]: value(p) for p in params if always(p)},
        optional={p["name"]: value(p) for p in params if not always(p)},
    )
    constraint = method.get("x-params-constraint")
    if constraint is not None:
        Draft7Validator.check_schema(constraint)
        strategy = strategy.filter(Draft7Validator(constraint).is_valid)
    return strategy


def result_validator(method: Mapping[str, Any], components: Mapping[str, Any]) -> Any:
    schema = {**method["result"]["schema"], "components": components}
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def explore(document: Mapping[str, Any], call: Call, ids: list[str], cursors: list[str]) -> int:
    """Run every method's property in turn; return how many calls were made."""
    made = [0]

    def property_of(method: Mapping[str, Any]) -> Callable[[], None]:
        name = method["name"]
        declared = {e["code"] for e in method.get("errors", [])}
        validator = result_validator(method, document["components"])

        @settings(max_examples=EXAMPLES_PER_METHOD, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(param_strategy(method, ids, cursors))
        def accepted_and_in_shape(params: dict[str, Any]) -> None:
            made[0] += 1
            reply = call(name, params)
            if "error" in reply:
                code = reply["error"]["code"]
                assert code not in (INVALID_PARAMS, INTERNAL_ERROR), (name, params, reply)
                assert code in declared, (name, params, reply)
                return
            problems = [f"{list(e.absolute_path)}: {e.message}"
                        for e in validator.iter_errors(reply["result"])]
            assert problems == [], (name, params, problems)

        return accepted_and_in_shape

    # Deletes last: the seeded accounts should stay alive for the other changes.
    for method in sorted(document["methods"], key=lambda m: m["name"] == "account.delete"):
        property_of(method)()
    return made[0]


async def _seed(api: RunningApi) -> tuple[list[str], list[str]]:
    """A ready, a suspended and a deleted account, and a cursor into the list."""
    ids = []
    for name in ("Seed Ready", "Seed Suspended", "Seed Deleted"):
        account = await api.result("account.create", {"name": name, "owner_email": "s@seed.io"})
        ids.append(account["id"])
        await api.result("account.wait", {"id": account["id"]})
    await api.result("account.suspend", {"id": ids[1]})
    await api.result("account.delete", {"id": ids[2]})
    for aid in ids:
        await api.result("account.wait", {"id": aid})
    cursor = (await api.result("account.list", {"limit": 1}))["next_cursor"]
    assert cursor is not None
    return ids, [cursor]


async def test_every_input_the_document_allows_is_accepted_and_answered_in_shape(
    pg_dsn: str, tmp_path: Path
) -> None:
    bus = FakeBus()
    bus.set_online("cluster:a", True)
    unlimited = AccessSettings(key_rate=1e6, key_burst=10**6)
    settings_ = fast_settings(pg_dsn, tmp_path / "state", access=unlimited)
    async with running_api(settings_, FakeConnector(bus)) as api, fake_daemon(bus, "a"):
        document = await api.result("rpc.discover")
        ids, cursors = await _seed(api)
        loop = asyncio.get_running_loop()

        def call(method: str, params: dict[str, Any]) -> Any:
            return asyncio.run_coroutine_threadsafe(api.call(method, params), loop).result(30)

        made = await asyncio.to_thread(explore, document, call, ids, cursors)
    names = {m["name"] for m in document["methods"]}
    assert {"account.update", "account.wait", "account.retry", "plan.list"} <= names
    assert made >= len(names) * 2, "every method was called"
