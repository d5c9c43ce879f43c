"""Account status is derived purely from the cluster reports, their generations and the clusters online."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.account import AccountRecord, ClusterReport, account_view, has_converged

T0 = "2026-01-01T00:00:00.000000Z"
T1 = "2026-01-01T00:00:01.000000Z"


def _record(deleted: bool = False, generation: int | None = None) -> AccountRecord:
    generation = generation or (2 if deleted else 1)
    return AccountRecord(
        "id", "s", "S", "e@x.io", "acc-s", T0, T1 if deleted else None, generation, T0, 1
    )


def _reports(**states: str) -> list[ClusterReport]:
    """`a="created"` reports at generation 1; `a="deleted@2"` at the generation after the @."""
    out = []
    for name, spec in states.items():
        state, _, generation = spec.partition("@")
        out.append(ClusterReport(name, state, int(generation or 1), T0))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize(
    ("reports", "known", "online", "deleted", "status"),
    [
        ({}, [], [], False, "provisioning"),
        ({}, ["a"], [], False, "provisioning"),
        ({"a": "created"}, ["a"], ["a"], False, "ready"),
        ({"a": "created"}, ["a", "b"], ["a"], False, "ready"),
        ({"a": "created"}, ["a", "b"], ["a", "b"], False, "provisioning"),
        ({"a": "created", "b": "failed"}, ["a", "b"], ["a", "b"], False, "degraded"),
        ({"a": "created", "b": "failed"}, ["a", "b"], ["a"], False, "ready"),
        ({"a": "created"}, ["a"], [], False, "provisioning"),
        ({"a": "created"}, ["a"], ["a"], True, "deleting"),
        ({"a": "deleted@2"}, ["a", "b"], ["a", "b"], True, "deleting"),  # b online, will report
        ({"a": "deleted@2"}, ["a", "b"], ["a"], True, "deleted"),  # b offline, never had it
        ({"a": "deleted@2", "b": "deleted@2"}, ["a", "b"], ["a", "b"], True, "deleted"),
        ({"a": "deleted@2", "b": "created"}, ["a", "b"], ["a"], True, "deleting"),
        ({"a": "failed"}, ["a"], ["a"], True, "deleting"),
        ({"a": "failed"}, ["a"], [], True, "deleted"),
        ({"a": "failed@2"}, ["a"], [], True, "deleting"),  # its deletion was refused
        ({}, ["a"], ["a"], True, "deleting"),
        ({}, [], [], True, "deleted"),
    ],
)
def test_status_is_derived_from_reports_and_online_clusters(
    reports: dict[str, str], known: list[str], online: list[str], deleted: bool, status: str
) -> None:
    view = account_view(_record(deleted), _reports(**reports), known, online)
    assert view.status == status


@pytest.mark.parametrize(
    ("generation", "reports", "status"),
    [
        (2, {"a": "created@2", "b": "created@2"}, "ready"),
        (2, {"a": "created@2", "b": "created@1"}, "updating"),  # b has not observed 2 yet
        (3, {"a": "created@2", "b": "created@2"}, "updating"),
        (2, {"a": "created@3", "b": "created@2"}, "ready"),  # a report ahead of the cache
    ],
)
def test_ready_means_every_online_cluster_reports_created_at_the_current_generation(
    generation: int, reports: dict[str, str], status: str
) -> None:
    view = account_view(_record(generation=generation), _reports(**reports), ["a", "b"], ["a", "b"])
    assert view.status == status


def test_every_known_cluster_is_listed_pending_until_it_reports() -> None:
    view = account_view(_record(), _reports(a="created"), ["a", "b"], ["a"])
    assert view.to_json()["clusters"] == {
        "a": {"state": "created", "observed_generation": 1, "online": True, "updated_at": T0},
        "b": {"state": "pending", "observed_generation": 0, "online": False, "updated_at": None},
    }


def test_a_failure_shows_its_error_and_attempts() -> None:
    failed = ClusterReport("a", "failed", 1, T0, "Forbidden: quota", 4)
    view = account_view(_record(), [failed], ["a"], ["a"])
    assert view.status == "degraded"
    assert view.to_json()["clusters"]["a"] == {
        "state": "failed", "observed_generation": 1, "online": True, "updated_at": T0,
        "error": "Forbidden: quota", "attempts": 4,
    }


def test_a_deleted_account_shows_created_namespaces_as_deleting() -> None:
    view = account_view(
        _record(deleted=True), _reports(a="created", b="deleted@2"), ["a", "b", "c"], []
    )
    clusters = view.to_json()["clusters"]
    states = {name: (c["state"], c["observed_generation"]) for name, c in clusters.items()}
    assert states == {"a": ("deleting", 1), "b": ("deleted", 2), "c": ("deleted", 0)}
    assert clusters["a"]["updated_at"] == T1  # since the deletion
    assert view.to_json()["generation"] == 2


@pytest.mark.parametrize(
    ("generation", "suspended", "reports", "status"),
    [
        (2, True, {"a": "created@2", "b": "created@2"}, "suspended"),
        (2, True, {"a": "created@2", "b": "created@1"}, "updating"),  # not yet observed by b
        (3, False, {"a": "created@3", "b": "created@3"}, "ready"),  # resumed
        (2, False, {"a": "created@2", "b": "failed@1"}, "updating"),  # b retries on generation 2
        (2, False, {"a": "created@2", "b": "failed@2"}, "degraded"),
        (1, True, {"a": "created@1", "b": "created@1"}, "suspended"),
    ],
)
def test_suspended_and_updating_follow_the_current_generation(
    generation: int, suspended: bool, reports: dict[str, str], status: str
) -> None:
    record = replace(_record(generation=generation), suspended=suspended)
    view = account_view(record, _reports(**reports), ["a", "b"], ["a", "b"])
    assert view.status == status


def test_an_offline_cluster_shows_when_it_was_last_seen_and_is_not_failed() -> None:
    seen = {"a": T1, "b": T0}
    view = account_view(_record(), _reports(a="created"), ["a", "b"], ["a"], seen)
    assert view.to_json()["clusters"]["b"] == {
        "state": "pending", "observed_generation": 0, "online": False, "updated_at": None,
        "last_seen": T0,
    }
    assert "last_seen" not in view.to_json()["clusters"]["a"], "online: no last_seen"
    assert view.status == "ready"
    assert view.to_json()["plan"] == "standard"


@pytest.mark.parametrize(
    ("reports", "online", "deleted", "goal", "converged"),
    [
        ({"a": "created@2", "b": "created@2"}, ["a", "b"], False, 2, True),
        ({"a": "created@2", "b": "created@1"}, ["a", "b"], False, 2, False),
        ({"a": "created@2", "b": "created@1"}, ["a"], False, 2, True),  # b offline
        ({"a": "failed@2", "b": "created@2"}, ["a", "b"], False, 2, True),  # observed, failed
        ({"a": "created@2"}, ["a", "b"], False, 2, False),  # b pending
        ({"a": "created@2"}, [], False, 2, False),  # nobody online to observe it
        ({"a": "created@2", "b": "created@2"}, ["a", "b"], False, 3, False),
        ({"a": "deleted@3", "b": "created@2"}, ["a"], True, 3, False),  # b still has it
        ({"a": "deleted@3", "b": "deleted@3"}, ["a", "b"], True, 3, True),
    ],
)
def test_has_converged_is_what_account_wait_waits_for(
    reports: dict[str, str], online: list[str], deleted: bool, goal: int, converged: bool
) -> None:
    record = _record(deleted, generation=3 if deleted else 2)
    view = account_view(record, _reports(**reports), ["a", "b"], online)
    assert has_converged(view, goal) is converged
