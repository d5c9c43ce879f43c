"""The console in real headless Chromium against a real system (`fabric up`, clusters a and b).

Elements are found by the contract's attributes (CONTRACT.md section 8):
rows `data-account`/`data-status`, cells `data-cluster`/`data-state`,
clusters `data-cluster-name`/`data-online`. Nothing reloads the page after
login: what changes arrives over the live stream.
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.console.browser import Shots, log_in, new_page
from tests.system.harness import FabricUp, call_ok, eventually

pytestmark = pytest.mark.processes

LONG_MS = 40_000


async def emulator(up: FabricUp, cluster: str, method: str, path: str, body: object = None) -> Any:
    api = up.endpoints["clusters"][cluster]["api"]
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.request(method, f"{api}{path}", json=body,
                        headers={"Authorization": f"Bearer {up.kube_token(cluster)}"},
                        timeout=aiohttp.ClientTimeout(total=5)) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json(content_type=None)


async def create_through_form(page: Page, name: str, slug: str, plan: str = "standard") -> None:
    form = page.locator("#create-form")
    await form.locator('input[name="name"]').fill(name)
    await form.locator('input[name="owner_email"]').fill(f"ops@{slug}.example")
    await form.locator('input[name="slug"]').fill(slug)
    await form.locator('select[name="plan"]').select_option(plan)
    await form.locator('button[type="submit"]').click()
    await expect(page.locator("#notice")).to_contain_text(f"Account {slug} created")


def cell(page: Page, slug: str, cluster: str, state: str | None = None) -> Any:
    selector = f'tr[data-account="{slug}"] td[data-cluster="{cluster}"]'
    if state is not None:
        selector += f'[data-state="{state}"]'
    return page.locator(selector)


async def api_ready(up: FabricUp) -> bool:
    try:
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(f"{up.api_url}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False  # still restarting


def cluster_item(page: Page, name: str, online: bool) -> Any:
    return page.locator(f'li[data-cluster-name="{name}"][data-online="{str(online).lower()}"]')


@pytest.mark.timeout(300)
async def test_an_operator_creates_watches_and_heals_accounts_without_reloading(
    up: FabricUp, browser: Browser, shots: Shots
) -> None:
    up.start()
    await up.wait_ready()
    operator = await call_ok(up, "key.create", {"scope": "write", "name": "operator"})
    async with new_page(browser) as page:
        await log_in(page, up.api_url, operator["key"])
        await expect(page.locator("#who-scope")).to_have_text("write")
        await expect(page.locator("#live")).to_have_attribute("data-live", "true")
        loads: list[str] = []
        page.on("load", lambda _page: loads.append("load"))

        # Create through the form; both clusters' cells turn `created` by themselves.
        await create_through_form(page, "Acme Inc", "acme", plan="small")
        for cluster in ("a", "b"):
            await expect(cell(page, "acme", cluster, "created")).to_be_visible(timeout=LONG_MS)
        await expect(page.locator('tr[data-account="acme"]')).to_have_attribute("data-status", "ready")
        await expect(cluster_item(page, "a", True)).to_be_visible()
        await expect(cluster_item(page, "b", True)).to_be_visible()
        await shots.take(page, "created")

        # A daemon that stops answering: its cluster goes offline, then comes back.
        pid = up.pid("daemon-b")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            await expect(cluster_item(page, "b", False)).to_be_visible(timeout=LONG_MS)
            await expect(cell(page, "acme", "b").locator(".offline")).to_be_visible()
            await shots.take(page, "cluster-b-offline")
        finally:
            os.kill(pid, signal.SIGCONT)
        await expect(cluster_item(page, "b", True)).to_be_visible(timeout=LONG_MS)
        await shots.take(page, "cluster-b-online")

        # A cluster that refuses one account: the failure shows with its Kubernetes reason.
        await emulator(up, "a", "POST", "/_emulator/faults", {
            "mode": "error500", "count": 100000,
            "match": {"path_prefix": "/api/v1/namespaces/acc-stuck/resourcequotas"},
        })
        await create_through_form(page, "Stuck", "stuck")
        failure = page.locator('li[data-failure-account="stuck"][data-failure-cluster="a"]')
        await expect(failure).to_contain_text(re.compile("InternalError|500"), timeout=LONG_MS)
        await expect(failure).to_contain_text(re.compile(r"attempts [1-9]"))
        await expect(cell(page, "stuck", "a", "failed")).to_be_visible()
        await expect(cell(page, "stuck", "b", "created")).to_be_visible(timeout=LONG_MS)
        await expect(page.locator('tr[data-account="stuck"]')).to_have_attribute("data-status", "degraded")
        await shots.take(page, "failure-shown")

        # Clear the fault and retry from the page. The daemon is held still meanwhile, so its
        # own backoff cannot heal the account before the click: the retry is what we see land.
        daemon_a = up.pid("daemon-a")
        assert daemon_a is not None
        os.kill(daemon_a, signal.SIGSTOP)
        try:
            await emulator(up, "a", "DELETE", "/_emulator/faults")
            await failure.locator('button[data-action="retry-failure"]').click()
            await expect(page.locator("#notice")).to_contain_text("Account stuck: retrying on a")
        finally:
            os.kill(daemon_a, signal.SIGCONT)
        await expect(cell(page, "stuck", "a", "created")).to_be_visible(timeout=LONG_MS)
        await expect(page.locator('tr[data-account="stuck"]')).to_have_attribute("data-status", "ready",
                                                                                 timeout=LONG_MS)
        await expect(failure).to_have_count(0)
        stuck = await call_ok(up, "account.get", {"slug": "stuck"})
        assert stuck["generation"] == 2, stuck  # the page's retry: the same state, one generation on
        assert stuck["clusters"]["a"]["observed_generation"] == 2, stuck
        await shots.take(page, "retried")
        assert loads == [], "the page reloaded"
    assert up.stop() == 0


@pytest.mark.timeout(240)
async def test_a_read_key_sees_no_write_actions_and_is_refused_writes(
    up: FabricUp, browser: Browser, shots: Shots
) -> None:
    up.start()
    await up.wait_ready()
    viewer = await call_ok(up, "key.create", {"scope": "read", "name": "viewer"})
    await call_ok(up, "account.create", {"name": "Acme", "owner_email": "o@acme.example", "slug": "acme"})
    async with new_page(browser, width=390, height=844) as page:  # a phone-sized window
        await log_in(page, up.api_url, viewer["key"])
        await expect(page.locator("#who-scope")).to_have_text("read")
        row = page.locator('tr[data-account="acme"]')
        await expect(row.locator('td[data-cluster="a"][data-state="created"]')).to_be_visible(timeout=LONG_MS)
        await expect(page.locator("#create-form")).to_have_count(0)
        await expect(page.locator('input[name="owner_email"]')).to_have_count(0)
        await expect(page.locator("#accounts-table [data-action]")).to_have_count(0)
        await expect(page.locator('li[data-cluster-name="a"][data-online="true"]')).to_be_visible()
        await shots.take(page, "read-only")
        # The server refuses a write made with the session anyway, whatever the page shows.
        reply = await page.evaluate("""async () => {
            const r = await fetch('/rpc', {method: 'POST', headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({jsonrpc: '2.0', id: 1, method: 'account.delete',
                                    params: {id: '00000000-0000-0000-0000-000000000000'}})});
            return await r.json();
        }""")
        assert reply["error"]["code"] == -32001, reply
        assert reply["error"]["data"]["reason"] == "scope", reply

        # The API restarts (its sessions are in memory): the stream's reconnect is refused, the
        # page asks for the key again by itself, and after login shows what changed meanwhile.
        await up.kill("api")
        await expect(page.locator("#login")).to_be_visible(timeout=LONG_MS)
        await expect(page.locator("#login-error")).to_contain_text("log in again")
        await eventually(lambda: api_ready(up), timeout=40, message="the API restarted")
        await call_ok(up, "account.create", {"name": "Beta", "owner_email": "o@beta.example", "slug": "beta"})
        await page.locator('input[name="key"]').fill(viewer["key"])
        await page.locator('#login-form button[type="submit"]').click()
        await expect(page.locator('tr[data-account="beta"]')).to_be_visible(timeout=LONG_MS)
        await expect(page.locator("#live")).to_have_attribute("data-live", "true")
        await shots.take(page, "logged-in-again")
    assert up.stop() == 0
