"""Small builders shared by the broker tests."""

from __future__ import annotations

import uuid

from core.envelope import Envelope, new_event_id, utc_now


def envelope(n: int = 0, *, account: str | None = None, event_id: str | None = None) -> Envelope:
    return Envelope(
        event_id=event_id or new_event_id(),
        type="account.created",
        schema_version=1,
        aggregate_id=account or str(uuid.UUID(int=n % 7 + 1)),
        occurred_at=utc_now(),
        correlation_id=f"test-{n}",
        payload={"n": n, "slug": f"acc-{n}"},
    )
