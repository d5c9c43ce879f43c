"""API keys: 256-bit random secrets, kept only as SHA-256 digests, compared in constant time.

The admin key comes from FABRIC_ADMIN_KEY / --admin-key when given, else from
`STATE_DIR/admin.key`, which is generated once (mode 0600) when missing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "admin.key"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


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
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    os.replace(tmp, path)
    return key


class KeyRing:
    """Holds key digests only; `check` takes the raw Authorization header value."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [digest(k) for k in keys if k]

    def check(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        presented = digest(token.strip())
        ok = False
        for known in self._digests:
            ok |= hmac.compare_digest(presented, known)  # no early exit: time does not depend on which
        return ok

    def secret(self, purpose: str) -> bytes:
        """A server-side secret derived from the admin key (signs list cursors)."""
        base = self._digests[0] if self._digests else b"fabric"
        return hmac.new(base, purpose.encode(), hashlib.sha256).digest()
