"""Method parameter declarations: one table entry validates a call and documents it.

A `Param` holds a JSON Schema; `Signature.bind` checks a call's params
against exactly those schemas and names every bad field, and the same schemas
go verbatim into the OpenRPC document, so what the document allows is what
the server accepts: one definition, no drift. The keywords understood here
are the ones our schemas use: `type` (or a list of types), `minLength`,
`maxLength`, `pattern` (anchored ECMA-262 patterns, read with ECMA's `$`:
only at the very end), `enum`, `const`, `minimum`, `maximum`, `not`, `anyOf`,
and on an object `required` and `oneOf`; `format` and `description` are
annotations (each formatted string also has a pattern saying the same). A
schema using a keyword outside that set is refused when it is declared.

A string schema without a pattern gets one that refuses NUL (PostgreSQL
cannot store it), so that rule is in the document too. Lone surrogates are
refused in every string; they are not Unicode text, so no generator of valid
JSON text produces them.

A `Signature` may also carry a `constraint` on the params as a whole (a JSON
Schema over the params object, e.g. "exactly one of id or slug"); it is
checked after the single params and published as the method's
`x-params-constraint`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ParamStructure = Literal["by-name", "by-position", "either"]

NO_NUL_PATTERN = r"^[^\u0000]*$"
_ANNOTATIONS = frozenset({"description", "format", "title", "default", "examples"})
_KEYWORDS = frozenset({
    "type", "minLength", "maxLength", "pattern", "enum", "const", "minimum", "maximum", "not",
    "anyOf", "required", "oneOf", "items",
}) | _ANNOTATIONS


def _normalized(schema: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise ValueError(f"schema keywords {sorted(unknown)} are not enforced by params.check")
    out = dict(schema)
    kinds = out.get("type")
    if (kinds == "string" or (isinstance(kinds, list) and "string" in kinds)) and "pattern" not in out:
        out["pattern"] = NO_NUL_PATTERN
    for key in ("not", "items"):
        if key in out:
            out[key] = _normalized(out[key])
    for key in ("anyOf", "oneOf"):
        if key in out:
            out[key] = [_normalized(s) for s in out[key]]
    return out


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: Mapping[str, Any]
    required: bool = True
    description: str = ""

    checker: Checker = field(init=False, repr=False, compare=False)
    integer: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", _normalized(self.schema))
        object.__setattr__(self, "checker", compile_check(self.schema))
        object.__setattr__(self, "integer", self.schema.get("type") == "integer")


class InvalidParams(Exception):
    """-32602: `fields` maps each bad param name to what is wrong with it."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = dict(fields)


@dataclass(frozen=True, slots=True)
class Signature:
    params: tuple[Param, ...] = ()
    structure: ParamStructure = "by-name"
    constraint: Mapping[str, Any] | None = None  # on the params object as a whole
    names: frozenset[str] = field(init=False)
    constraint_checker: Checker | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(p.name for p in self.params))
        checker = None
        if self.constraint is not None:
            object.__setattr__(self, "constraint", _normalized(self.constraint))
            checker = compile_check(self.constraint)
        object.__setattr__(self, "constraint_checker", checker)

    def bind(self, raw: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
        """Return the params by name, or raise InvalidParams naming each bad field."""
        if raw is None:
            raw = {}
        if isinstance(raw, list):
            if self.structure == "by-name":
                if not raw:
                    raw = {}
                else:
                    raise InvalidParams({"params": "must be an object of named params"})
            else:
                if len(raw) > len(self.params):
                    raise InvalidParams({"params": f"takes at most {len(self.params)} params"})
                raw = {p.name: v for p, v in zip(self.params, raw, strict=False)}
        elif self.structure == "by-position":
            raise InvalidParams({"params": "must be an array of positional params"})
        errors: dict[str, str] = {}
        if not self.names.issuperset(raw):
            for name in sorted(set(raw) - self.names):
                errors[_safe(name)] = "unknown param"
        for param in self.params:
            if param.name not in raw:
                if param.required:
                    errors[param.name] = "is required"
                continue
            problem = param.checker(raw[param.name])
            if problem is not None:
                errors[param.name] = problem
            elif param.integer and isinstance(raw[param.name], float):
                raw = {**raw, param.name: int(raw[param.name])}  # 2.0 is the integer 2 in JSON
        if not errors and self.constraint is not None and self.constraint_checker is not None:
            problem = self.constraint_checker(raw)
            if problem is not None:
                errors.update(dict.fromkeys(_named(self.constraint), problem))
        if errors:
            raise InvalidParams(errors)
        return dict(raw)


def _named(schema: Mapping[str, Any]) -> list[str]:
    """The params a constraint speaks of (its `required` lists, at any depth)."""
    names: list[str] = list(schema.get("required", []))
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key, []):
            names += [n for n in _named(sub) if n not in names]
    return names or ["params"]


def _safe(name: str) -> str:
    """A param name as we may echo it: printable, short."""
    clean = "".join(ch if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF else "?" for ch in name)
    return clean[:64]


_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")  # one C scan, not a loop per character


def check_string(value: str) -> str | None:
    bad = _BAD_CHARACTER.search(value)
    if bad is None:
        return None
    return "must not contain NUL" if bad.group() == "\x00" else "must not contain lone surrogates"


