"""The API-key file (`STATE_DIR/keys.json`, mode 0600): every issued key, by hash only.

    {"version": 1, "keys": [{"id", "name", "scope", "created_at", "revoked_at", "sha256"}]}

A key's secret is 256 random bits (`secrets.token_urlsafe(32)`), shown once
when it is created; the file keeps only its SHA-256 (a plain hash is enough
for a secret of that entropy). Revoked keys stay listed with `revoked_at`.
The admin key (`admin.key` / FABRIC_ADMIN_KEY) is not in this file: it is
the key with id `admin`, always valid, replaced only by `fabric keys rotate`.

Both the operator tool and a running API change the file: each change takes
an exclusive lock on a sidecar file, reads, edits, and replaces the file with
`write_atomic`, so concurrent changes are never lost and a reader never sees
half a file. Plain synchronous I/O; the API calls it from a worker thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.api.scopes import Scope, parse_scope
from actors.runtime.files import write_atomic

KEYS_FILE = "keys.json"
ADMIN_KEY_ID = "admin"
NAME_MAX = 64
VERSION = 1


class KeyFileError(Exception):
    """The key file cannot be read or is not a key file; the message says which and why."""


class UnknownKey(Exception):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key with id {key_id!r}")
        self.key_id = key_id


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: str
    name: str
    scope: Scope
    created_at: str
    revoked_at: str | None
    sha256: str  # hex digest of the secret

    def public(self) -> dict[str, Any]:
        """What `keys list` shows: everything but the hash."""
        return {"id": self.id, "name": self.name, "scope": self.scope,
                "created_at": self.created_at, "revoked_at": self.revoked_at}

    def to_json(self) -> dict[str, Any]:
        return {**self.public(), "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class IssuedKey:
    stored: StoredKey
    secret: str


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


NAME_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
"""What `check_name` allows, as a JSON Schema (ECMA-262) pattern: no control characters."""


def check_name(name: str) -> str:
    """A key name: 1..64 characters, none of them a control character (or a lone surrogate)."""
    if not 1 <= len(name) <= NAME_MAX:
        raise ValueError(f"a key name has 1 to {NAME_MAX} characters")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or 0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        raise ValueError("a key name has no control characters")
    return name


def read_keys(path: Path) -> list[StoredKey]:
    """Every key in the file, revoked ones included; none when the file does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(
        data.get("keys"), list
    ):
        raise KeyFileError(f"{path} is not a version {VERSION} key file")
    keys = [_entry(path, i, item) for i, item in enumerate(data["keys"])]
    ids = [k.id for k in keys]
    if len(set(ids)) != len(ids) or ADMIN_KEY_ID in ids:
        raise KeyFileError(f"{path}: key ids must be unique and not {ADMIN_KEY_ID!r}")
    return keys


def create_key(path: Path, scope: Scope, name: str | None = None) -> IssuedKey:
    """Issue a new key; the secret is returned here and never stored."""
    with _locked(path):
        keys = read_keys(path)
        taken = {k.id for k in keys}
        key_id = secrets.token_hex(8)
        while key_id in taken:  # 64 random bits: practically never
            key_id = secrets.token_hex(8)
        secret = new_secret()
        stored = StoredKey(key_id, check_name(name if name is not None else key_id), scope,
                           now_text(), None, digest(secret).hex())
        _write(path, [*keys, stored])
    return IssuedKey(stored, secret)


def revoke_key(path: Path, key_id: str) -> StoredKey:
    """Mark a key revoked (again: no change); UnknownKey when there is none with that id."""
    with _locked(path):
        keys = read_keys(path)
        for i, key in enumerate(keys):
            if key.id == key_id:
                if key.revoked_at is None:
                    keys[i] = replace(key, revoked_at=now_text())
                    _write(path, keys)
                return keys[i]
    raise UnknownKey(key_id)


def _write(path: Path, keys: list[StoredKey]) -> None:
    body = {"version": VERSION, "keys": [k.to_json() for k in keys]}
    write_atomic(path, json.dumps(body, indent=2) + "\n", mode=0o600)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive across processes: the CLI and a running API may both change the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _entry(path: Path, index: int, item: Any) -> StoredKey:
    where = f"{path}: key #{index}"
    if not isinstance(item, dict):
        raise KeyFileError(f"{where} is not an object")
    try:
        key = StoredKey(
            id=_text(item, "id"),
            name=_text(item, "name"),
            scope=parse_scope(_text(item, "scope")),
            created_at=_text(item, "created_at"),
            revoked_at=None if item.get("revoked_at") is None else _text(item, "revoked_at"),
            sha256=_text(item, "sha256"),
        )
        bytes.fromhex(key.sha256)
    except KeyError as exc:
        raise KeyFileError(f"{where}: {exc.args[0]} is missing") from None
    except (TypeError, ValueError) as exc:
        raise KeyFileError(f"{where}: {exc}") from None
    if len(key.sha256) != 64:
        raise KeyFileError(f"{where}: sha256 must be 64 hex digits")
    return key


def _text(item: dict[str, Any], field: str) -> str:
    value = item[field]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{field} must be a non-empty string")
    return value
