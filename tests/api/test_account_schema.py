"""Every Account the API answers matches the result schema its own `rpc.discover` publishes."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from core.events import NamespaceDeleted, NamespaceProvisioned, NamespaceProvisionFailed
from tests.api.harness import RunningApi, eventually, publish_event
from tests.support.fake_bus import FakeBus


async def _validator(api: RunningApi, method: str) -> Any:
    document = await api.result("rpc.discover")
    [entry] = [m for m in document["methods"] if m["name"] == method]
    schema = {**entry["result"]["schema"], "components": document["components"]}
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def _problems(validator: Any, answer: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(answer)]


async def test_every_account_answer_matches_the_published_result_schema(
    api: RunningApi, bus: FakeBus
) -> None:
    bus.set_online("cluster:b", False)
    account = await api.result("account.create", {"name": "Schema", "owner_email": "s@x.io"})
    aid, ns = account["id"], account["namespace"]
    await publish_event(bus, NamespaceProvisioned(aid, "a", ns, "u", "1", 1))
    await publish_event(bus, NamespaceProvisionFailed(aid, "b", ns, "Forbidden: no", 1, 2))

    async def both_reported() -> Any:
        got = await api.result("account.get", {"id": aid})
        return got if {c["state"] for c in got["clusters"].values()} == {"created", "failed"} else None

    reported = await eventually(both_reported, timeout=5, message="both reports applied")
    deleted = await api.result("account.delete", {"id": aid})
    await publish_event(bus, NamespaceDeleted(aid, "a", ns, 2))
    await eventually(
        lambda: _state_of(api, aid, "a", "deleted"), timeout=5, message="a reported deleted"
    )
    answers = {
        "account.create": [account],
        "account.get": [reported, deleted, await api.result("account.get", {"slug": "schema"})],
        "account.delete": [deleted, await api.result("account.delete", {"id": aid})],
        "account.list": [await api.result("account.list", {})],
    }
    create = await _validator(api, "account.create")
    assert _problems(create, {**account, "color": "x"}), "the schema is enforced, not vacuous"
    seen: set[str] = set()
    for method, results in answers.items():
        validator = await _validator(api, method)
        for answer in results:
            assert _problems(validator, answer) == [], (method, answer)
            for item in answer["items"] if method == "account.list" else [answer]:
                seen |= {c["state"] for c in item["clusters"].values()}
                seen |= {"attempts"} & {k for c in item["clusters"].values() for k in c}
    assert seen >= {"pending", "created", "failed", "deleting", "deleted", "attempts"}


async def _state_of(api: RunningApi, aid: str, cluster: str, state: str) -> bool:
    got = await api.result("account.get", {"id": aid})
    return bool(got["clusters"][cluster]["state"] == state)
