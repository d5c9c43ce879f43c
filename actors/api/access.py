"""Who may call what, how often, and the audit trail: the API's access rules in one place.

`Gate.access(authorization, remote)` makes the per-request `Access` the
dispatcher consults (actors/api/jsonrpc.py):

- `admit(cost)`, once per HTTP request that calls methods needing a key:
  a valid key pays `cost` tokens from its own bucket (`key_rate` per second,
  `key_burst` saved up); an address that sent too many wrong keys
  (`fail_rate`/`fail_burst`, one token per request with a wrong key) gets
  every keyed request refused until it recovers, whichever key it presents,
  so guessing gains nothing. A refusal is the 429 / -32029 reply. Requests
  without a key are not limited: they learn nothing and cost little.
- `authorize(method)`: -32001 with `data.reason` `missing`, `invalid`
  (unknown, revoked or not a bearer token) or `scope` (the key's scope is
  below the method's, actors/api/scopes.py; `data.required` names it).
- Console sessions (actors/api/console/): a request without an
  `Authorization` header but with the `SESSION_COOKIE` cookie is the
  session's key, looked up in `Gate.sessions` (which re-checks that the key
  is still valid); everything above then applies as for the key itself. The
  Origin of such a request is checked before it gets here (the console's
  middleware), since a browser sends cookies on cross-site requests too.
- `audit(...)`: one `audit` log line per call of a method above `read`
  (state changes and key management), with the key's id, name and scope, the
  method, the account (or key) it concerned and the outcome.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from actors.api.auth import Clock, KeyRing, Principal, Refusal
from actors.api.jsonrpc import UNAUTHORIZED, RpcError
from actors.api.ratelimit import Limiter, retry_after
from actors.api.scopes import allows, audited, required_scope

log = structlog.get_logger()

SESSION_COOKIE = "fabric_session"


class SessionLookup(Protocol):
    def identify(self, session_id: str) -> Principal | Refusal:
        """The session's key while both are valid, else why not (`invalid`)."""
        ...


@dataclass(frozen=True, slots=True)
class AccessSettings:
    keys_file: Path | None = None  # None: STATE_DIR/keys.json
    key_rate: float = 200.0
    key_burst: int = 400
    fail_rate: float = 10.0
    fail_burst: int = 100
    reload_interval: float = 0.5


class Gate:
    def __init__(
        self,
        keys: KeyRing,
        settings: AccessSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        sessions: SessionLookup | None = None,
    ) -> None:
        settings = settings or AccessSettings()
        self.keys = keys
        self.sessions = sessions
        self.per_key = Limiter(settings.key_rate, settings.key_burst, clock)
        self.failures = Limiter(settings.fail_rate, settings.fail_burst, clock)

    def access(
        self, authorization: str | None, remote: str | None, session: str | None = None
    ) -> RequestAccess:
        """`session`: the console's session cookie, used only when there is no Authorization."""
        return RequestAccess(self, authorization, remote or "-", session)


class RequestAccess:
    """One HTTP request's caller; the key is looked up once, when first needed."""

    __slots__ = ("_authorization", "_gate", "_identity", "_remote", "_session")

    def __init__(
        self, gate: Gate, authorization: str | None, remote: str, session: str | None = None
    ) -> None:
        self._gate = gate
        self._authorization = authorization
        self._remote = remote
        self._session = session
        self._identity: Principal | Refusal | None = None

    @property
    def identity(self) -> Principal | Refusal:
        if self._identity is None:
            sessions = self._gate.sessions
            if self._session and sessions is not None and not (self._authorization or "").strip():
                self._identity = sessions.identify(self._session)
            else:
                self._identity = self._gate.keys.identify(self._authorization)
        return self._identity

    def admit(self, cost: int) -> int | None:
        identity = self.identity
        if not isinstance(identity, Principal) and identity == "missing":
            return None
        wait = self._gate.failures.wait(self._remote)
        if wait > 0:
            return retry_after(wait)
        if not isinstance(identity, Principal):  # "invalid"
            self._gate.failures.take(self._remote)
            log.warning("api_key_refused", remote=self._remote, reason=identity)
            return None
        wait = self._gate.per_key.take(identity.key_id, cost)
        return retry_after(wait) if wait > 0 else None

    def authorize(self, method: str) -> RpcError | None:
        identity = self.identity
        if not isinstance(identity, Principal):
            return RpcError(UNAUTHORIZED, "Unauthorized", {"reason": identity})
        needed = required_scope(method)
        if not allows(identity.scope, needed):
            return RpcError(UNAUTHORIZED, "Unauthorized: the key's scope does not allow this method",
                            {"reason": "scope", "scope": identity.scope, "required": needed})
        return None

    def audit(self, method: str, params: Any, result: Any, code: int) -> None:
        identity = self.identity
        if not isinstance(identity, Principal) or not audited(method):
            return
        fields: dict[str, Any] = {
            "key_id": identity.key_id, "key_name": identity.key_name, "scope": identity.scope,
            "method": method, "remote": self._remote,
            "outcome": "ok" if code == 0 else "error",
        }
        if code:
            fields["code"] = code
        subject = _subject(params, result)
        if subject is not None:
            fields["target_key_id" if method.startswith("key.") else "account_id"] = subject
        log.info("audit", **fields)


def _subject(params: Any, result: Any) -> str | None:
    """The id a call concerned: its `id` param, else the `id` of what it answered."""
    for source in (params, result):
        if isinstance(source, dict) and isinstance(source.get("id"), str):
            return str(source["id"])[:64]  # params are caller-chosen: keep the line short
    return None
