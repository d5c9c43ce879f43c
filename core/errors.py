"""Domain errors: the small set the API's edge translates into JSON-RPC codes.

Each says whether the caller can retry. They carry only plain data, so the
edge can build `error.data` from them without knowing who raised them.
"""

from __future__ import annotations

from typing import Literal

Dependency = Literal["legacy", "broker", "cache"]


class DomainError(Exception):
    """Base: a definite answer; nothing was written."""


class SlugTaken(DomainError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"slug {slug!r} is taken")
        self.slug = slug


class AccountNotFound(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__(f"account {key!r} not found")
        self.key = key


class AccountStateConflict(DomainError):
    """The account is in a state that does not allow the command (e.g. an update once deleted)."""

    def __init__(self, account_id: str, state: str) -> None:
        super().__init__(f"account {account_id!r} is {state}")
        self.account_id = account_id
        self.state = state


class DependencyUnavailable(DomainError):
    """A dependency did not answer; nothing was written. Retry later."""

    def __init__(self, dependency: Dependency, detail: str = "") -> None:
        super().__init__(f"{dependency} is unavailable" + (f": {detail}" if detail else ""))
        self.dependency: Dependency = dependency
        self.detail = detail
