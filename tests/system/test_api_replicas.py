"""`fabric up --api-replicas 2`: two API processes on one PostgreSQL cache, as CONTRACT section 7.

A create answered by one replica is read on the other and waited for there; SIGKILL of either
replica loses nothing, and `up` brings it back on its port.
"""

from __future__ import annotations

import functools
from typing import Any

import aiohttp
import pytest

from tests.system.harness import FabricUp, Outcome, eventually, rpc

pytestmark = pytest.mark.processes

SLUGS = ["via-second", "via-first", "after-kill-2", "after-kill-1"]


async def call(up: FabricUp, url: str, method: str, params: dict[str, Any]) -> Outcome:
    async with aiohttp.ClientSession(trust_env=False) as session:
        return await rpc(session, url, up.admin_key, method, params)


async def create_on(up: FabricUp, url: str, slug: str) -> dict[str, Any]:
    out = await call(up, url, "account.create",
                     {"name": slug, "owner_email": f"{slug}@example.com", "slug": slug})
    assert out.kind == "ok", out
    account: dict[str, Any] = out.result
    return account


async def ready_on(up: FabricUp, url: str, account: dict[str, Any]) -> dict[str, Any]:
    """`account.wait` on `url` until both clusters hold the account.

    A wait answers once every *online* cluster has it (CONTRACT section 4), so a cluster seen
    offline for a moment on a loaded machine may still be pending: that one is waited for
    again. A cluster left pending while online fails at once.
    """

    seen: list[dict[str, Any]] = []

    async def both_created() -> bool:
        out = await call(up, url, "account.wait",
                         {"id": account["id"], "generation": account["generation"], "timeout": 30})
        assert out.kind == "ok", out
        got: dict[str, Any] = out.result
        assert got["status"] == "ready", got
        clusters = got["clusters"]
        if {c: v["state"] for c, v in clusters.items()} == {"a": "created", "b": "created"}:
            seen.append(got)
            return True
        waiting_online = [c for c, v in clusters.items() if v["state"] != "created" and v["online"]]
        assert not waiting_online, f"{got}\n{up.log_tail(3000)}"
        return False

    await eventually(both_created, timeout=60, message=f"{account['slug']} in both clusters via {url}")
    return seen[-1]


async def answers(up: FabricUp, url: str) -> bool:
    out = await call(up, url, "plan.list", {})
    assert out.kind == "ok", out
    return True


@pytest.mark.timeout(240)
async def test_two_replicas_share_accounts_and_survive_the_kill_of_either(up: FabricUp) -> None:
    up.start(extra_args=("--api-replicas", "2"))
    await up.wait_ready()
    apis = up.endpoints["apis"]
    assert len(apis) == 2
    assert apis[0] == up.endpoints["api"]
    first, second = apis

    # Written through one replica, read and awaited through the other.
    one = await create_on(up, second, "via-second")
    await ready_on(up, first, one)
    two = await create_on(up, first, "via-first")
    await ready_on(up, second, two)

    for victim, url, survivor, slug in (
        ("api-2", second, first, "after-kill-2"), ("api", first, second, "after-kill-1"),
    ):
        await up.kill(victim)
        # The survivor keeps taking writes while the other is down or restarting.
        account = await create_on(up, survivor, slug)
        await ready_on(up, survivor, account)
        # `up` brings the victim back on its port, and it serves what was written meanwhile.
        try:
            await eventually(functools.partial(answers, up, url), timeout=60, message=f"{victim} back")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{up.log_tail(3000)}") from None
        await ready_on(up, url, account)

    async def every_account_on_both() -> bool:
        for url in apis:
            out = await call(up, url, "account.list", {"limit": 50})
            if out.kind != "ok":
                return False
            slugs = {a["slug"]: a["status"] for a in out.result["items"]}
            if slugs != dict.fromkeys(SLUGS, "ready"):
                return False
        return True

    await eventually(every_account_on_both, timeout=60, message="both replicas list every account ready")
    assert up.stop() == 0
