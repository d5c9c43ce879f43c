"""Canonical Kubernetes `Status` errors, as the real API server words them.

`ApiError` carries a ready `Status` body and its HTTP code; handlers raise it and the
server turns it into a JSON response (or a watch ERROR event). Message texts follow
apimachinery's `errors.New*` helpers so clients that parse `reason` and `message` behave
as they would against a real cluster.
"""

from __future__ import annotations

from typing import Any

from actors.kube_emulator.resources import ResourceType

JSON = dict[str, Any]


class ApiError(Exception):
    """An error answered as a `Status` body with `code`."""

    def __init__(
        self, code: int, reason: str, message: str, details: JSON | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(rtype: ResourceType, name: str | None, kind: str | None = None) -> JSON:
    details: JSON = {}
    if name is not None:
        details["name"] = name
    if rtype.group:
        details["group"] = rtype.group
    details["kind"] = kind if kind is not None else rtype.plural
    return details


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rtype.qualified} "{name}" not found', _details(rtype, name))


def namespace_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{name}" not found',
                    {"name": name, "kind": "namespaces"})


def unknown_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(rtype: ResourceType, name: str, *, being_deleted: bool = False) -> ApiError:
    message = f'{rtype.qualified} "{name}" already exists'
    if being_deleted:
        message = f"object is being deleted: {message}"
    return ApiError(409, "AlreadyExists", message, _details(rtype, name))


def conflict(rtype: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        409, "Conflict", f'Operation cannot be fulfilled on {rtype.qualified} "{name}": {why}',
        _details(rtype, name),
    )


def stale(rtype: ResourceType, name: str) -> ApiError:
    return conflict(
        rtype, name,
        "the object has been modified; please apply your changes to the latest version "
        "and try again",
    )


def invalid(rtype: ResourceType, name: str, causes: list[JSON]) -> ApiError:
    texts = [f"{c['field']}: {c['message']}" for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = _details(rtype, name, rtype.kind)
    details["causes"] = causes
    return ApiError(422, "Invalid", f'{rtype.kind} "{name}" is invalid: {joined}', details)


def namespace_terminating(rtype: ResourceType, name: str, namespace: str) -> ApiError:
    details = _details(rtype, name)
    details["causes"] = [{
        "reason": "NamespaceTerminating",
        "message": f"namespace {namespace} is being terminated",
        "field": "metadata.namespace",
    }]
    return ApiError(
        403, "Forbidden",
        f'{rtype.qualified} "{name}" is forbidden: unable to create new content in namespace '
        f"{namespace} because it is being terminated",
        details,
    )


def rbac_forbidden(
    user: str, verb: str, rtype: ResourceType, name: str | None, namespace: str | None
) -> ApiError:
    """What RBAC answers a user without the permission (403 Forbidden)."""
    subject = f'{rtype.qualified} "{name}"' if name else rtype.qualified
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return ApiError(
        403, "Forbidden",
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{rtype.plural}" in API '
        f'group "{rtype.group}" {scope}',
        _details(rtype, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    f"the server does not allow this method on the requested resource ({method})",
                    {})


def unsupported_media(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types '
                    f'include: application/json, application/yaml, '
                    f'application/vnd.kubernetes.protobuf (got "{content_type}")', {})


def expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


def injected(code: int) -> ApiError:
    """The error a fault rule answers with (any code; known ones get their real reason)."""
    reason = _REASONS.get(code, "Unknown")
    messages = {
        429: "Too many requests, please try again later.",
        500: "Internal error occurred: injected fault",
        503: "the server is currently unable to handle the request",
        504: "Timeout: request did not complete within the allowed duration",
    }
    details: JSON = {"retryAfterSeconds": 1} if code == 429 else {}
    return ApiError(code, reason, messages.get(code, f"injected fault ({code})"), details)


def from_http(code: int, text: str) -> ApiError:
    """An HTTP-level refusal (body too large, bad framing) as a Status."""
    return ApiError(code, _REASONS.get(code, "Unknown"), text, {})
