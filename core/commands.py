"""Commands the API's domain accepts: a closed set of frozen dataclasses.

The JSON-RPC edge turns validated params into one of these; the domain actor
`match`es on them. Reads (and waits) do not go through the domain: they are
cache queries.

Every command but create names an existing account and, when accepted, moves
it to the next generation with its whole desired state: `UpdateAccount`
(name, owner, plan: None keeps the field), `SuspendAccount`/`ResumeAccount`
(suspended or not), `RetryAccount` (the same state again, so every cluster
reconciles afresh with its backoff reset), `DeleteAccount` (the tombstone).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CreateAccount:
    name: str
    owner_email: str
    slug: str | None
    correlation_id: str
    plan: str | None = None  # None: the default plan


@dataclass(frozen=True, slots=True)
class UpdateAccount:
    account_id: str
    correlation_id: str
    name: str | None = None
    owner_email: str | None = None
    plan: str | None = None


@dataclass(frozen=True, slots=True)
class SuspendAccount:
    account_id: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class ResumeAccount:
    account_id: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class RetryAccount:
    """Bump the generation with the same state; the edge decided a retry is due."""

    account_id: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class DeleteAccount:
    account_id: str
    correlation_id: str


Command = CreateAccount | UpdateAccount | SuspendAccount | ResumeAccount | RetryAccount | DeleteAccount
