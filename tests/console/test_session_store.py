"""The console's server-side sessions on a hand-driven clock: expiry, the bound, revocation."""

from __future__ import annotations

from pathlib import Path

from actors.api.auth import ADMIN, KeyRing, Principal
from actors.api.console import ConsoleSettings, SessionStore
from actors.api.keystore import create_key, revoke_key
from tests.api.keyed import ManualClock

ADMIN_KEY = "session-store-admin-key-0123456789"


def store(
    clock: ManualClock, keys_file: Path | None = None, settings: ConsoleSettings | None = None
) -> SessionStore:
    return SessionStore(KeyRing(ADMIN_KEY, keys_file, clock=clock), settings, clock=clock)


def test_a_session_stands_for_its_key_and_ends_after_being_idle_too_long() -> None:
    clock = ManualClock()
    sessions = store(clock, settings=ConsoleSettings(session_idle=60.0, session_max_age=1000.0))
    session_id = sessions.open(ADMIN)
    clock.advance(59)
    assert sessions.identify(session_id) == ADMIN  # use restarts the idle time
    clock.advance(59)
    assert sessions.identify(session_id) == ADMIN
    clock.advance(61)
    assert sessions.identify(session_id) == "invalid"
    assert len(sessions) == 0


def test_a_session_ends_at_its_maximum_age_however_busy() -> None:
    clock = ManualClock()
    sessions = store(clock, settings=ConsoleSettings(session_idle=60.0, session_max_age=100.0))
    session_id = sessions.open(ADMIN)
    for _ in range(3):
        clock.advance(40)
        result = sessions.identify(session_id)
    assert result == "invalid"


def test_the_least_recently_used_session_goes_first_past_the_bound() -> None:
    clock = ManualClock()
    sessions = store(clock, settings=ConsoleSettings(max_sessions=2))
    first, second = sessions.open(ADMIN), sessions.open(ADMIN)
    assert sessions.identify(first) == ADMIN  # now second is the least recently used
    third = sessions.open(ADMIN)
    assert len(sessions) == 2
    assert sessions.identify(second) == "invalid"
    assert sessions.identify(first) == ADMIN
    assert sessions.identify(third) == ADMIN


def test_revoking_the_key_ends_its_sessions_without_waiting_for_the_reload_interval(tmp_path: Path) -> None:
    clock = ManualClock()
    keys_file = tmp_path / "keys.json"
    sessions = store(clock, keys_file)
    issued = create_key(keys_file, "write", "ops")
    # The ring was made before the key: a session opens for the key as identified by the API.
    principal = Principal(issued.stored.id, "ops", "write")
    session_id = sessions.open(principal)
    assert sessions.identify(session_id) == principal
    revoke_key(keys_file, issued.stored.id)
    assert sessions.identify(session_id) == "invalid"  # the clock did not move


def test_an_unknown_session_id_is_invalid() -> None:
    sessions = store(ManualClock())
    sessions.open(ADMIN)
    assert sessions.identify("made-up") == "invalid"
    assert sessions.close("made-up") is False
