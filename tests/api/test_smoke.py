from __future__ import annotations

from tests.api.harness import RunningApi


async def test_create_then_get_finds_the_account(api: RunningApi) -> None:
    created = await api.result("account.create", {"name": "Acme Corp", "owner_email": "a@acme.io"})
    assert created["slug"] == "acme-corp"
    got = await api.result("account.get", {"id": created["id"]})
    assert got == created
