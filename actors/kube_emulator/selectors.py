"""Label and field selectors: parse once (400 BadRequest on bad syntax), then match objects.

Label selectors support `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
`k>n`, `k<n`, comma-separated (AND). Field selectors support `=`, `==`, `!=` on
`metadata.name`, `metadata.namespace`, `status.phase` (namespaces) and legacy `name`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from actors.kube_emulator.errors import ApiError, bad_request

JSON = dict[str, Any]
Op = Literal["=", "!=", "in", "notin", "exists", "!", ">", "<"]

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[A-Za-z0-9_./\-]+)")
_FIELDS = {"metadata.name", "metadata.namespace", "status.phase", "name"}


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case ">" | "<":
                try:
                    have, want = int(value or ""), int(self.values[0])
                except ValueError:
                    return False
                return have > want if self.op == ">" else have < want


@dataclass(frozen=True, slots=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise bad_request(f"unable to parse requirement: found '{text[pos:].strip()}', "
                              "expected: identifier")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


def _fail(found: str, expected: str) -> ApiError:
    return bad_request(f"unable to parse requirement: found '{found}', expected: {expected}")


def _is_ident(tok: str) -> bool:
    return tok not in ("!=", "==", "=", "!", "(", ")", ",", ">", "<")


def parse_label_selector(text: str | None) -> Selector:
    if not text or not text.strip():
        return Selector()
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(toks):
            raise _fail("", "identifier")
        i += 1
        return toks[i - 1]

    while i < len(toks):
        tok = take()
        if tok == "!":
            key = take()
            if not _is_ident(key):
                raise _fail(key, "identifier")
            reqs.append(Requirement(key, "!"))
        elif not _is_ident(tok):
            raise _fail(tok, "identifier")
        elif i >= len(toks) or toks[i] == ",":
            reqs.append(Requirement(tok, "exists"))
        else:
            op = take()
            if op in ("=", "==", "!="):
                value = toks[i] if i < len(toks) and _is_ident(toks[i]) else ""
                if value:
                    i += 1
                reqs.append(Requirement(tok, "!=" if op == "!=" else "=", (value,)))
            elif op in (">", "<"):
                value = take()
                if not value.lstrip("-").isdigit():
                    raise bad_request(f"unable to parse requirement: for 'gt', 'lt' operators, "
                                      f"the value must be an integer: {value}")
                reqs.append(Requirement(tok, op, (value,)))  # type: ignore[arg-type]
            elif op in ("in", "notin"):
                if take() != "(":
                    raise _fail(toks[i - 1], "'('")
                values: list[str] = []
                while True:
                    v = take()
                    if v == ")":
                        break
                    if v == ",":
                        continue
                    if not _is_ident(v):
                        raise _fail(v, "identifier")
                    values.append(v)
                reqs.append(Requirement(tok, op, tuple(values)))  # type: ignore[arg-type]
            else:
                raise _fail(op, "'=', '!=', '==', 'in', notin'")
        if i < len(toks):
            if toks[i] != ",":
                raise _fail(toks[i], "','")
            i += 1
    return Selector(tuple(reqs))


@dataclass(frozen=True, slots=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (field, equal?, value)

    def matches(self, obj: JSON) -> bool:
        return all((field_value(obj, field) == value) == equal for field, equal, value in self.terms)


def field_value(obj: JSON, field: str) -> str:
    meta = obj.get("metadata") or {}
    match field:
        case "metadata.name" | "name":
            return str(meta.get("name", ""))
        case "metadata.namespace":
            return str(meta.get("namespace", ""))
        case "status.phase":
            return str((obj.get("status") or {}).get("phase", ""))
    return ""


def parse_field_selector(text: str | None) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    terms = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if m is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.groups()
        if field not in _FIELDS:
            raise bad_request(f'field label not supported: {field}')
        terms.append((field, op != "!=", value))
    return FieldSelector(tuple(terms))
