"""Decode the Kubernetes protobuf envelope for the bodies kubectl >= 1.32 sends as protobuf.

`kubectl create namespace|serviceaccount|quota|role|rolebinding` encode the object as
`application/vnd.kubernetes.protobuf`: the magic `k8s\\x00`, then a `runtime.Unknown`
(1: TypeMeta{1 apiVersion, 2 kind}, 2: raw object bytes). This module reads the protobuf
wire format for the fields those generators set and returns the object as JSON; answers go
back as JSON (the client also accepts it). Anything else raises `ProtobufError` (-> 415/400).
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
MAGIC = b"k8s\x00"

# field number -> (json name, kind, repeated). kind: "string", "bool", "int", a nested schema
# dict, "map" (string->string) or "quantities" (string->Quantity{1: string}).
Schema = dict[int, tuple[str, Any, bool]]

_OBJECT_META: Schema = {
    1: ("name", "string", False), 2: ("generateName", "string", False),
    3: ("namespace", "string", False), 11: ("labels", "map", False),
    12: ("annotations", "map", False), 14: ("finalizers", "string", True),
}
_LABEL_SELECTOR: Schema = {1: ("matchLabels", "map", False)}
_SCOPE_SELECTOR: Schema = {1: ("matchExpressions", {1: ("scopeName", "string", False),
                                                    2: ("operator", "string", False),
                                                    3: ("values", "string", True)}, True)}
_KINDS: dict[str, Schema] = {
    "Namespace": {1: ("metadata", _OBJECT_META, False),
                  2: ("spec", {1: ("finalizers", "string", True)}, False)},
    "ServiceAccount": {1: ("metadata", _OBJECT_META, False),
                       4: ("automountServiceAccountToken", "bool", False)},
    "ResourceQuota": {1: ("metadata", _OBJECT_META, False),
                      2: ("spec", {1: ("hard", "quantities", False),
                                   2: ("scopes", "string", True),
                                   3: ("scopeSelector", _SCOPE_SELECTOR, False)}, False)},
    "Role": {1: ("metadata", _OBJECT_META, False),
             2: ("rules", {1: ("verbs", "string", True), 2: ("apiGroups", "string", True),
                           3: ("resources", "string", True),
                           4: ("resourceNames", "string", True),
                           5: ("nonResourceURLs", "string", True)}, True)},
    "RoleBinding": {1: ("metadata", _OBJECT_META, False),
                    2: ("subjects", {1: ("kind", "string", False),
                                     2: ("apiGroup", "string", False),
                                     3: ("name", "string", False),
                                     4: ("namespace", "string", False)}, True),
                    3: ("roleRef", {1: ("apiGroup", "string", False),
                                    2: ("kind", "string", False),
                                    3: ("name", "string", False)}, False)},
}
_ENVELOPE: Schema = {1: ("typeMeta", {1: ("apiVersion", "string", False),
                                      2: ("kind", "string", False)}, False),
                     2: ("raw", "bytes", False)}


class ProtobufError(ValueError):
    """The body is not a protobuf envelope this emulator can read."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a length-delimited field")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise ProtobufError("invalid UTF-8 in a string field")


def _decode(data: bytes, schema: Schema) -> JSON:
    out: JSON = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind, repeated = schema[number]
        decoded: Any
        if kind == "string":
            decoded = _text(value)
            if not decoded and not repeated:
                continue  # proto2 writes empty strings; JSON would have omitted them
        elif kind == "bytes":
            decoded = value
        elif kind == "bool":
            decoded = bool(value)
        elif kind in ("map", "quantities"):
            if not isinstance(value, bytes):
                raise ProtobufError("expected a map entry")
            entry = dict(_fields(value))
            raw = entry.get(2, b"")
            if kind == "quantities":
                raw = dict(_fields(raw if isinstance(raw, bytes) else b"")).get(1, b"")
            out.setdefault(name, {})[_text(entry.get(1, b""))] = _text(raw)
            continue
        else:
            if not isinstance(value, bytes):
                raise ProtobufError("expected a nested message")
            decoded = _decode(value, kind)
        if repeated:
            out.setdefault(name, []).append(decoded)
        else:
            out[name] = decoded
    return out


def decode(body: bytes) -> JSON:
    """The object in a `k8s\\x00` envelope, as the JSON the API would have received."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    envelope = _decode(body[len(MAGIC):], _ENVELOPE)
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    schema = _KINDS.get(kind)
    if schema is None:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported; send JSON")
    obj = _decode(envelope.get("raw", b""), schema)
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}