@functools.lru_cache(maxsize=256)
def python_pattern(pattern: str) -> re.Pattern[str]:
    """An ECMA-262 pattern as Python reads it: a bare `$` matches only at the very end.

    (Python's `$` also matches before a final newline, which would let "slug\\n" through.)
    """
    out: list[str] = []
    escaped = in_class = False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "$":
            out.append(r"\Z")
            continue
        out.append(ch)
    return re.compile("".join(out))


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,), "null": (type(None),),
}


def _of_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])


def _described(schema: Mapping[str, Any], fallback: str) -> str:
    description = schema.get("description")
    return f"must be {description}" if description else fallback


Checker = Callable[[Any], str | None]


def check(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Check a value against a schema (the keywords listed above); return the problem or None."""
    return compile_check(schema)(value)


def compile_check(schema: Mapping[str, Any]) -> Checker:
    """The schema as one function: the keywords it uses, in a fixed order, decided once.

    `Param` and `Signature` compile theirs when declared, so a call's params cost a few
    calls each instead of a walk over every keyword the checker knows.
    """
    steps: list[Checker] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = tuple(kind) if isinstance(kind, list) else (kind,)
        wrong_type = "must be " + " or ".join("an integer" if k == "integer" else f"a {k}" for k in kinds)
        if kinds == ("string",):
            steps.append(lambda v: None if isinstance(v, str) else wrong_type)
        else:
            steps.append(lambda v: None if any(_of_type(v, k) for k in kinds) else wrong_type)
    steps.append(_text_checker(schema))
    steps.extend(_number_checkers(schema))
    if "enum" in schema:
        allowed, not_allowed = list(schema["enum"]), f"must be one of {list(schema['enum'])}"
        steps.append(lambda v: None if any(_same(v, e) for e in allowed) else not_allowed)
    if "const" in schema:
        const, not_const = schema["const"], f"must be {schema['const']!r}"
        steps.append(lambda v: None if _same(v, const) else not_const)
    if "items" in schema:
        item = compile_check(schema["items"])

        def items(v: Any) -> str | None:
            if isinstance(v, list):
                for element in v:
                    problem = item(element)
                    if problem is not None:
                        return f"items {problem}"
            return None

        steps.append(items)
    steps.extend(_object_checkers(schema))
    if "anyOf" in schema:
        any_of = [compile_check(sub) for sub in schema["anyOf"]]
        none_matched = _described(schema, "must match one of its alternatives")
        steps.append(lambda v: none_matched if all(c(v) is not None for c in any_of) else None)
    if "not" in schema:
        negated, matched = compile_check(schema["not"]), _described(schema, "is not allowed")
        steps.append(lambda v: matched if negated(v) is None else None)
    chain = tuple(steps)

    def checked(value: Any) -> str | None:
        for step in chain:
            problem = step(value)
            if problem is not None:
                return problem
        return None

    return checked


def _text_checker(schema: Mapping[str, Any]) -> Checker:
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    pattern = python_pattern(schema["pattern"]) if "pattern" in schema else None
    mismatch = _described(schema, f"must match {schema.get('pattern')}")

    def text(value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        bad = check_string(value)
        if bad is not None:
            return bad
        if shortest is not None and len(value) < shortest:
            return f"must be at least {shortest} characters"
        if longest is not None and len(value) > longest:
            return f"must be at most {longest} characters"
        if pattern is not None and pattern.search(value) is None:
            return mismatch
        return None

    return text


def _number_checkers(schema: Mapping[str, Any]) -> list[Checker]:
    def numeric(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    steps: list[Checker] = []
    if "minimum" in schema:
        low, too_low = schema["minimum"], f"must be at least {schema['minimum']}"
        steps.append(lambda v: too_low if numeric(v) and v < low else None)
    if "maximum" in schema:
        high, too_high = schema["maximum"], f"must be at most {schema['maximum']}"
        steps.append(lambda v: too_high if numeric(v) and v > high else None)
    return steps


def _object_checkers(schema: Mapping[str, Any]) -> list[Checker]:
    steps: list[Checker] = []
    required = list(schema.get("required", []))
    if required:

        def present(v: Any) -> str | None:
            if not isinstance(v, dict):
                return None
            missing = [name for name in required if name not in v]
            return _described(schema, f"needs {', '.join(missing)}") if missing else None

        steps.append(present)
    if "oneOf" in schema:
        matches = [_matcher(sub) for sub in schema["oneOf"]]
        not_one = _described(schema, "must match exactly one of its alternatives")

        def exactly_one(v: Any) -> str | None:
            if not isinstance(v, dict):
                return None
            matched = 0
            for match in matches:
                if match(v):
                    matched += 1
            return None if matched == 1 else not_one

        steps.append(exactly_one)
    return steps


def _matcher(schema: Mapping[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Whether an object matches `schema`; one that only names members (`id` or `slug`) is
    a set inclusion, not a compiled checker."""
    if set(schema) <= {"required", "description"}:
        return frozenset(schema.get("required", ())).issubset
    check = compile_check(schema)
    return lambda v: check(v) is None


def _same(value: Any, expected: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return value == expected
    return type(value) is type(expected) and bool(value == expected)


def params_schema(params: Sequence[Param]) -> list[dict[str, Any]]:
    """OpenRPC Content Descriptors for the params."""
    return [
        {
            "name": p.name,
            "required": p.required,
            "schema": dict(p.schema),
            **({"description": p.description} if p.description else {}),
        }
        for p in params
    ]
