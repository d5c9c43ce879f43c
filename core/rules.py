"""Account rules: what a valid name, email, slug, namespace and cluster name are.

The API validates with these before anything is written, and each daemon
validates again before it touches its cluster (defence in depth: a bad event
must never make a daemon act on `kube-system`).

Each rule is also written as a JSON Schema (`NAME_SCHEMA`, `EMAIL_SCHEMA`,
`SLUG_SCHEMA`, `LABEL_SCHEMA`) whose patterns are ECMA-262 and Python alike:
the API validates its params against these very schemas and publishes them in
its OpenRPC document, so what the document allows is what the rules accept
(tests/core/test_rules.py checks the two agree on generated input). A name
always yields a slug: one that folds to nothing, or to a reserved slug, gets a
derived one that is neither (`derive_slug`), so no printable name is refused
for want of a slug.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from core.plans import PLANS

NAME_MAX = 64
EMAIL_MAX = 254
SLUG_MAX = 40
NAMESPACE_PREFIX = "acc-"
RESERVED_SLUGS = ("default", "system", "public", "node-lease")
RESERVED_PREFIX = "kube-"

# Control characters (Unicode category Cc), and the other characters `str.strip` removes.
_CONTROL = r"\u0000-\u001f\u007f-\u009f"
_BLANK = r"\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NAME_PATTERN = rf"^[^{_CONTROL}]*[^{_CONTROL}{_BLANK}][^{_CONTROL}]*$"
LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
EMAIL_PATTERN = (
    rf"^(?=[^@]{{1,64}}@){_ATOM}(\.{_ATOM})*@([A-Za-z0-9]([-A-Za-z0-9]{{0,61}}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}$"
)

NAME_SCHEMA: dict[str, Any] = {
    "type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": NAME_PATTERN,
    "description": "printable characters (no control characters), not all blank",
}
EMAIL_SCHEMA: dict[str, Any] = {
    "type": "string", "minLength": 3, "maxLength": EMAIL_MAX, "format": "email",
    "pattern": EMAIL_PATTERN,
    "description": "an ASCII address: a dot-atom local part of at most 64 characters, a domain",
}
LABEL_SCHEMA: dict[str, Any] = {
    "type": "string", "minLength": 1, "maxLength": SLUG_MAX, "pattern": LABEL_PATTERN,
    "description": "a DNS-1123 label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
}
SLUG_SCHEMA: dict[str, Any] = {
    **LABEL_SCHEMA,
    "not": {"anyOf": [{"enum": list(RESERVED_SLUGS)}, {"pattern": f"^{RESERVED_PREFIX}"}]},
    "description": f"a DNS-1123 label of at most {SLUG_MAX} characters, not one of "
    f"{', '.join(RESERVED_SLUGS)} and not starting with {RESERVED_PREFIX!r}",
}

PLAN_SCHEMA: dict[str, Any] = {
    "type": "string", "enum": list(PLANS), "description": "one of plan.list's names",
}

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_EMAIL = re.compile(EMAIL_PATTERN.removeprefix("^").removesuffix("$"))


@dataclass(frozen=True, slots=True)
class RuleViolation:
    field: str
    reason: str


class InvalidAccount(ValueError):
    """One or more fields break the rules; `violations` names each."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.reason}" for v in violations))
        self.violations = violations


def check_text(value: str, field: str) -> RuleViolation | None:
    """Reject what PostgreSQL or a terminal cannot take safely: NUL, lone surrogates, controls."""
    for ch in value:
        if ch == "\x00":
            return RuleViolation(field, "must not contain NUL")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return RuleViolation(field, "must not contain lone surrogates")
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return RuleViolation(field, "must contain printable characters only")
    return None


def check_name(name: str) -> RuleViolation | None:
    if not 1 <= len(name) <= NAME_MAX:
        return RuleViolation("name", f"must be 1..{NAME_MAX} characters")
    bad = check_text(name, "name")
    if bad is not None:
        return bad
    if not name.strip():
        return RuleViolation("name", "must not be blank")
    return None


