"""A domain actor takes its next command once the legacy write committed; the reply to a
change still waits until the cache has its event (read-your-writes)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from actors.api.cache import ApplyEvents, CacheMessage
from actors.api.domain import ChangeAccount, Create, DomainActor
from actors.legacy.actor import LegacyMessage, LoadAccount, WriteAccount, WriteUpdate
from actors.legacy.db import LegacyAccount
from actors.runtime import Actor, ActorSystem, Later
from core.commands import CreateAccount, UpdateAccount
from core.envelope import utc_now
from tests.support.wait import wait_until


class Legacy(Actor[LegacyMessage]):
    """Commits every write at once and records it; knows one account for changes."""

    def __init__(self, written: list[str], known: LegacyAccount | None = None) -> None:
        self._written = written
        self._known = known

    async def receive(self, message: LegacyMessage) -> object:
        match message:
            case WriteAccount(slug=slug):
                self._written.append(slug)
                return None
            case WriteUpdate(name=name):
                self._written.append(name)
                return True
            case LoadAccount():
                return self._known
        raise AssertionError(f"unexpected {message!r}")


class HeldCache(Actor[CacheMessage]):
    """Holds every apply until the test opens the gate, as a cache busy with other batches."""

    def __init__(self, gate: asyncio.Event, applied: list[str]) -> None:
        self._gate = gate
        self._applied = applied

    async def receive(self, message: CacheMessage) -> object:
        assert isinstance(message, ApplyEvents)

        async def held() -> list[bool]:
            await self._gate.wait()
            self._applied.extend(item.event_id for item in message.items)
            return [True] * len(message.items)

        return Later(asyncio.ensure_future(held()))


def create(slug: str) -> Create:
    return Create(CreateAccount(slug.title(), f"ops@{slug}.example", slug, correlation_id=f"c-{slug}"))


async def test_the_next_create_is_written_while_the_last_ones_apply_is_held() -> None:
    written: list[str] = []
    applied: list[str] = []
    gate = asyncio.Event()
    async with ActorSystem(stop_timeout=5.0) as system:
        legacy = system.spawn(lambda: Legacy(written), name="legacy")
        cache = system.spawn(lambda: HeldCache(gate, applied), name="cache")
        domain = system.spawn(lambda: DomainActor(legacy, cache, timeout=10.0), name="domain")
        first = asyncio.ensure_future(domain.ask(create("acme")))
        second = asyncio.ensure_future(domain.ask(create("beta")))
        # One domain actor: the second create reaches the database while the first one's
        # apply is still held.
        await wait_until(lambda: written == ["acme", "beta"], message="both creates written")
        assert not first.done()  # neither is answered before its apply
        assert not second.done()
        assert applied == []
        gate.set()
        async with asyncio.timeout(10):
            records = [await first, await second]
        assert [r.slug for r in records] == ["acme", "beta"]
        assert len(applied) == 2


async def test_a_change_is_answered_after_its_apply_with_its_new_generation() -> None:
    written: list[str] = []
    applied: list[str] = []
    gate = asyncio.Event()
    at = datetime.fromisoformat(utc_now())
    known = LegacyAccount(
        "5f0c3f7e-3c1a-4c55-9d3e-111111111111", "acme", "Acme", "ops@acme.example", "acc-acme",
        at, None, 1, at, "standard", None,
    )
    async with ActorSystem(stop_timeout=5.0) as system:
        legacy = system.spawn(lambda: Legacy(written, known), name="legacy")
        cache = system.spawn(lambda: HeldCache(gate, applied), name="cache")
        domain = system.spawn(lambda: DomainActor(legacy, cache, timeout=10.0), name="domain")
        change = asyncio.ensure_future(domain.ask(ChangeAccount(
            UpdateAccount(known.id, name="Acme Two", owner_email=None, plan=None, correlation_id="c-1")
        )))
        await wait_until(lambda: written == ["Acme Two"], message="the update written")
        assert not change.done()
        gate.set()
        async with asyncio.timeout(10):
            record = await change
        assert (record.name, record.generation) == ("Acme Two", 2)
        assert len(applied) == 1
