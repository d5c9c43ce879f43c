"""Commands and queries the API's domain accepts: a closed set of frozen dataclasses.

The JSON-RPC edge turns validated params into one of these; the domain actor
and the readers `match` on them (`assert_never` keeps the set closed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CreateAccount:
    name: str
    owner_email: str
    slug: str | None
    correlation_id: str


@dataclass(frozen=True, slots=True)
class DeleteAccount:
    account_id: str
    correlation_id: str


Command = CreateAccount | DeleteAccount


@dataclass(frozen=True, slots=True)
class GetAccount:
    """Exactly one of `account_id` / `slug` is set."""

    account_id: str | None
    slug: str | None


@dataclass(frozen=True, slots=True)
class ListAccounts:
    limit: int
    after: int | None  # the creation position of the last item already seen


Query = GetAccount | ListAccounts
