"""Which API the operator tool talks to, and with which key.

URL: `--url`, else `FABRIC_URL`, else the `api` of `STATE_DIR/endpoints.json`,
else http://127.0.0.1:8080. Key: `--key`, else `FABRIC_API_KEY`, else
`FABRIC_ADMIN_KEY`, else `STATE_DIR/admin.key`. State dir: `--state-dir`, else
`FABRIC_STATE_DIR`, else `.fabric` (relative paths: see `layout.from_caller`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from actors.up.layout import Layout, from_caller, read_admin_key, read_endpoints

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_STATE_DIR = ".fabric"


def state_dir(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    given = flag or env.get("FABRIC_STATE_DIR")
    return str(from_caller(given, env)) if given else DEFAULT_STATE_DIR


def api_url(flag: str | None, layout: Layout, env: Mapping[str, str] = os.environ) -> str:
    if flag:
        return flag
    if env.get("FABRIC_URL"):
        return env["FABRIC_URL"]
    endpoints = read_endpoints(layout)
    if endpoints is not None and isinstance(endpoints.get("api"), str):
        return str(endpoints["api"])
    return DEFAULT_URL


def api_key(flag: str | None, layout: Layout, env: Mapping[str, str] = os.environ) -> str | None:
    return (
        flag
        or env.get("FABRIC_API_KEY")
        or env.get("FABRIC_ADMIN_KEY")
        or read_admin_key(layout)
    )
