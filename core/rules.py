"""Account rules: what a valid name, email, slug and namespace are.

The API validates with these before anything is written, and each daemon
validates again before it touches its cluster (defence in depth: a bad event
must never make a daemon act on `kube-system`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

NAME_MAX = 64
EMAIL_MAX = 254
SLUG_MAX = 40
NAMESPACE_PREFIX = "acc-"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_DOMAIN = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_RESERVED_SLUGS = frozenset({"default", "system", "public", "node-lease"})


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
    local, sep, domain = email.rpartition("@")
    if (
        not sep
        or len(local) > 64
        or not _EMAIL_LOCAL.fullmatch(local)
        or not _EMAIL_DOMAIN.fullmatch(domain)
    ):
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
    if slug in _RESERVED_SLUGS or slug.startswith("kube-"):
        return RuleViolation("slug", "is reserved")
    return None


def derive_slug(name: str) -> str:
    """A DNS-1123 slug from a free-text name: ASCII-folded, lowercased, '-' for runs of others."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:SLUG_MAX].rstrip("-")


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
        slug = derive_slug(name) or None
        if slug is None:
            violations.append(RuleViolation("slug", "cannot be derived from name; give one explicitly"))
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
