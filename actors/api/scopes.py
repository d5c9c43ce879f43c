"""Which API-key scope each JSON-RPC method needs: the one table (CONTRACT.md section 6).

Scopes are ordered `read` < `write` < `admin`; a key may call every method
whose required scope is at or below its own. `REQUIRED` is the single source
of truth: the dispatcher checks it, `rpc.discover` documents it and the audit
log uses it (every method that needs `write` or more changes state or manages
keys, so each call of one is audited). A method missing from the table needs
`admin`, so a new method is closed until it joins the table with one line.
Methods registered with `auth=False` (`rpc.discover`) need no key at all.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Scope = Literal["read", "write", "admin"]
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
_RANK: Final[dict[Scope, int]] = {scope: rank for rank, scope in enumerate(SCOPES)}

REQUIRED: Final[dict[str, Scope]] = {
    "account.get": "read",
    "account.list": "read",
    "account.wait": "read",
    "plan.list": "read",
    "cluster.list": "read",
    "cluster.remove": "admin",
    "account.create": "write",
    "account.update": "write",
    "account.suspend": "write",
    "account.resume": "write",
    "account.delete": "write",
    "account.retry": "write",
    "key.create": "admin",
    "key.list": "admin",
    "key.revoke": "admin",
}


def required_scope(method: str) -> Scope:
    return REQUIRED.get(method, "admin")


def allows(held: Scope, needed: Scope) -> bool:
    return _RANK[held] >= _RANK[needed]


def audited(method: str) -> bool:
    """Calls that change state or manage keys: everything above `read`."""
    return required_scope(method) != "read"


def parse_scope(text: str) -> Scope:
    """A scope named on the command line or in the key file; ValueError names the choices."""
    for scope in SCOPES:
        if text == scope:
            return scope
    raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {text!r}")
