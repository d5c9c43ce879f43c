"""The envelope schema check that guards every consumer."""

from __future__ import annotations

from typing import Any

import pytest

from core.envelope import Envelope, InvalidEnvelope
from core.events import (
    AccountCreated,
    NamespaceDeleted,
    NamespaceProvisioned,
    from_envelope,
    to_envelope,
)


def created() -> AccountCreated:
    return AccountCreated(
        account_id="3f1c1f9e-1a47-4a7c-9a55-4e0a8f0e2b6a",
        slug="acme",
        name="Acme",
        owner_email="o@example.com",
        namespace="acc-acme",
        created_at="2026-11-24T00:00:00.000000Z",
        generation=1,
    )


def test_an_event_survives_the_wire_form_unchanged() -> None:
    env = to_envelope(created(), correlation_id="req-1")
    again = Envelope.from_wire(env.to_wire())
    assert again == env
    assert from_envelope(again) == created()
    assert again.aggregate_id == created().account_id


def wire(**changes: Any) -> dict[str, Any]:
    base = to_envelope(created(), correlation_id="req-1").to_wire()
    base.update(changes)
    return base


# Everything the schema refuses; the transport's compiled decoder is held to these too.
MALFORMED: list[object] = [
    None,
    [],
    "x",
    {},
    wire(event_id="not-a-uuid"),
    wire(event_id=123),
    wire(type="Account Created"),
    wire(type="a" * 100 + ".b"),
    wire(schema_version=True),
    wire(schema_version=0),
    wire(aggregate_id=""),
    wire(aggregate_id="x" * 65),
    wire(payload=[]),
    wire(payload={str(i): i for i in range(40)}),
    wire(payload={"k": 1.5}),
    wire(payload={"k": 1.0}),
    wire(payload={"k": {"nested": 1}}),
    wire(payload={"k": "x" * 5000}),
    wire(key=""),
    wire(key="account"),
    wire(key="account:" + "x" * 200),
    wire(key="Account:x"),
    wire(key=1),
    wire(tombstone=0),
    wire(tombstone="yes"),
    {**wire(), "extra": 1},
    {k: v for k, v in wire().items() if k != "key"},
    wire(event_id="x" * 36),
    wire(type="account.created\n"),
    wire(key="account:x\n"),
    wire(schema_version=1001),
    wire(schema_version="2"),
    wire(schema_version=2.0),
    wire(correlation_id=None),
    wire(occurred_at=""),
    wire(payload={"k" * 65: 1}),
    wire(payload={1: "int key"}),
]


@pytest.mark.parametrize("obj", MALFORMED)
def test_malformed_envelopes_are_rejected(obj: object) -> None:
    with pytest.raises(InvalidEnvelope):
        Envelope.from_wire(obj)


def test_unknown_event_types_and_misfit_payloads_are_rejected() -> None:
    good = to_envelope(created(), correlation_id="c")
    with pytest.raises(InvalidEnvelope, match="unknown event type"):
        from_envelope(Envelope.from_wire({**good.to_wire(), "type": "account.renamed"}))
    with pytest.raises(InvalidEnvelope, match="exactly"):
        from_envelope(Envelope.from_wire({**good.to_wire(), "payload": {"account_id": good.aggregate_id}}))
    mismatched = to_envelope(
        NamespaceProvisioned("a", "c1", "acc-x", "uid", "1", 1), correlation_id="c"
    ).to_wire()
    mismatched["aggregate_id"] = "b"
    with pytest.raises(InvalidEnvelope, match="aggregate_id"):
        from_envelope(Envelope.from_wire(mismatched))


@pytest.mark.parametrize(
    "change",
    [
        {"key": "account:someone-else"},
        {"key": "outcome:c1:3f1c1f9e-1a47-4a7c-9a55-4e0a8f0e2b6a"},
        {"tombstone": True},
    ],
)
def test_a_key_or_tombstone_that_does_not_fit_the_event_is_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope, match="key/tombstone"):
        from_envelope(Envelope.from_wire(wire(**change)))


@pytest.mark.parametrize("value", ["1", -1, True, None])
def test_a_generation_that_is_not_a_non_negative_int_is_rejected(value: object) -> None:
    payload = {**wire()["payload"], "generation": value}
    with pytest.raises(InvalidEnvelope, match="generation"):
        from_envelope(Envelope.from_wire(wire(payload=payload)))


def test_events_are_keyed_by_account_or_by_cluster_and_account_and_deletions_are_tombstones() -> None:
    env = to_envelope(created(), correlation_id="c")
    assert (env.key, env.tombstone) == ("account:" + created().account_id, False)
    gone = to_envelope(
        NamespaceDeleted(created().account_id, "east", "acc-acme", 2), correlation_id="c"
    )
    assert (gone.key, gone.tombstone) == ("outcome:east:" + created().account_id, True)
