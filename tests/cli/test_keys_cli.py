"""`fabric keys create|list|revoke` on a state dir's key file: output shapes, exit codes, no secrets kept."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from actors.api.keystore import read_keys
from actors.cli.main import EXIT_OK, EXIT_USAGE, parse, run_keys_command
from actors.up.layout import Layout


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FABRIC_API_KEYS_FILE", raising=False)
    monkeypatch.delenv("FABRIC_CALLER_CWD", raising=False)


def fabric_keys(state: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = parse(["keys", *argv, "--state-dir", str(state)])
    code = run_keys_command(args, Layout.at(state), out, err)
    return code, out.getvalue(), err.getvalue()


def test_create_with_json_prints_id_name_scope_and_the_key_which_the_file_does_not_keep(
    tmp_path: Path,
) -> None:
    code, out, _ = fabric_keys(tmp_path, "create", "--scope", "write", "--name", "ci", "--json")
    assert code == EXIT_OK
    created = json.loads(out)
    assert set(created) == {"id", "name", "scope", "key"}
    assert (created["name"], created["scope"]) == ("ci", "write")
    assert len(created["key"]) >= 43, "256 random bits"

    key_file = Layout.at(tmp_path).keys_file
    assert key_file == tmp_path.resolve() / "api" / "keys.json", "where `fabric up`'s api reads keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert created["key"] not in key_file.read_text()
    assert [k.id for k in read_keys(key_file)] == [created["id"]]


def test_create_without_json_prints_only_the_secret_on_stdout(tmp_path: Path) -> None:
    code, out, err = fabric_keys(tmp_path, "create", "--scope", "read")
    assert code == EXIT_OK
    (stored,) = read_keys(Layout.at(tmp_path).keys_file)
    assert out.strip()
    assert "\n" not in out.strip()
    assert stored.id in err
    assert "only now" in err
    assert stored.name == stored.id


def test_list_shows_every_key_without_secrets(tmp_path: Path) -> None:
    secrets = [json.loads(fabric_keys(tmp_path, "create", "--scope", s, "--json")[1])["key"]
               for s in ("admin", "read")]
    code, out, _ = fabric_keys(tmp_path, "list", "--json")
    assert code == EXIT_OK
    listed = json.loads(out)
    assert [k["scope"] for k in listed] == ["admin", "read"]
    assert all(set(k) == {"id", "name", "scope", "created_at", "revoked_at"} for k in listed)
    code, table, _ = fabric_keys(tmp_path, "list")
    assert code == EXIT_OK
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "NAME", "SCOPE", "CREATED", "REVOKED"]
    assert lines[1].split()[:3] == ["admin", "admin", "admin"], "the admin key is listed first"
    assert len(lines) == 4
    for secret in secrets:
        assert secret not in out
        assert secret not in table


def test_revoke_marks_the_key_revoked_and_unknown_or_admin_ids_fail(tmp_path: Path) -> None:
    created = json.loads(fabric_keys(tmp_path, "create", "--scope", "read", "--json")[1])
    code, out, _ = fabric_keys(tmp_path, "revoke", created["id"])
    assert code == EXIT_OK
    assert created["id"] in out
    (listed,) = json.loads(fabric_keys(tmp_path, "list", "--json")[1])
    assert listed["revoked_at"] is not None
    code, _, err = fabric_keys(tmp_path, "revoke", "no-such-key")
    assert code == 1
    assert "no-such-key" in err
    code, _, err = fabric_keys(tmp_path, "revoke", "admin")
    assert code == 1
    assert "rotate" in err


def test_a_broken_key_file_is_reported_with_exit_1(tmp_path: Path) -> None:
    key_file = Layout.at(tmp_path).keys_file
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not json")
    for argv in (("list",), ("create", "--scope", "read"), ("revoke", "x")):
        code, out, err = fabric_keys(tmp_path, *argv)
        assert (code, out) == (1, ""), argv
        assert str(key_file) in err


def test_the_key_file_can_be_named_by_flag_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_flag = tmp_path / "flag.json"
    assert fabric_keys(tmp_path, "create", "--scope", "read", "--keys-file", str(by_flag))[0] == 0
    by_env = tmp_path / "env.json"
    monkeypatch.setenv("FABRIC_API_KEYS_FILE", str(by_env))
    assert fabric_keys(tmp_path, "create", "--scope", "read")[0] == 0
    assert len(read_keys(by_flag)) == 1
    assert len(read_keys(by_env)) == 1
    assert not Layout.at(tmp_path).keys_file.exists()


@pytest.mark.parametrize(
    "argv",
    [["create"], ["create", "--scope", "root"], ["create", "--scope", "read", "--name", ""],
     ["create", "--scope", "read", "--name", "tab\there"], ["revoke"]],
    ids=["no scope", "unknown scope", "empty name", "control character", "no id"],
)
def test_bad_keys_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["keys", *argv])
    assert exc.value.code == EXIT_USAGE
