"""Console sessions: a random id in a cookie standing for an API key, kept server-side.

`open(principal)` issues a 256-bit random id; the store keeps only its
SHA-256, so a memory dump or a log line never holds a usable id. A session
knows its key's id and scope, never the key's secret. `identify(id)` answers
the principal or `invalid`, and re-checks the key on every call
(`KeyRing.live`): a revoked key's sessions die with it, at once. Sessions end
after `idle` seconds unused, or `max_age` seconds after login, or at logout;
at most `limit` are kept (the least recently used goes first), so a flood of
logins cannot grow memory. They live in the API process: a restart, or
another API replica, means logging in again.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import structlog

from actors.api.auth import Clock, KeyRing, Principal, Refusal

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    session_idle: float = 8 * 3600.0
    session_max_age: float = 24 * 3600.0
    max_sessions: int = 10_000
    subscriber_limit: int = 1_000  # changed accounts pending per live-update stream
    keepalive: float = 15.0  # an SSE comment this often keeps proxies from closing the stream
    write_timeout: float = 10.0  # a stream whose client reads nothing for this long is closed
    clusters_interval: float | None = None  # None: the API's directory interval


@dataclass(slots=True)
class _Session:
    principal: Principal
    opened: float
    used: float


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()


class SessionStore:
    def __init__(
        self, keys: KeyRing, settings: ConsoleSettings | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        self._keys = keys
        self._settings = settings or ConsoleSettings()
        self._clock = clock
        self._sessions: OrderedDict[bytes, _Session] = OrderedDict()

    def open(self, principal: Principal) -> str:
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        self._sessions[_digest(session_id)] = _Session(principal, now, now)
        while len(self._sessions) > max(1, self._settings.max_sessions):
            _, oldest = self._sessions.popitem(last=False)
            log.info("console_session_evicted", key_id=oldest.principal.key_id)
        log.info("console_session_opened", key_id=principal.key_id, key_name=principal.key_name,
                 scope=principal.scope)
        return session_id

    def identify(self, session_id: str) -> Principal | Refusal:
        digest = _digest(session_id)
        session = self._sessions.get(digest)
        if session is None:
            return "invalid"
        now = self._clock()
        expired = (now - session.used > self._settings.session_idle
                   or now - session.opened > self._settings.session_max_age)
        live = None if expired else self._keys.live(session.principal.key_id)
        if live is None:
            del self._sessions[digest]
            log.info("console_session_ended", key_id=session.principal.key_id,
                     reason="expired" if expired else "key_revoked")
            return "invalid"
        session.used = now
        self._sessions.move_to_end(digest)
        return live

    def close(self, session_id: str) -> bool:
        session = self._sessions.pop(_digest(session_id), None)
        if session is not None:
            log.info("console_session_closed", key_id=session.principal.key_id)
        return session is not None

    def __len__(self) -> int:
        return len(self._sessions)
