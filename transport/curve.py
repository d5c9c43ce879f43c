"""CurveZMQ keys in pyzmq's certificate format, and the broker's ZAP handler (the allow-list).

Zmq's second home (with `transport.sockets`): certificates and ZAP need pyzmq's
own helpers.

Key files (pyzmq's `zmq.auth` format): `NAME.key` holds a public key,
`NAME.key_secret` (mode 0600) the pair. `ensure_certificate` writes both at
once, never exposing a secret with looser permissions, and keeps a pair that
exists. `load_client_keys` / `load_server_keys` read them for the sockets,
raising `KeyFileError` with the file and the reason.

Identities: the certificate's file name is its holder's identity at the
broker: `api`, or `cluster-NAME` for cluster NAME's daemon (`IDENTITY`).

`AllowList` maps the public keys of the `*.key` files in one directory to their
identities, skipping the server's own certificate (so `fabric up` can point the
broker at its whole keys dir) and, with a reason, files whose name is no
identity. It re-reads the directory when its listing changed (checked at each
handshake), so a key added while the broker runs is admitted at its first
handshake, and a removed one is refused from its next handshake on (a
connection already made stays until it drops).

`CurveGate` is pyzmq's `Authenticator` (RFC 27 ZAP, CURVE by a credentials
callback) serving on our own socket in our own task (`serve`), so its owner
runs and stops it like any other task. Only CURVE is admitted, only keys on the
allow-list, and the ZAP user id is the key's identity: the broker reads it
from every message (`Socket.recv_from`), never from what the peer writes.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
import zmq
import zmq.auth
from zmq.auth.base import Authenticator
from zmq.utils import z85

from transport.sockets import ClientKeys, Context, ServerKeys, Socket, bind_zap

API = "api"
BROKER = "broker"
CLUSTER_PREFIX = "cluster-"
IDENTITY = re.compile(r"api|cluster-[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"  # noqa: S105 (a file name suffix, not a secret)
_Z85_KEY_LEN = 40
_REFUSAL_LOG_EVERY = 60.0  # seconds between log lines about the same refused key
_REFUSALS_REMEMBERED = 1000

log = structlog.get_logger()


class KeyFileError(ValueError):
    """A certificate file is missing, unreadable or holds no valid key; the message says which."""


def cluster_identity(cluster: str) -> str:
    return f"{CLUSTER_PREFIX}{cluster}"


def public_file(directory: Path, name: str) -> Path:
    return directory / f"{name}{PUBLIC_SUFFIX}"


def secret_file(directory: Path, name: str) -> Path:
    return directory / f"{name}{SECRET_SUFFIX}"


# ---- key files --------------------------------------------------------------------------


def key_pair() -> tuple[bytes, bytes]:
    """A new (public, secret) CURVE key pair, Z85-encoded."""
    public, secret = zmq.curve_keypair()
    return public, secret


def ensure_certificate(directory: Path, name: str) -> bool:
    """Create `NAME.key` and `NAME.key_secret` (0600) in `directory` unless both exist.
    Returns True when a new pair was written."""
    public, secret = public_file(directory, name), secret_file(directory, name)
    if public.exists() and secret.exists():
        return False
    directory.mkdir(parents=True, exist_ok=True)
    # Written in a private (0700) temp dir, then renamed in: never readable by others, never half.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=directory))
    try:
        made_public, made_secret = (Path(p) for p in zmq.auth.create_certificates(staging, name))
        made_secret.chmod(0o600)
        made_public.chmod(0o644)
        for path in (made_secret, made_public):
            _fsync(path)
        made_secret.replace(secret)
        made_public.replace(public)
        _fsync(directory)
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class KeyFiles:
    """Where a client's CURVE keys are: its own certificate (with the secret key, its identity
    in the file name) and the server's public certificate."""

    secret: Path
    server_public: Path

    def load(self) -> ClientKeys:
        return load_client_keys(self.secret, self.server_public)


def load_client_keys(own_secret: Path, server_public: Path) -> ClientKeys:
    """A client's pair (its `.key_secret` file) and the server's public key (its `.key` file)."""
    public, secret = _load_pair(own_secret)
    return ClientKeys(public=public, secret=secret, server=_load_public(server_public))


def load_server_keys(own_secret: Path) -> ServerKeys:
    public, secret = _load_pair(own_secret)
    return ServerKeys(public=public, secret=secret)


def _load_pair(path: Path) -> tuple[bytes, bytes]:
    public, secret = _read_certificate(path)
    if secret is None:
        raise KeyFileError(f"{path}: holds no secret key (give the .key_secret file)")
    _check_key(path, secret, "secret")
    _check_key(path, public, "public")
    if zmq.curve_public(secret) != public:
        raise KeyFileError(f"{path}: its public key does not belong to its secret key")
    return public, secret


def _load_public(path: Path) -> bytes:
    public, _secret = _read_certificate(path)
    _check_key(path, public, "public")
    return public


def _read_certificate(path: Path) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeyFileError(f"{path}: no such certificate file")
    try:
        return zmq.auth.load_certificate(path)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read it ({exc.strerror or exc})")
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a CURVE certificate ({exc})")


def _check_key(path: Path, key: bytes, what: str) -> None:
    if len(key) != _Z85_KEY_LEN:
        raise KeyFileError(f"{path}: the {what} key is not {_Z85_KEY_LEN} Z85 characters")
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError):
        raise KeyFileError(f"{path}: the {what} key is not valid Z85")


