"""Account rules, as the API and every daemon apply them."""

from __future__ import annotations

import pytest

from core.rules import (
    InvalidAccount,
    check_namespace,
    derive_slug,
    is_dns1123_label,
    validate_new_account,
)


def test_slug_is_derived_from_the_name_when_not_given() -> None:
    account = validate_new_account("Acme Corp.", "Owner@Example.com", None)
    assert account.slug == "acme-corp"
    assert account.namespace == "acc-acme-corp"
    assert account.owner_email == "owner@example.com"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Ünïcödé  Straße", "unicode-strae"),
        ("--a--b--", "a-b"),
        ("x" * 80, "x" * 40),
        ("a" * 39 + "-b", "a" * 39),
        ("Default", "a-default"),
        ("kube-system", "a-kube-system"),
        ("kube-" + "x" * 40, "a-kube-" + "x" * 33),
    ],
)
def test_derived_slugs_are_dns1123_labels_of_at_most_40_chars(name: str, slug: str) -> None:
    assert derive_slug(name) == slug
    assert is_dns1123_label(slug, 40)


@pytest.mark.parametrize(
    ("name", "email", "slug", "fields"),
    [
        ("", "a@example.com", None, ["name"]),
        ("x" * 65, "a@example.com", None, ["name"]),
        ("ok\x00", "a@example.com", None, ["name"]),
        ("ok\ud800", "a@example.com", None, ["name"]),
        ("tab\tname", "a@example.com", None, ["name"]),
        ("Acme", "not-an-email", None, ["owner_email"]),
        ("Acme", "a@b", None, ["owner_email"]),
        ("Acme", "ä@example.com", None, ["owner_email"]),
        ("Acme", "a@example.com", "Upper", ["slug"]),
        ("Acme", "a@example.com", "trailing-", ["slug"]),
        ("Acme", "a@example.com", "acc-1\n", ["slug"]),
        ("Acme", "a@example.com", "x" * 41, ["slug"]),
        ("Acme", "a@example.com", "kube-system", ["slug"]),
        ("Acme", "a@example.com", "default", ["slug"]),
        ("Acme", "a@example.com", "", ["slug"]),
        ("", "nope", "BAD", ["name", "owner_email", "slug"]),
    ],
)
def test_invalid_accounts_name_every_bad_field(
    name: str, email: str, slug: str | None, fields: list[str]
) -> None:
    with pytest.raises(InvalidAccount) as caught:
        validate_new_account(name, email, slug)
    assert [v.field for v in caught.value.violations] == fields


@pytest.mark.parametrize(
    "namespace", ["kube-system", "default", "acc-", "acc-Bad", "acc-kube-x", "acc-a\n", "acc-" + "a" * 41]
)
def test_daemons_refuse_namespaces_that_are_not_ours(namespace: str) -> None:
    assert check_namespace(namespace) is not None


def test_daemons_accept_account_namespaces() -> None:
    assert check_namespace("acc-acme-1") is None


def test_a_name_that_folds_to_nothing_gets_a_stable_hashed_slug() -> None:
    slug = derive_slug("日本")
    assert slug.startswith("a-")
    assert slug == derive_slug("日本") != derive_slug("中国")
    assert validate_new_account("日本", "a@example.com", None).namespace == f"acc-{slug}"
