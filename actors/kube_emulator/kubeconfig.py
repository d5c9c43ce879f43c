"""The emulator's credentials and the kubeconfig it writes for kubectl and kubernetes-asyncio.

The token is `--token` if given, else generated once and kept in DATA_DIR/token (0600), so
a restart keeps every kubeconfig valid. The kubeconfig is replaced atomically.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from actors.runtime.files import write_atomic


def ensure_token(data_dir: Path, given: str | None) -> str:
    if given:
        return given
    path = data_dir / "token"
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def render(server: str, token: str, name: str, ca_pem: bytes | None = None) -> str:
    cluster: dict[str, object] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }
    return str(yaml.safe_dump(doc, sort_keys=False))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode=0o600)
