"""API keys as the API sees them: who a bearer token belongs to, with the key file followed live.

The admin key comes from FABRIC_ADMIN_KEY / --admin-key when given, else from
`STATE_DIR/admin.key`, which is generated once (mode 0600) when missing. It
is the key with id and name `admin`, scope `admin`, always valid. Every other
key lives in the key file (actors/api/keystore.py), kept as SHA-256 digests.

`KeyRing.identify(authorization)` answers a `Principal` or why not:
`missing` (no header, or no token after `Bearer`) or `invalid` (another
scheme, an unknown token, a revoked key). The presented token's digest is
compared with every live key's in constant time, without an early exit.

Revocation needs no restart: before identifying, the ring stats the key file
(at most once per `reload_interval` seconds) and reloads it when its inode,
mtime or size changed. A file that cannot be read fails closed: only the
admin key is valid until the file is readable again, and that is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from actors.api.keystore import ADMIN_KEY_ID, KeyFileError, digest, new_secret, read_keys
from actors.api.scopes import Scope
from actors.runtime.files import write_atomic

KEY_FILE = "admin.key"

log = structlog.get_logger()

Refusal = Literal["missing", "invalid"]
Clock = Callable[[], float]
_Stamp = tuple[int, int, int]


def new_key() -> str:
    return new_secret()


def load_or_create_admin_key(state_dir: Path) -> str:
    path = state_dir / KEY_FILE
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    key = new_key()
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, key + "\n", mode=0o600, exclusive=True)
    except FileExistsError:
        # Another process starting on this state dir made one first: use that one.
        return path.read_text(encoding="utf-8").strip()
    return key


@dataclass(frozen=True, slots=True)
class Principal:
    """The key a request was made with (never its secret)."""

    key_id: str
    key_name: str
    scope: Scope


ADMIN = Principal(ADMIN_KEY_ID, "admin", "admin")


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    digest: bytes


KNOWN_TOKENS = 1024


class KeyRing:
    """The admin key plus the live keys of `keys_file` (none when it is None)."""

    def __init__(
        self,
        admin_key: str,
        keys_file: Path | None = None,
        *,
        reload_interval: float = 0.5,
        clock: Clock = time.monotonic,
    ) -> None:
        self._admin_digest = digest(admin_key) if admin_key else None
        self.keys_file = keys_file
        self._reload_interval = reload_interval
        self._clock = clock
        self._entries: tuple[_Entry, ...] = ()
        if self._admin_digest is not None:
            self._entries = (_Entry(ADMIN, self._admin_digest),)
        self._file_entries: tuple[_Entry, ...] = ()
        # Bearer headers found valid, as sent: a request's key costs one dict lookup, not a
        # SHA-256 and a compare per key (~6% of an `account.get` under load). Only what the
        # full check accepted is here, and a change of the key file's entries (a reload, a
        # fail-closed) empties it. A dict lookup leaks nothing of a wrong token: it reaches a
        # string compare only on a full match of a per-process keyed hash with a held token.
        self._known: dict[str, Principal] = {}
        self._stamp: _Stamp | None = None
        self._checked_at = float("-inf")
        self.reload()

    def identify(self, authorization: str | None) -> Principal | Refusal:
        if authorization is None:
            return "missing"
        self.refresh()
        known = self._known.get(authorization)
        if known is not None:
            return known
        text = authorization.strip()
        if not text:
            return "missing"
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer":
            return "invalid"
        token = token.strip()
        if not token:
            return "missing"
        presented = digest(token)
        found: Principal | None = None
        for entry in (*self._entries, *self._file_entries):
            # No early exit: the time taken does not depend on which key matched.
            if hmac.compare_digest(presented, entry.digest) and found is None:
                found = entry.principal
        if found is None:
            return "invalid"
        if len(self._known) >= KNOWN_TOKENS:
            self._known.clear()
        self._known[authorization] = found  # the header as sent: the next one is one lookup
        return found

    def live(self, key_id: str) -> Principal | None:
        """The key with this id while it is valid (console sessions re-check their key here).

        The key file is stat'ed on every call, not once per reload interval: a session
        outlives the request that opened it, so its key's revocation must end it at once.
        """
        self.reload()
        for entry in (*self._entries, *self._file_entries):
            if entry.principal.key_id == key_id:
                return entry.principal
        return None

    def refresh(self) -> None:
        """Reload the key file if it changed, checking at most once per reload interval."""
        now = self._clock()
        if now - self._checked_at < self._reload_interval:
            return
        self._checked_at = now
        self.reload()

    def reload(self) -> None:
        """Reload the key file now if it changed since it was last read."""
        if self.keys_file is None:
            return
        try:
            st = os.stat(self.keys_file)
            stamp: _Stamp | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            self._fail_closed(f"{self.keys_file}: {exc.strerror or exc}", None)
            return
        if stamp == self._stamp:
            return
        # Stat before reading: a change racing the read shows up as a new stamp next time.
        try:
            keys = read_keys(self.keys_file)
        except KeyFileError as exc:
            self._fail_closed(str(exc), stamp)
            return
        self._stamp = stamp
        self._set_file_entries(tuple(
            _Entry(Principal(k.id, k.name, k.scope), bytes.fromhex(k.sha256))
            for k in keys if k.revoked_at is None
        ))
        log.info("api_keys_loaded", path=str(self.keys_file), live=len(self._file_entries),
                 revoked=len(keys) - len(self._file_entries))

    def secret(self, purpose: str) -> bytes:
        """A server-side secret derived from the admin key (signs list cursors)."""
        base = self._admin_digest or b"fabric"
        return hmac.new(base, purpose.encode(), hashlib.sha256).digest()

    def _fail_closed(self, reason: str, stamp: _Stamp | None) -> None:
        if self._file_entries or stamp != self._stamp:
            log.error("api_keys_unreadable", error=reason, hint="only the admin key is valid")
        self._set_file_entries(())
        self._stamp = stamp

    def _set_file_entries(self, entries: tuple[_Entry, ...]) -> None:
        self._file_entries = entries
        self._known.clear()  # a token found among the old entries is checked again