def check_email(email: str) -> RuleViolation | None:
    if not 3 <= len(email) <= EMAIL_MAX or not email.isascii():
        return RuleViolation("owner_email", "must be an ASCII email address of at most 254 chars")
    if _EMAIL.fullmatch(email) is None:
        return RuleViolation("owner_email", "must be a valid email address")
    return None


def is_dns1123_label(value: str, max_len: int = 63) -> bool:
    return value.isascii() and 0 < len(value) <= max_len and _DNS1123_LABEL.fullmatch(value) is not None


def check_slug(slug: str) -> RuleViolation | None:
    if not is_dns1123_label(slug, SLUG_MAX):
        return RuleViolation(
            "slug",
            f"must be a DNS-1123 label of at most {SLUG_MAX} chars: lowercase letters, digits "
            "and '-', starting and ending with a letter or digit",
        )
    if is_reserved(slug):
        return RuleViolation("slug", "is reserved")
    return None


def is_reserved(slug: str) -> bool:
    return slug in RESERVED_SLUGS or slug.startswith(RESERVED_PREFIX)


def check_cluster(name: str) -> RuleViolation | None:
    """A cluster's name (its daemon's `--cluster`): a DNS-1123 label of at most 40 chars."""
    if not is_dns1123_label(name, SLUG_MAX):
        return RuleViolation("cluster", f"must be a DNS-1123 label of at most {SLUG_MAX} chars")
    return None


def check_plan(plan: str) -> RuleViolation | None:
    if plan not in PLANS:
        return RuleViolation("plan", f"must be one of {', '.join(PLANS)}")
    return None


def derive_slug(name: str) -> str:
    """A valid slug from a free-text name: ASCII-folded, lowercased, '-' for runs of others.

    A name that folds to nothing (say, all CJK) gets `a-` and a hash of the name; one that
    folds to a reserved slug gets the `a-` prefix. Either way, a valid slug.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:SLUG_MAX].rstrip("-")
    if not slug:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
        return f"a-{digest[:10]}"
    if is_reserved(slug):
        return f"a-{slug}"[:SLUG_MAX].rstrip("-")
    return slug


def namespace_for(slug: str) -> str:
    return f"{NAMESPACE_PREFIX}{slug}"


def check_namespace(namespace: str) -> RuleViolation | None:
    """What a daemon accepts to create or delete: only `acc-<valid slug>`."""
    if not namespace.startswith(NAMESPACE_PREFIX):
        return RuleViolation("namespace", f"must start with {NAMESPACE_PREFIX!r}")
    bad = check_slug(namespace[len(NAMESPACE_PREFIX) :])
    if bad is not None:
        return RuleViolation("namespace", bad.reason)
    return None


@dataclass(frozen=True, slots=True)
class NewAccount:
    name: str
    owner_email: str
    slug: str
    namespace: str


def validate_new_account(name: str, owner_email: str, slug: str | None) -> NewAccount:
    """Apply every rule at once, so the caller learns about every bad field in one reply."""
    violations = [v for v in (check_name(name), check_email(owner_email)) if v is not None]
    if slug is None and not any(v.field == "name" for v in violations):
        slug = derive_slug(name)
    if slug is not None:
        bad = check_slug(slug)
        if bad is not None:
            violations.append(bad)
    if violations:
        raise InvalidAccount(violations)
    assert slug is not None
    return NewAccount(
        name=name, owner_email=owner_email.lower(), slug=slug, namespace=namespace_for(slug)
    )


@dataclass(frozen=True, slots=True)
class Changes:
    """What an update sets; None keeps the current value."""

    name: str | None
    owner_email: str | None
    plan: str | None


def validate_changes(name: str | None, owner_email: str | None, plan: str | None) -> Changes:
    """Apply the rules to each field an update sets, naming every bad one at once."""
    checks = (
        check_name(name) if name is not None else None,
        check_email(owner_email) if owner_email is not None else None,
        check_plan(plan) if plan is not None else None,
    )
    violations = [v for v in checks if v is not None]
    if violations:
        raise InvalidAccount(violations)
    return Changes(name, owner_email.lower() if owner_email is not None else None, plan)
