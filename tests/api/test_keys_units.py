"""The parts of API keys without a server: token buckets, the key file, the key ring, the flags."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from actors.api import main as api_main
from actors.api.auth import ADMIN, KeyRing, Principal
from actors.api.keystore import KeyFileError, UnknownKey, create_key, read_keys, revoke_key
from actors.api.ratelimit import Limiter, TokenBucket, retry_after
from actors.api.scopes import allows, audited, parse_scope, required_scope
from tests.api.keyed import ManualClock


def test_a_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=4, tokens=4, stamp=0.0)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [0.0] * 4
    assert bucket.take(1, 0.0) == pytest.approx(0.5)
    assert bucket.take(3, 1.0) == pytest.approx(0.5), "2 tokens back after 1 s; a refusal takes none"
    assert bucket.take(2, 1.0) == 0.0
    assert bucket.take(100, 100.0) == 0.0, "a cost above the burst is charged as the burst"
    assert bucket.take(1, 100.0) == pytest.approx(0.5)


@pytest.mark.parametrize(("wait", "header"), [(0.001, 1), (1.0, 1), (1.2, 2), (30.0, 30)])
def test_retry_after_is_whole_seconds_and_at_least_one(wait: float, header: int) -> None:
    assert retry_after(wait) == header


def test_a_limiter_keeps_a_bucket_per_key_and_bounds_how_many() -> None:
    clock = ManualClock()
    limiter = Limiter(rate=1.0, burst=1, clock=clock, max_buckets=4)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0
    assert limiter.wait("never-seen") == 0.0
    for i in range(20):
        limiter.take(f"flood-{i}")
    assert len(limiter) <= 4
    with pytest.raises(ValueError, match="rate > 0"):
        Limiter(rate=0.0, burst=1, clock=clock)


def test_scopes_are_ordered_and_unknown_methods_need_admin() -> None:
    assert allows("admin", "write")
    assert allows("write", "read")
    assert allows("read", "read")
    assert not allows("read", "write")
    assert not allows("write", "admin")
    assert required_scope("account.get") == "read"
    assert required_scope("account.create") == "write"
    assert required_scope("something.new") == "admin"
    assert not audited("account.list")
    assert audited("account.delete")
    assert audited("key.list")
    with pytest.raises(ValueError, match="read, write, admin"):
        parse_scope("root")


def test_the_key_file_keeps_hashes_and_revocations_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "api" / "keys.json"
    assert read_keys(path) == []
    first = create_key(path, "write", "ci")
    second = create_key(path, "read")
    assert second.stored.name == second.stored.id, "the name defaults to the id"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert first.secret not in text
    assert second.secret not in text
    revoked = revoke_key(path, first.stored.id)
    assert revoked.revoked_at is not None
    assert revoke_key(path, first.stored.id) == revoked, "revoking again changes nothing"
    assert [(k.id, k.revoked_at is None) for k in read_keys(path)] == [
        (first.stored.id, False), (second.stored.id, True)
    ]
    with pytest.raises(UnknownKey):
        revoke_key(path, "nope")
    with pytest.raises(ValueError, match="control characters"):
        create_key(path, "read", "bad\nname")


@pytest.mark.parametrize(
    "content",
    ["{", "[]", '{"version": 2, "keys": []}', '{"version": 1, "keys": [{"id": "x"}]}',
     '{"version": 1, "keys": [{"id": "x", "name": "n", "scope": "root", "created_at": "t", '
     '"revoked_at": null, "sha256": "00"}]}'],
    ids=["not json", "not an object", "other version", "missing fields", "bad scope"],
)
def test_a_broken_key_file_is_an_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=r"keys\.json"):
        read_keys(path)


def test_the_ring_knows_the_admin_key_and_the_files_live_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    issued = create_key(path, "read", "viewer")
    ring = KeyRing("the-admin-key", path)
    assert ring.identify("Bearer the-admin-key") == ADMIN
    assert ring.identify("bearer   the-admin-key ") == ADMIN
    assert ring.identify(f"Bearer {issued.secret}") == Principal(issued.stored.id, "viewer", "read")
    assert ring.identify(None) == "missing"
    assert ring.identify("Bearer ") == "missing"
    assert ring.identify("Basic dXNlcjpwdw==") == "invalid"
    assert ring.identify("Bearer the-admin-keyx") == "invalid"


def test_the_ring_rereads_a_changed_file_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    clock = ManualClock()
    ring = KeyRing("admin-secret", path, reload_interval=0.5, clock=clock)
    issued = create_key(path, "write")
    assert isinstance(ring.identify(f"Bearer {issued.secret}"), Principal)
    revoke_key(path, issued.stored.id)
    clock.advance(0.2)
    assert isinstance(ring.identify(f"Bearer {issued.secret}"), Principal), "not checked again yet"
    clock.advance(0.3)
    assert ring.identify(f"Bearer {issued.secret}") == "invalid"


def test_an_unreadable_key_file_leaves_only_the_admin_key_and_is_logged(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    issued = create_key(path, "admin")
    clock = ManualClock()
    ring = KeyRing("admin-secret", path, clock=clock)
    assert isinstance(ring.identify(f"Bearer {issued.secret}"), Principal)
    path.write_text("{ not json")
    clock.advance(1.0)
    with capture_logs() as logs:
        assert ring.identify(f"Bearer {issued.secret}") == "invalid"
        assert ring.identify("Bearer admin-secret") == ADMIN
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["api_keys_unreadable"]
    data = {"version": 1, "keys": [k.to_json() for k in [issued.stored]]}
    path.write_text(json.dumps(data))
    clock.advance(1.0)
    assert isinstance(ring.identify(f"Bearer {issued.secret}"), Principal), "readable again"


def test_the_rate_flags_come_from_the_environment_and_bad_values_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FABRIC_API_KEY_RATE", "5")
    monkeypatch.setenv("FABRIC_API_KEYS_FILE", "/srv/keys.json")
    ns = api_main.parser().parse_args([])
    assert (ns.key_rate, ns.key_burst, ns.keys_file) == (5.0, 400, Path("/srv/keys.json"))
    assert api_main.parser().parse_args(["--key-rate", "7"]).key_rate == 7.0
    for bad in (["--key-rate", "0"], ["--key-burst", "1.5"], ["--auth-fail-rate", "-1"]):
        with pytest.raises(SystemExit) as exc:
            api_main.parser().parse_args(bad)
        assert exc.value.code == 2
    assert "--key-burst" in capsys.readouterr().err