# ---- the allow-list ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Skipped:
    """A `*.key` file of the allow-list that admits nobody, and why."""

    file: str
    reason: str


class AllowList:
    """Public key (Z85) -> identity, from the `*.key` files of one directory."""

    def __init__(self, directory: Path, *, server_public: bytes) -> None:
        self.directory = directory
        self._server_public = server_public
        self._signature: tuple[tuple[str, int, int, int], ...] | None = None
        self._identities: dict[bytes, str] = {}
        self.skipped: list[Skipped] = []

    @classmethod
    def load(cls, directory: Path, *, server_public: bytes) -> AllowList:
        """Read the directory now (raises `KeyFileError` when it cannot be listed)."""
        allow = cls(directory, server_public=server_public)
        if not allow.refresh():
            raise KeyFileError(f"{directory}: not a readable directory of client certificates")
        return allow

    @property
    def identities(self) -> dict[bytes, str]:
        return dict(self._identities)

    def identity_of(self, public: bytes) -> str | None:
        """The identity of a Z85 public key, re-reading the directory first if it changed
        (one listing per handshake: a key removed is refused from its next handshake on)."""
        _ = self.refresh()
        return self._identities.get(public)

    def refresh(self) -> bool:
        """Re-read the certificates if the listing changed; False when it cannot be listed
        (then it admits nobody: a list that cannot be read allows nothing)."""
        try:
            signature = self._listing()
        except OSError:
            self._signature, self._identities = None, {}
            return False
        if signature == self._signature:
            return True
        identities: dict[bytes, str] = {}
        skipped: list[Skipped] = []
        for name, *_stat in signature:
            path = self.directory / name
            identity = name[: -len(PUBLIC_SUFFIX)]
            try:
                public = _load_public(path)
            except KeyFileError as exc:
                skipped.append(Skipped(name, str(exc)))
                continue
            if public == self._server_public:
                continue  # the server's own certificate is no client
            if not IDENTITY.fullmatch(identity):
                skipped.append(Skipped(name, "the file name is no identity (api or cluster-NAME)"))
            elif public in identities:
                skipped.append(Skipped(name, f"the same key as {identities[public]}{PUBLIC_SUFFIX}"))
            else:
                identities[public] = identity
        self._signature, self._identities, self.skipped = signature, identities, skipped
        return True

    def _listing(self) -> tuple[tuple[str, int, int, int], ...]:
        # Name, inode, size and mtime: a certificate replaced by rename gets a new inode.
        entries: list[tuple[str, int, int, int]] = []
        with os.scandir(self.directory) as scan:
            for entry in scan:
                if entry.name.endswith(PUBLIC_SUFFIX) and not entry.name.startswith("."):
                    st = entry.stat()
                    entries.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(sorted(entries))


# ---- the ZAP handler --------------------------------------------------------------------


class CurveGate(Authenticator):
    """The ZAP handler of one context: CURVE clients on the allow-list, by identity.

    `start()` binds the ZAP socket (from then on every handshake on the context waits
    for our answer); `serve()` answers until cancelled; `stop()` closes the socket.
    """

    def __init__(self, ctx: Context, allow: AllowList) -> None:
        super().__init__(ctx)
        self._ctx = ctx
        self.allow_list = allow
        self._socket: Socket | None = None
        self._refusals: dict[bytes, float] = {}
        self._log = log.bind(actor="zap")
        self.configure_curve_callback("*", self)

    def start(self) -> None:
        self._socket = bind_zap(self._ctx)
        for skipped in self.allow_list.skipped:
            self._log.warning("client_key_skipped", file=skipped.file, reason=skipped.reason)

    def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def serve(self) -> None:
        sock = self._socket
        if sock is None:
            raise RuntimeError("CurveGate.serve() before start()")
        while True:
            await self.handle_zap_message(await sock.recv())

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # Our server sockets are all CURVE; any other mechanism asking here is refused.
        if len(msg) >= 6 and msg[5] != b"CURVE":
            self._send_zap_reply(msg[1], b"400", b"CURVE only")
            return
        await super().handle_zap_message(msg)

    # The credentials provider pyzmq calls with the client's Z85 public key.
    def callback(self, domain: str, key: bytes) -> bool:
        identity = self.allow_list.identity_of(key)
        if identity is None:
            self._refused(key)
            return False
        self._log.debug("peer_authenticated", identity=identity)
        return True

    def curve_user_id(self, client_public_key: bytes) -> str:
        # Called only after `callback` admitted the key; the broker authorizes by this.
        return self.allow_list.identity_of(z85.encode(client_public_key)) or ""

    def _send_zap_reply(
        self, request_id: bytes, status_code: bytes, status_text: bytes, user_id: str = ""
    ) -> None:
        """Like pyzmq's, on our socket: [version, request id, status, text, user id, metadata]."""
        if self._socket is None:
            return
        user = user_id.encode() if status_code == b"200" else b""
        self._socket.send_nowait([b"1.0", request_id, status_code, status_text, user, b""])

    def _refused(self, key: bytes) -> None:
        now = time.monotonic()
        last = self._refusals.get(key)
        if last is not None and now - last < _REFUSAL_LOG_EVERY:
            return
        if len(self._refusals) >= _REFUSALS_REMEMBERED:
            self._refusals.clear()
        self._refusals[key] = now
        self._log.warning(
            "handshake_refused", client_key=key.decode("ascii", "replace"),
            reason="key not on the allow-list", allow_list=str(self.allow_list.directory),
        )
