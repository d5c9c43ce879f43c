"""CurveZMQ keys and the ZAP gate: certificate files, the allow-list, and no CURVE server
socket without a ZAP handler to authenticate its peers."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.keys import server_keys
from tests.support.ports import free_tcp_endpoint
from transport.curve import (
    AllowList,
    CurveGate,
    KeyFileError,
    ensure_certificate,
    key_pair,
    load_client_keys,
    load_server_keys,
    public_file,
    secret_file,
)
from transport.sockets import Context, ServerKeys, Socket, SocketError, bind_pub, bind_pull, bind_router


def test_a_certificate_pair_is_written_once_in_pyzmqs_format_with_a_private_secret(tmp_path: Path) -> None:
    assert ensure_certificate(tmp_path, "api")
    public, secret = public_file(tmp_path, "api"), secret_file(tmp_path, "api")
    assert (public.name, secret.name) == ("api.key", "api.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert "public-key" in public.read_text()
    assert "secret-key" not in public.read_text()
    first = load_server_keys(secret)
    assert not ensure_certificate(tmp_path, "api")  # kept, not replaced
    assert load_server_keys(secret) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.key", "api.key_secret"]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing", "no such certificate file"),
        ("public only", "holds no secret key"),
        ("not a certificate", "not a CURVE certificate"),
        ("short key", "not 40 Z85 characters"),
        ("mismatched pair", "does not belong to its secret key"),
    ],
)
def test_a_bad_certificate_is_refused_with_its_path_and_the_reason(
    tmp_path: Path, case: str, words: str
) -> None:
    ensure_certificate(tmp_path, "broker")
    ensure_certificate(tmp_path, "api")
    given = secret_file(tmp_path, "api")
    text = given.read_text()
    if case == "missing":
        given = tmp_path / "absent.key_secret"
    elif case == "public only":
        given = public_file(tmp_path, "api")
    elif case == "not a certificate":
        given.write_text("hello\n")
    elif case == "short key":
        public = load_server_keys(given).public.decode()
        given.write_text(text.replace(public, public[:20]))
    else:
        other_public, _ = key_pair()
        public = load_server_keys(given).public.decode()
        given.write_text(text.replace(public, other_public.decode()))
    with pytest.raises(KeyFileError) as raised:
        load_client_keys(given, public_file(tmp_path, "broker"))
    assert str(raised.value).startswith(f"{given}: ")
    assert words in str(raised.value)


def test_the_allow_list_names_each_key_by_its_file_and_skips_what_admits_nobody(tmp_path: Path) -> None:
    for name in ("broker", "api", "cluster-east", "Not-An-Identity"):
        ensure_certificate(tmp_path, name)
    twin = public_file(tmp_path, "cluster-twin")
    twin.write_text(public_file(tmp_path, "api").read_text())
    (tmp_path / "cluster-junk.key").write_text("junk\n")
    server = load_server_keys(secret_file(tmp_path, "broker"))
    allow = AllowList.load(tmp_path, server_public=server.public)
    assert sorted(allow.identities.values()) == ["api", "cluster-east"]
    assert server.public not in allow.identities  # the broker's own certificate is no client
    assert {s.file for s in allow.skipped} == {"Not-An-Identity.key", "cluster-twin.key", "cluster-junk.key"}


def test_the_allow_list_follows_keys_added_and_removed_while_it_is_in_use(tmp_path: Path) -> None:
    ensure_certificate(tmp_path, "broker")
    allow = AllowList.load(tmp_path, server_public=load_server_keys(secret_file(tmp_path, "broker")).public)
    ensure_certificate(tmp_path, "cluster-new")
    newcomer = load_server_keys(secret_file(tmp_path, "cluster-new")).public
    assert allow.identity_of(newcomer) == "cluster-new"
    public_file(tmp_path, "cluster-new").unlink()
    assert allow.identity_of(newcomer) is None
    with pytest.raises(KeyFileError, match="not a readable directory"):
        AllowList.load(tmp_path / "absent", server_public=newcomer)


@pytest.mark.parametrize("bind", [bind_router, bind_pub, bind_pull])
async def test_no_curve_server_socket_is_made_without_a_running_zap_handler(
    ctx: Context, tmp_path: Path, bind: Callable[[Context, str, ServerKeys], Socket]
) -> None:
    keys = server_keys()
    with pytest.raises(SocketError, match="without a running ZAP handler"):
        bind(ctx, free_tcp_endpoint(), keys)
    gate = CurveGate(ctx, AllowList.load(tmp_path, server_public=keys.public))
    gate.start()
    try:
        bind(ctx, free_tcp_endpoint(), keys).close()
    finally:
        gate.stop()
    with pytest.raises(SocketError, match="without a running ZAP handler"):
        bind(ctx, free_tcp_endpoint(), keys)
