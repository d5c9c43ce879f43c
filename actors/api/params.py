"""Method parameter declarations: one table entry validates a call and documents it.

A `Param` holds a small JSON Schema (type, lengths, bounds, enum); `bind`
checks a call's params against the declaration and names every bad field, and
the same schema goes verbatim into the OpenRPC document, so the checks and the
documentation cannot drift apart. Every string is also checked for NUL and
lone surrogates, which PostgreSQL and UTF-8 encoders refuse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ParamStructure = Literal["by-name", "by-position", "either"]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: Mapping[str, Any]
    required: bool = True
    description: str = ""


class InvalidParams(Exception):
    """-32602: `fields` maps each bad param name to what is wrong with it."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = dict(fields)


@dataclass(frozen=True, slots=True)
class Signature:
    params: tuple[Param, ...] = ()
    structure: ParamStructure = "by-name"
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(p.name for p in self.params))

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
        if errors:
            raise InvalidParams(errors)
        return dict(raw)


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


def check(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Check a value against our JSON Schema subset; return the problem or None."""
    kind = schema.get("type")
    if kind == "string":
        if not isinstance(value, str):
            return "must be a string"
        bad = check_string(value)
        if bad is not None:
            return bad
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"must be at least {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"must be at most {schema['maxLength']} characters"
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
    elif kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "must be a number"
    elif kind == "array":
        if not isinstance(value, list):
            return "must be an array"
        items = schema.get("items")
        if items is not None:
            for item in value:
                problem = check(item, items)
                if problem is not None:
                    return f"items {problem}"
    elif kind == "object":
        if not isinstance(value, dict):
            return "must be an object"
    elif isinstance(kind, list):
        if value is None and "null" in kind:
            return None
        return check(value, {**schema, "type": next(k for k in kind if k != "null")})
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"must be at most {schema['maximum']}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {list(schema['enum'])}"
    return None


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
