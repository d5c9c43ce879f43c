"""Account status is derived purely from the cluster reports and the clusters online now."""

from __future__ import annotations

import pytest

from core.account import AccountRecord, ClusterReport, account_view

T0 = "2026-01-01T00:00:00.000000Z"


def _record(deleted: bool = False) -> AccountRecord:
    return AccountRecord("id", "s", "S", "e@x.io", "acc-s", T0, T0 if deleted else None, 1)


def _reports(**states: str) -> list[ClusterReport]:
    return [ClusterReport(name, state, T0) for name, state in states.items()]  # type: ignore[arg-type]


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
        ({"a": "deleted"}, ["a", "b"], ["a", "b"], True, "deleting"),  # b online, will report
        ({"a": "deleted"}, ["a", "b"], ["a"], True, "deleted"),  # b offline, never had it
        ({"a": "deleted", "b": "deleted"}, ["a", "b"], ["a", "b"], True, "deleted"),
        ({"a": "deleted", "b": "created"}, ["a", "b"], ["a"], True, "deleting"),
        ({"a": "failed"}, ["a"], ["a"], True, "deleting"),
        ({"a": "failed"}, ["a"], [], True, "deleted"),
        ({}, ["a"], ["a"], True, "deleting"),
        ({}, [], [], True, "deleted"),
    ],
)
def test_status_is_derived_from_reports_and_online_clusters(
    reports: dict[str, str], known: list[str], online: list[str], deleted: bool, status: str
) -> None:
    view = account_view(_record(deleted), _reports(**reports), known, online)
    assert view.status == status


def test_every_known_cluster_is_listed_pending_until_it_reports() -> None:
    view = account_view(_record(), _reports(a="created"), ["a", "b"], ["a", "b"])
    assert view.to_json()["clusters"] == {
        "a": {"state": "created", "updated_at": T0},
        "b": {"state": "pending", "updated_at": None},
    }


def test_a_deleted_account_shows_created_namespaces_as_deleting() -> None:
    view = account_view(_record(deleted=True), _reports(a="created", b="deleted"), ["a", "b", "c"], [])
    states = {name: c["state"] for name, c in view.to_json()["clusters"].items()}
    assert states == {"a": "deleting", "b": "deleted", "c": "deleted"}
