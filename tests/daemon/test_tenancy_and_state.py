"""Tenancy overrides, outcome ids and the desired-state journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.daemon.state import JOURNAL_NAME, AccountRecord, DesiredState
from core.tenancy import (
    InvalidOverride,
    TenancyPolicy,
    Tenant,
    desired_children,
    desired_namespace,
    drift,
    outcome_event_id,
    parse_overrides,
)


def rec(account: str, status: str, seq: int) -> AccountRecord:
    return AccountRecord(account, "s", "acc-s", "S", status, seq, f"e{seq}", "c")  # type: ignore[arg-type]


def test_overrides_change_only_what_they_name() -> None:
    policy = parse_overrides(
        ["# cluster east", "", "pod_security_level = baseline", "quota.pods = 20", "cluster_role=edit"]
    )
    assert policy.pod_security_level == "baseline"
    assert policy.quota["pods"] == "20"
    assert policy.quota["limits.cpu"] == TenancyPolicy().quota["limits.cpu"]
    assert policy.cluster_role == "edit"
    ns = desired_namespace(Tenant("a", "x", "acc-x", "X"), policy)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("colour = blue", "unknown setting 'colour'"),
        ("quota.pods = lots", "must be a quantity"),
        ("pod_security_level = lax", "pod_security_level must be one of"),
        ("subject_kind = Robot", "subject_kind must be one of"),
        ("just words", "expected 'key = value'"),
    ],
)
def test_a_bad_override_is_refused_with_a_clear_reason(line: str, words: str) -> None:
    with pytest.raises(InvalidOverride, match=words):
        parse_overrides([line])


def test_outcome_ids_are_deterministic_per_source_cluster_and_outcome() -> None:
    a = outcome_event_id("e1", "east", "provisioned")
    assert a == outcome_event_id("e1", "east", "provisioned")
    assert a != outcome_event_id("e1", "west", "provisioned")
    assert a != outcome_event_id("e1", "east", "failed")


async def test_the_journal_keeps_the_newest_record_per_account_across_reopen(tmp_path: Path) -> None:
    state = await DesiredState.open(tmp_path)
    assert await state.record(rec("a", "live", 1))
    assert await state.record(rec("a", "deleted", 5))
    assert not await state.record(rec("a", "live", 3))  # an old redelivery changes nothing
    assert await state.record(rec("b", "live", 4))
    await state.close()
    again = await DesiredState.open(tmp_path)
    try:
        assert again.get("a") == rec("a", "deleted", 5)
        assert again.get("b") == rec("b", "live", 4)
        assert len((tmp_path / JOURNAL_NAME).read_text().splitlines()) == 2  # compacted
    finally:
        await again.close()


async def test_a_torn_journal_line_is_skipped_and_counted(tmp_path: Path) -> None:
    state = await DesiredState.open(tmp_path)
    await state.record(rec("a", "live", 1))
    await state.close()
    with (tmp_path / JOURNAL_NAME).open("a") as f:
        f.write('{"account_id": "b", "slug"')
    again = await DesiredState.open(tmp_path)
    try:
        assert again.skipped_lines == 1
        assert [r.account_id for r in again] == ["a"]
    finally:
        await again.close()


def test_the_shipped_example_overrides_file_parses_to_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "actors" / "daemon" / "tenancy.example"
    assert parse_overrides(example.read_text().splitlines()) == TenancyPolicy()


def test_drift_names_a_missing_object_or_a_changed_label() -> None:
    policy = TenancyPolicy()
    tenant = Tenant("a", "x", "acc-x", "X")
    ns = desired_namespace(tenant, policy)
    complete = {(c["kind"], c["metadata"]["name"]) for c in desired_children(tenant, policy)}
    assert drift(tenant, policy, ns, complete) is None
    assert drift(tenant, policy, ns, complete - {("RoleBinding", "tenant-admin")}) == (
        "RoleBinding tenant-admin is missing"
    )
    ns["metadata"]["labels"]["pod-security.kubernetes.io/warn"] = "baseline"
    reason = drift(tenant, policy, ns, complete)
    assert reason is not None
    assert "pod-security.kubernetes.io/warn" in reason
