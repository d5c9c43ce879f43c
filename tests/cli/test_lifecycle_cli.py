"""The lifecycle commands: update, suspend, resume, retry, wait, plan list, list --status, --wait.

Against a scripted endpoint for what is sent and how waits end (exit 0 converged,
4 not), and once against the real API in-process with a fake daemon.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

from actors.cli.main import EXIT_NOT_CONVERGED, EXIT_OK, parse, run_api_command
from tests.api.fake_daemon import fake_daemon
from tests.api.harness import ADMIN_KEY, fast_settings, running_api
from tests.cli.fake_api import fake_api
from tests.support.fake_bus import FakeBus, FakeConnector

AID = "0b7d2b8e-8f5a-4a55-8c0b-3f4f0b3a7c11"


def account(status: str, generation: int, **clusters: tuple[str, int, bool]) -> dict[str, Any]:
    """An Account; each cluster as (state, observed_generation, online)."""
    return {
        "id": AID, "slug": "acme", "name": "Acme", "owner_email": "ops@acme.test",
        "plan": "standard", "namespace": "acc-acme", "created_at": "2026-11-24T04:00:00Z",
        "updated_at": "2026-11-24T04:00:00Z", "generation": generation, "status": status,
        "clusters": {
            name: {"state": state, "observed_generation": seen, "online": online,
                   "updated_at": None}
            for name, (state, seen, online) in clusters.items()
        },
    }


async def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_api_command(parse(list(argv)), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "method", "params"),
    [
        (["update", AID, "--name", "New", "--plan", "large"], "account.update",
         {"id": AID, "name": "New", "plan": "large"}),
        (["update", AID, "--email", "x@y.io"], "account.update", {"id": AID, "owner_email": "x@y.io"}),
        (["suspend", AID], "account.suspend", {"id": AID}),
        (["resume", AID], "account.resume", {"id": AID}),
        (["retry", AID], "account.retry", {"id": AID}),
        (["retry", AID, "--cluster", "east"], "account.retry", {"id": AID, "cluster": "east"}),
        (["create", "Acme", "--email", "o@a.io", "--plan", "small"], "account.create",
         {"name": "Acme", "owner_email": "o@a.io", "plan": "small"}),
        (["list", "--status", "degraded"], "account.list", {"limit": 50, "status": "degraded"}),
    ],
)
async def test_each_account_command_sends_its_params(
    argv: list[str], method: str, params: dict[str, Any]
) -> None:
    async with fake_api() as api:
        api.handler = lambda m, p: {"items": [], "next_cursor": None} if m == "account.list" else (
            account("ready", 2, a=("created", 2, True))
        )
        code, out, _ = await run_cli("account", *argv, "--url", api.url)
    assert code == EXIT_OK
    assert [(m, p) for m, p, _ in api.calls] == [(method, params)]
    if method != "account.list":
        assert "standard" in out


async def test_plan_list_prints_each_plan() -> None:
    plans = [{"name": "small", "quota": {"pods": "10"},
              "limits": {"default": {"cpu": "250m"}, "defaultRequest": {}}}]
    async with fake_api() as api:
        api.handler = lambda m, p: plans
        code, out, _ = await run_cli("plan", "list", "--url", api.url)
        json_code, json_out, _ = await run_cli("plan", "list", "--json", "--url", api.url)
    assert code == json_code == EXIT_OK
    assert "small" in out
    assert "pods=10" in out
    assert "cpu=250m" in out
    assert json.loads(json_out) == plans


async def test_wait_flag_follows_the_clusters_and_exits_0_once_converged() -> None:
    answers = [
        account("updating", 2, a=("created", 1, True), b=("created", 1, True)),
        account("updating", 2, a=("created", 2, True), b=("created", 1, True)),
        account("ready", 2, a=("created", 2, True), b=("created", 2, True)),
    ]

    def handler(method: str, params: dict[str, Any]) -> Any:
        if method == "account.update":
            return answers[0]
        return answers.pop(1) if len(answers) > 1 else answers[0]

    async with fake_api() as api:
        api.handler = handler
        code, out, err = await run_cli(
            "account", "update", AID, "--plan", "large", "--wait", "--json", "--url", api.url
        )
    assert code == EXIT_OK
    assert json.loads(out)["status"] == "ready"
    waits = [p for m, p, _ in api.calls if m == "account.wait"]
    assert waits
    assert all(w["generation"] == 2 and 0 < w["timeout"] <= 1 for w in waits)
    lines = err.splitlines()
    assert len(lines) == 3, "one line per change"
    assert "a=created@1 b=created@1" in lines[0]
    assert "a=created@2 b=created@1" in lines[1]
    assert lines[2].split("] ")[1].startswith("ready generation 2")


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (account("provisioning", 1, a=("pending", 0, True)), "provisioning"),  # the timeout
        (account("degraded", 1, a=("failed", 1, True)), "degraded"),  # observed, but failed
    ],
    ids=["timeout", "failed"],
)
async def test_a_wait_that_ends_before_convergence_exits_4_and_shows_the_account(
    answer: dict[str, Any], status: str
) -> None:
    async with fake_api() as api:
        api.handler = lambda m, p: copy.deepcopy(answer)
        code, out, err = await run_cli(
            "account", "create", "Acme", "--email", "o@a.io", "--wait", "--timeout", "0.3",
            "--url", api.url,
        )
    assert code == EXIT_NOT_CONVERGED
    assert f"status:      {status}" in out
    assert f"the account is {status}, not converged" in err


async def test_account_wait_waits_for_the_generation_asked_for() -> None:
    async with fake_api() as api:
        api.handler = lambda m, p: account("ready", 3, a=("created", 3, True))
        code, _, _ = await run_cli(
            "account", "wait", AID, "--generation", "3", "--timeout", "5", "--url", api.url
        )
    assert code == EXIT_OK
    assert [m for m, _, _ in api.calls] == ["account.get"], "already there: no wait call"


@pytest.mark.parametrize(
    "argv",
    [
        ["account", "update", AID],
        ["account", "wait", AID, "--timeout", "0"],
        ["account", "wait", AID, "--generation", "0"],
        ["account", "list", "--status", "sleeping"],
        ["account", "suspend", AID, "--wait", "--timeout", "soon"],
    ],
)
def test_bad_lifecycle_usage_exits_two(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2


async def test_the_commands_against_the_real_api_converge_with_a_daemon(
    pg_dsn: str, tmp_path: Path
) -> None:
    bus = FakeBus()
    bus.set_online("cluster:a", True)
    async with running_api(fast_settings(pg_dsn, tmp_path / "api"), FakeConnector(bus)) as api:
        common = ["--url", api.url, "--key", ADMIN_KEY, "--json"]
        async with fake_daemon(bus, "a"):
            code, out, _ = await run_cli("account", "create", "Real", "--email", "r@x.io", "--wait",
                                         *common)
            assert code == EXIT_OK
            created = json.loads(out)
            assert created["status"] == "ready"
            code, out, err = await run_cli("account", "suspend", created["id"], "--wait", *common)
            assert code == EXIT_OK
            assert (json.loads(out)["status"], json.loads(out)["generation"]) == ("suspended", 2)
            assert "suspended generation 2" in err
        # No daemon now: the change is not observed, and the wait says so.
        code, out, err = await run_cli("account", "resume", created["id"], "--wait", "--timeout",
                                       "0.5", *common)
        assert code == EXIT_NOT_CONVERGED
        assert json.loads(out)["status"] == "updating"
