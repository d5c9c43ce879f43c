"""Opaque, tamper-safe list cursors: a position signed with a server-side HMAC key.

`encode(pos)` -> "<base64url pos>.<base64url mac>"; `decode` returns the
position or None for anything we did not issue (bad shape, bad MAC, bad number).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

MAX_CURSOR_LEN = 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"cursor:" + payload, hashlib.sha256).digest()[:16]

    def encode(self, position: int) -> str:
        payload = str(position).encode("ascii")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, cursor: str) -> int | None:
        if len(cursor) > MAX_CURSOR_LEN or not cursor.isascii() or cursor.count(".") != 1:
            return None
        head, mac = cursor.split(".")
        try:
            payload, presented = _unb64(head), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(presented, self._mac(payload)):
            return None
        text = payload.decode("ascii", "replace")
        if not text.isdigit() or len(text) > 18:
            return None
        return int(text)
