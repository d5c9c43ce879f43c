"""Jepsen-style: a stream of creates while the broker, the api, daemons and kube emulators are
SIGKILLed at seeded random moments; `fabric up` (a real process) restarts them.

Every call is recorded as ok / fail (a definite JSON-RPC error) / info (no usable answer:
it may or may not have happened). A create whose answer was lost is retried with the same
slug until it answers `ok` or -32010 (the slug exists: the lost call happened). The checker:
- every `ok` create is an account with the id it answered, and a row in the legacy database;
- -32010 only ever follows an indeterminate (or ok) call for that slug: a definite failure
  wrote nothing;
- after the faults, every account is ready in every cluster and each cluster holds exactly
  one Fabric namespace per account and nothing else; no account the test did not create.

Reproduce a run with FABRIC_FAULT_SEED=<seed> (printed on failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from actors.legacy import embedded
from tests.support.postgres import psql
from tests.support.wait import wait_until
from tests.system.harness import FabricUp, Outcome, eventually, list_accounts, namespaces, rpc

pytestmark = pytest.mark.processes

SEED = int(os.environ.get("FABRIC_FAULT_SEED", "20261124"))
CLUSTERS = ["a", "b"]
CREATES = 48
WINDOW = 30.0  # seconds over which creates are issued and faults injected
TARGETS = ["broker", "api", "daemon-a", "kube-b", "broker", "api", "daemon-b", "kube-a"]
RETRY_DEADLINE = 90.0  # after the window: how long a create keeps being retried
# Definite errors a create may get while dependencies restart; anything else is a bug.
TRANSIENT_CODES = {-32020}


@dataclass
class Op:
    slug: str
    attempt: int
    invoked: float
    outcome: Outcome


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    kills: list[tuple[float, str, int]] = field(default_factory=list)
    in_flight: int = 0

    def of(self, slug: str) -> list[Op]:
        return [op for op in self.ops if op.slug == slug]

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for op in self.ops:
            key = op.outcome.kind if op.outcome.code is None else f"{op.outcome.kind}({op.outcome.code})"
            kinds[key] = kinds.get(key, 0) + 1
        kills = ", ".join(f"{t:.1f}s {name}" for t, name, _ in self.kills)
        return f"seed {SEED}: calls {kinds}; kills: {kills}"


async def create_until_known(
    session: aiohttp.ClientSession, up: FabricUp, slug: str, start: float, history: History
) -> None:
    """Issue one create at its scheduled moment; retry with the same slug until its fate is known."""
    await asyncio.sleep(max(0.0, start - time.monotonic()))  # the workload's schedule, not a sync
    params = {"name": f"Fault {slug}", "owner_email": f"{slug}@example.com", "slug": slug}
    deadline = time.monotonic() + WINDOW + RETRY_DEADLINE
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        invoked = time.monotonic()
        history.in_flight += 1
        try:
            outcome = await rpc(session, up.api_url, up.admin_key, "account.create", params, timeout=5.0)
        finally:
            history.in_flight -= 1
        history.ops.append(Op(slug, attempt, invoked, outcome))
        if outcome.kind == "ok" or outcome.code == -32010:
            return
        if outcome.kind == "fail" and outcome.code not in TRANSIENT_CODES:
            return  # a definite, non-transient error: the checker reports it
        await asyncio.sleep(0.3)  # retry pacing while the api or its dependencies restart


async def nemesis(up: FabricUp, rng: random.Random, t0: float, history: History) -> None:
    moments = sorted(rng.uniform(2.0, WINDOW - 4.0) for _ in TARGETS)
    targets = list(TARGETS)
    rng.shuffle(targets)
    last: dict[str, int] = {}
    for at, target in zip(moments, targets, strict=True):
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))  # the fault schedule
        # Kill the process running now, not one already killed whose pid file is stale.
        def current_pid(target: str = target) -> int:
            pid = up.pid(target) or 0
            return pid if pid != last.get(target) else 0

        pid = await wait_until(current_pid, timeout=30, message=f"{target} restarted")
        if target == "api":
            # Aim at a moment with a create in flight, so some answers are lost after the write.
            with contextlib.suppress(TimeoutError):
                await wait_until(
                    lambda: history.in_flight > 0, timeout=3, interval=0.001, message="in flight"
                )
        os.kill(pid, signal.SIGKILL)
        last[target] = pid
        history.kills.append((time.monotonic() - t0, target, pid))


def check_history(history: History, accounts: dict[str, dict[str, Any]], slugs: list[str]) -> None:
    problems: list[str] = []
    for slug in slugs:
        ops = history.of(slug)
        final = ops[-1].outcome
        if not (final.kind == "ok" or final.code == -32010):
            problems.append(f"{slug}: fate never known, last call {final}")
        for i, op in enumerate(ops):
            out = op.outcome
            if out.kind == "ok":
                account = accounts.get(slug)
                if account is None:
                    problems.append(f"{slug}: answered ok but no such account")
                elif account["id"] != out.result["id"]:
                    problems.append(f"{slug}: answered id {out.result['id']}, stored {account['id']}")
            if out.code == -32010 and not any(p.outcome.kind in ("ok", "info") for p in ops[:i]):
                problems.append(f"{slug}: -32010 although every earlier call failed definitely")
            if out.kind == "fail" and out.code not in TRANSIENT_CODES | {-32010}:
                problems.append(f"{slug}: unexpected error {out}")
    extra = set(accounts) - set(slugs)
    if extra:
        problems.append(f"accounts nobody created: {sorted(extra)}")
    assert not problems, "\n".join([history.summary(), *problems])


def legacy_dsn(up: FabricUp) -> str:
    ports = json.loads((up.state_dir / "ports.json").read_text())
    return embedded.dsn(int(ports["postgres"]))


async def creates_under(
    up: FabricUp, prefix: str, faults: Callable[[float, History], Coroutine[Any, Any, None]],
    creates: int = CREATES,
) -> tuple[list[str], History]:
    """`creates` creates spread over WINDOW seconds, each retried until its outcome is known,
    while `faults(t0, history)` runs; returns the slugs and the history."""
    slugs = [f"{prefix}-{i:03d}" for i in range(creates)]
    history = History()
    t0 = time.monotonic() + 0.5
    async with aiohttp.ClientSession(trust_env=False) as session, asyncio.TaskGroup() as group:
        for i, slug in enumerate(slugs):
            group.create_task(
                create_until_known(session, up, slug, t0 + i * WINDOW / creates, history),
                name=f"create-{slug}",
            )
        group.create_task(faults(t0, history), name="nemesis")
    return slugs, history


async def check_converged(up: FabricUp, history: History, slugs: list[str], diagnostics: str = "") -> None:
    """The history is linearizable, the legacy database holds every answered create once with
    the id its caller got, and every account ends ready in every cluster."""
    accounts = {a["slug"]: a for a in await list_accounts(up)}
    check_history(history, accounts, slugs)
    # ok => happened, in the legacy database itself, once, with the id the caller was given.
    rows = psql(legacy_dsn(up), "-At", "-F", " ", "-c", "SELECT slug, id FROM organizations")
    stored = dict(line.split(" ") for line in rows.splitlines() if line)
    assert stored == {slug: accounts[slug]["id"] for slug in slugs}

    expected = sorted(f"acc-{s}" for s in slugs)

    async def converged() -> bool:
        listed = await list_accounts(up)
        assert len(listed) == len({a["slug"] for a in listed}) == len(slugs)
        for account in listed:
            assert account["status"] == "ready", account
            states = {c: account["clusters"].get(c, {}).get("state") for c in CLUSTERS}
            assert states == dict.fromkeys(CLUSTERS, "created"), account
        for cluster in CLUSTERS:
            assert await namespaces(up, cluster) == expected, cluster
        return True

    try:
        await eventually(converged, timeout=90, message="every account ready in every cluster")
    except TimeoutError as exc:
        raise AssertionError(f"{history.summary()}\n{exc}\n{diagnostics}")



@pytest.mark.timeout(240)
async def test_creates_survive_sigkill_of_broker_api_daemons_and_kube_emulators(up: FabricUp) -> None:
    rng = random.Random(SEED)
    up.start()
    await up.wait_ready()
    slugs, history = await creates_under(up, "fault", lambda t0, h: nemesis(up, rng, t0, h))
    await check_converged(up, history, slugs)
    assert {name for _, name, _ in history.kills} >= {"broker", "api", "daemon-a", "kube-b"}
    print(history.summary())
    assert up.stop() == 0
