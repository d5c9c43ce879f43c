"""Commands the API's domain accepts: a closed set of frozen dataclasses.

The JSON-RPC edge turns validated params into one of these; the domain actor
`match`es on them. Reads do not go through the domain: they are cache queries.
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

