"""Over TLS the session cookie is also `Secure` (a browser then never sends it in clear text)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiohttp import web

from actors.api.access import Gate
from actors.api.auth import KeyRing
from actors.api.console import Console, ConsoleSettings, Feeds, SessionStore

ADMIN_KEY = "tls-test-admin-key-0123456789abcdef"


def self_signed(directory: Path) -> ssl.SSLContext:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_the_session_cookie_is_secure_when_the_login_came_over_tls(tmp_path: Path) -> None:
    keys = KeyRing(ADMIN_KEY)
    sessions = SessionStore(keys)
    # Login reads no feed: the console is mounted alone, without the API's actors.
    feeds = Feeds(cast(Any, None), cast(Any, None), {})
    console = Console(sessions, Gate(keys, sessions=sessions), feeds, ConsoleSettings(), 1.0)
    runner = web.AppRunner(console.mount(web.Application()), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed(tmp_path))
        await site.start()
        port = runner.addresses[0][1]
        url = f"https://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http, http.post(
            f"{url}/console/login", json={"key": ADMIN_KEY}, headers={"Origin": url}, ssl=False
        ) as response:
            assert response.status == 200, await response.text()
            set_cookie = response.headers["Set-Cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite"} <= attributes, set_cookie
        assert len(sessions) == 1
    finally:
        await runner.cleanup()
