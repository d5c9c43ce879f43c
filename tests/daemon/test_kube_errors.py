"""How Kubernetes API failures are classified: already exists, temporary, permanent."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio.client.rest import ApiException

from actors.daemon.kube import _NotFound, _translate
from core.tenancy import (
    AlreadyExists,
    NamespaceTerminating,
    ObjectRef,
    PermanentKubeError,
    TemporaryKubeError,
)

NS = ObjectRef("Namespace", "acc-a")
QUOTA = ObjectRef("ResourceQuota", "tenant-quota", "acc-a")


def api_error(status: int, reason: str, message: str = "", causes: list[str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="HTTP phrase")
    details = {"causes": [{"reason": c} for c in causes or []]}
    exc.body = json.dumps(
        {"kind": "Status", "status": "Failure", "reason": reason, "message": message,
         "details": details, "code": status}
    ).encode()
    return exc


@pytest.mark.parametrize(
    ("exc", "method", "ref", "kind"),
    [
        (api_error(409, "AlreadyExists", 'namespaces "acc-a" already exists'), "POST", NS,
         AlreadyExists),
        (api_error(409, "AlreadyExists", 'object is being deleted: namespaces "acc-a" already exists'),
         "POST", NS, NamespaceTerminating),
        (api_error(409, "Conflict", "the object has been modified"), "PATCH", NS, TemporaryKubeError),
        (api_error(500, "InternalError"), "POST", NS, TemporaryKubeError),
        (api_error(503, "ServiceUnavailable"), "GET", NS, TemporaryKubeError),
        (api_error(429, "TooManyRequests"), "POST", NS, TemporaryKubeError),
        (api_error(403, "Forbidden", "unable to create new content in namespace acc-a because it "
                   "is being terminated", ["NamespaceTerminating"]), "POST", QUOTA,
         NamespaceTerminating),
        (api_error(404, "NotFound", 'namespaces "acc-a" not found'), "POST", QUOTA,
         TemporaryKubeError),
        (api_error(403, "Forbidden", "namespaces is forbidden: User cannot create"), "POST", NS,
         PermanentKubeError),
        (api_error(422, "Invalid", "Namespace is invalid"), "POST", NS, PermanentKubeError),
        (api_error(401, "Unauthorized", "Unauthorized"), "GET", NS, PermanentKubeError),
        (api_error(404, "NotFound", 'namespaces "acc-a" not found'), "GET", NS, _NotFound),
        (api_error(404, "NotFound", 'namespaces "acc-a" not found'), "DELETE", NS, _NotFound),
        (api_error(404, "NotFound", 'namespaces "acc-a" not found'), "PATCH", NS,
         TemporaryKubeError),
        (api_error(404, "NotFound", "the server could not find the requested resource"), "POST",
         QUOTA, PermanentKubeError),
    ],
)
def test_api_errors_are_classified(
    exc: ApiException, method: str, ref: ObjectRef, kind: type[Exception]
) -> None:
    assert type(_translate(exc, method, ref)) is kind


def test_a_permanent_error_carries_the_kubernetes_reason_and_message() -> None:
    err = _translate(api_error(403, "Forbidden", "namespaces is forbidden: no"), "POST", NS)
    assert isinstance(err, PermanentKubeError)
    assert err.reason == "403 Forbidden: namespaces is forbidden: no"


def test_a_garbled_error_body_still_classifies_by_status() -> None:
    exc = ApiException(status=502, reason="Bad Gateway")
    exc.body = b"<html>proxy error</html>"
    err = _translate(exc, "POST", NS)
    assert isinstance(err, TemporaryKubeError)
    assert err.reason == "502 Bad Gateway"
