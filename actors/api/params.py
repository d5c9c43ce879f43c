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
from collections.abc import Mapping, Sequence
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", _normalized(self.schema))


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(p.name for p in self.params))
        if self.constraint is not None:
            object.__setattr__(self, "constraint", _normalized(self.constraint))

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
        for name in sorted(set(raw) - self.names):
            errors[_safe(name)] = "unknown param"
        for param in self.params:
            if param.name not in raw:
                if param.required:
                    errors[param.name] = "is required"
                continue
            problem = check(raw[param.name], param.schema)
            if problem is not None:
                errors[param.name] = problem
            elif param.schema.get("type") == "integer" and isinstance(raw[param.name], float):
                raw = {**raw, param.name: int(raw[param.name])}  # 2.0 is the integer 2 in JSON
        if not errors and self.constraint is not None:
            problem = check(raw, self.constraint)
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


def check_string(value: str) -> str | None:
    for ch in value:
        if ch == "\x00":
            return "must not contain NUL"
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return "must not contain lone surrogates"
    return None


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


def check(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Check a value against a schema (the keywords listed above); return the problem or None."""
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_of_type(value, k) for k in kinds):
            names = " or ".join("an integer" if k == "integer" else f"a {k}" for k in kinds)
            return f"must be {names}"
    if isinstance(value, str):
        problem = _check_text(value, schema)
        if problem is not None:
            return problem
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"must be at most {schema['maximum']}"
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        return f"must be one of {list(schema['enum'])}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"must be {schema['const']!r}"
    if isinstance(value, list) and "items" in schema:
        for item in value:
            problem = check(item, schema["items"])
            if problem is not None:
                return f"items {problem}"
    if isinstance(value, dict):
        missing = [name for name in schema.get("required", []) if name not in value]
        if missing:
            return _described(schema, f"needs {', '.join(missing)}")
        if "oneOf" in schema and sum(check(value, s) is None for s in schema["oneOf"]) != 1:
            return _described(schema, "must match exactly one of its alternatives")
    if "anyOf" in schema and all(check(value, s) is not None for s in schema["anyOf"]):
        return _described(schema, "must match one of its alternatives")
    if "not" in schema and check(value, schema["not"]) is None:
        return _described(schema, "is not allowed")
    return None


def _check_text(value: str, schema: Mapping[str, Any]) -> str | None:
    bad = check_string(value)
    if bad is not None:
        return bad
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"must be at least {schema['minLength']} characters"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"must be at most {schema['maxLength']} characters"
    if "pattern" in schema and python_pattern(schema["pattern"]).search(value) is None:
        return _described(schema, f"must match {schema['pattern']}")
    return None


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
