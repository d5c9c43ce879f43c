"""Object validation with apimachinery's texts: names, labels, and the shape of metadata.

Each check returns a list of `causes` (`{reason, message, field}`) so several problems are
reported at once, as `field.ErrorList` does; the store turns a non-empty list into 422 Invalid.
"""

from __future__ import annotations

import json
import re
from typing import Any

from actors.kube_emulator.resources import NameRule

JSON = dict[str, Any]

_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE_RE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
    "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def _quote(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def invalid_cause(field: str, value: object, detail: str) -> JSON:
    return {
        "reason": "FieldValueInvalid",
        "message": f"Invalid value: {_quote(value)}: {detail}",
        "field": field,
    }


def required_cause(field: str, detail: str) -> JSON:
    return {"reason": "FieldValueRequired", "message": f"Required value: {detail}", "field": field}


def dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_RE.fullmatch(value):
        if _SUBDOMAIN_RE.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(DNS1123_LABEL_MSG)
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.fullmatch(value):
        errs.append(DNS1123_SUBDOMAIN_MSG)
    return errs


def path_segment(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def check_name(rule: NameRule, name: object) -> list[JSON]:
    if not isinstance(name, str) or name == "":
        return [required_cause("metadata.name", "name or generateName is required")]
    match rule:
        case "label":
            errs = dns1123_label(name)
        case "subdomain":
            errs = dns1123_subdomain(name)
        case "path_segment":
            errs = path_segment(name)
    return [invalid_cause("metadata.name", name, e) for e in errs]


def _label_key(key: str) -> list[str]:
    prefix, sep, name = key.rpartition("/")
    errs: list[str] = []
    if sep and not prefix:
        errs.append("prefix part must be non-empty")
    elif sep:
        errs.extend(f"prefix part {e}" for e in dns1123_subdomain(prefix))
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part must be no more than 63 characters")
        if not _QUALIFIED_NAME_RE.fullmatch(name):
            errs.append(QUALIFIED_NAME_MSG)
    return errs


def check_metadata(meta: object) -> list[JSON]:
    """Labels and annotations must be string maps with valid keys (and label values)."""
    if not isinstance(meta, dict):
        return [invalid_cause("metadata", "", "must be an object")]
    causes: list[JSON] = []
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            return [invalid_cause("metadata.labels", "", "must be a map of strings")]
        for key, value in labels.items():
            causes.extend(invalid_cause("metadata.labels", key, e) for e in _label_key(key))
            if not isinstance(value, str):
                causes.append(invalid_cause("metadata.labels", value, "must be a string"))
                continue
            if len(value) > 63:
                causes.append(invalid_cause("metadata.labels", value,
                                            "must be no more than 63 characters"))
            if not _LABEL_VALUE_RE.fullmatch(value):
                causes.append(invalid_cause("metadata.labels", value, LABEL_VALUE_MSG))
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
            isinstance(v, str) for v in annotations.values()
        ):
            return [*causes, invalid_cause("metadata.annotations", "", "must be a map of strings")]
        for key in annotations:
            causes.extend(invalid_cause("metadata.annotations", key, e) for e in _label_key(key))
    finalizers = meta.get("finalizers")
    if finalizers is not None and not (
        isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)
    ):
        causes.append(invalid_cause("metadata.finalizers", "", "must be a list of strings"))
    return causes


_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
QUANTITY_MSG = ("quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def quantity_maps(kind: str, obj: JSON) -> list[dict[str, Any]]:
    """The resource-quantity maps a kind carries (ResourceQuota hard, LimitRange limits)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    if kind == "ResourceQuota":
        hard = spec.get("hard")
        return [hard] if isinstance(hard, dict) else []
    if kind == "LimitRange" and isinstance(spec.get("limits"), list):
        return [item[key] for item in spec["limits"] if isinstance(item, dict)
                for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")
                if isinstance(item.get(key), dict)]
    return []


def normalize_quantities(kind: str, obj: JSON) -> str | None:
    """Turn numeric quantities into strings in place; the decoder's error text if one is bad."""
    for quantities in quantity_maps(kind, obj):
        for key, value in quantities.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = quantities[key] = str(value)
            if not isinstance(value, str) or not _QUANTITY_RE.match(value):
                return QUANTITY_MSG
    return None
