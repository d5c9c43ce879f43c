"""Param validation is the published schema itself, and the schemas agree with the account rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from actors.api.params import InvalidParams, Param, Signature, check, python_pattern
from core.rules import (
    EMAIL_SCHEMA,
    NAME_SCHEMA,
    SLUG_SCHEMA,
    check_email,
    check_name,
    check_slug,
    derive_slug,
)


def test_a_dollar_matches_only_at_the_very_end_as_in_ecma_262() -> None:
    assert python_pattern("^a$").search("a\n") is None
    assert python_pattern("^a$").search("a") is not None
    assert python_pattern("^[$]$").search("$") is not None, "a $ in a class is a character"
    assert python_pattern(r"^\$$").search("$") is not None, "an escaped $ is a character"


def test_a_string_schema_without_a_pattern_refuses_nul_in_the_document_too() -> None:
    param = Param("label", {"type": "string", "maxLength": 5})
    assert param.schema["pattern"] == "^[^\\u0000]*$"
    assert check("a\x00", param.schema) == "must not contain NUL"
    assert check("ab", param.schema) is None


def test_a_schema_keyword_the_checker_does_not_enforce_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="multipleOf"):
        Param("n", {"type": "integer", "multipleOf": 2})


@pytest.mark.parametrize(
    ("value", "schema", "problem"),
    [
        (True, {"type": "integer"}, "must be an integer"),
        (2.0, {"type": "integer"}, None),
        (2.5, {"type": "integer"}, "must be an integer"),
        (None, {"type": ["string", "null"]}, None),
        (5, {"type": ["string", "null"]}, "must be a string or a null"),
        (0, {"type": "number", "minimum": 1}, "must be at least 1"),
        (61, {"type": "number", "maximum": 60}, "must be at most 60"),
        (1, {"enum": [True]}, "must be one of [True]"),
        ("kube-x", SLUG_SCHEMA, f"must be {SLUG_SCHEMA['description']}"),
    ],
)
def test_check_applies_each_keyword(value: Any, schema: dict[str, Any], problem: str | None) -> None:
    assert check(value, schema) == problem


def test_a_constraint_on_the_whole_params_names_the_params_it_speaks_of() -> None:
    signature = Signature(
        (Param("id", {"type": "string"}, required=False), Param("slug", {"type": "string"}, required=False)),
        constraint={"oneOf": [{"required": ["id"]}, {"required": ["slug"]}],
                    "description": "given as exactly one of id or slug"},
    )
    assert signature.bind({"id": "x"}) == {"id": "x"}
    for bad in ({}, {"id": "x", "slug": "y"}):
        with pytest.raises(InvalidParams) as caught:
            signature.bind(bad)
        assert caught.value.fields == {
            "id": "must be given as exactly one of id or slug",
            "slug": "must be given as exactly one of id or slug",
        }


def test_an_integral_float_binds_as_an_integer() -> None:
    bound = Signature((Param("limit", {"type": "integer"}),)).bind({"limit": 2.0})
    assert bound == {"limit": 2}
    assert type(bound["limit"]) is int


# The JSON Schemas published in the OpenRPC document and the rule functions must agree on
# every input: the API validates with the schemas, the domain and daemons with the functions.
_ODD = st.sampled_from(["", " ", "\t", "\n", "\x00", "\x85", "\u3000", "a", "Z", "-", "@", ".",
                        "kube-", "default", "é", "日", "\U0001f600", "\u2028", "x" * 60])
_TEXT = st.one_of(st.text(max_size=80), st.lists(_ODD, max_size=8).map("".join))


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(_TEXT, from_schema(NAME_SCHEMA)))
def test_the_name_schema_and_check_name_agree(name: str) -> None:
    assert (check(name, NAME_SCHEMA) is None) == (check_name(name) is None), repr(name)


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(_TEXT, from_schema(EMAIL_SCHEMA), st.emails()))
def test_the_email_schema_and_check_email_agree(email: str) -> None:
    assert (check(email, EMAIL_SCHEMA) is None) == (check_email(email) is None), repr(email)


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(_TEXT, from_schema(SLUG_SCHEMA), st.from_regex(r"[a-z0-9-]{1,45}", fullmatch=True)))
def test_the_slug_schema_and_check_slug_agree(slug: str) -> None:
    assert (check(slug, SLUG_SCHEMA) is None) == (check_slug(slug) is None), repr(slug)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=80))
def test_every_name_derives_a_slug_the_slug_schema_accepts(name: str) -> None:
    assert check(derive_slug(name), SLUG_SCHEMA) is None
