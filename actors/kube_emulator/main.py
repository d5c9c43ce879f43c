"""bin/kube-emulator: a local Kubernetes API server stand-in (development and tests only).

Settings come from flags or FABRIC_KUBE_* environment variables (flags win). It serves
plain http unless --tls; over http, requests without credentials are accepted (kubectl
sends none over http) and a wrong bearer token gets 401. Objects persist under --data-dir;
a restart on the same --listen address resumes them. On start it writes a kubeconfig for
itself to --kubeconfig-out (default DATA_DIR/kubeconfig).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import structlog

from actors.kube_emulator import kubeconfig, tls
from actors.kube_emulator.api import ApiSettings
from actors.kube_emulator.control import Control, FaultRule, parse_fault
from actors.kube_emulator.persistence import CorruptStore, load
from actors.kube_emulator.server import HttpServer, ServerSettings
from actors.kube_emulator.store import Store, StoreSettings
from actors.runtime import ActorSystem, run_until_signalled
from actors.runtime.logging import configure_logging
from actors.runtime.settings import add_logging_flags, host_port, non_negative_float, positive_int

log = structlog.get_logger()


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"FABRIC_KUBE_{name}", default)


def _fault(value: str) -> FaultRule:
    try:
        return parse_fault(json.loads(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad fault rule {value!r}: {exc}")


def _env_faults() -> list[FaultRule]:
    raw = _env("FAULTS")
    if not raw:
        return []
    try:
        rules = json.loads(raw)
        if not isinstance(rules, list):
            raise ValueError("expected a JSON list of rules")
        return [parse_fault(rule) for rule in rules]
    except ValueError as exc:
        print(f"kube-emulator: bad FABRIC_KUBE_FAULTS: {exc}", file=sys.stderr)
        raise SystemExit(2)


def _check_listen(host: str, port: int) -> None:
    """Fail fast, with one line, when the address is taken (rather than crash-loop later)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kube-emulator",
        description="A local stand-in for a Kubernetes API server (namespaces, resourcequotas, "
                    "limitranges, serviceaccounts, networkpolicies, roles, rolebindings).",
    )
    p.add_argument("--data-dir", type=Path, default=_env("DATA_DIR"),
                   help="where objects persist (env FABRIC_KUBE_DATA_DIR; required)")
    p.add_argument("--listen", type=host_port, default=_env("LISTEN", "127.0.0.1:0"),
                   help="HOST:PORT to serve on (env FABRIC_KUBE_LISTEN; default 127.0.0.1:0)")
    p.add_argument("--kubeconfig-out", type=Path, default=_env("KUBECONFIG_OUT"),
                   help="kubeconfig to write (env FABRIC_KUBE_KUBECONFIG_OUT; "
                        "default DATA_DIR/kubeconfig)")
    p.add_argument("--token", default=_env("TOKEN"),
                   help="bearer token (env FABRIC_KUBE_TOKEN; default generated once and kept "
                        "in DATA_DIR/token)")
    p.add_argument("--read-only-token", default=_env("READ_ONLY_TOKEN"),
                   help="a second token that may only read; its writes get 403 Forbidden "
                        "(env FABRIC_KUBE_READ_ONLY_TOKEN)")
    p.add_argument("--cluster-name", default=_env("CLUSTER_NAME", "kube-emulator"),
                   help="cluster/context name in the kubeconfig (env FABRIC_KUBE_CLUSTER_NAME)")
    p.add_argument("--finalize-delay", type=non_negative_float, default=_env("FINALIZE_DELAY", "2"),
                   help="seconds a deleted namespace stays Terminating "
                        "(env FABRIC_KUBE_FINALIZE_DELAY; default 2)")
    p.add_argument("--tls", action="store_true",
                   default=(_env("TLS", "") or "").lower() in ("1", "true", "yes"),
                   help="serve https with a self-signed CA kept in DATA_DIR/tls (env FABRIC_KUBE_TLS)")
    p.add_argument("--version-minor", type=int, default=_env("VERSION_MINOR", "31"),
                   help="minor version /version reports (env FABRIC_KUBE_VERSION_MINOR; "
                        "default 31, which the kubectl dispatcher maps to a JSON-speaking kubectl)")
    p.add_argument("--watch-max-seconds", type=non_negative_float, default=_env("WATCH_MAX_SECONDS", "1800"),
                   help="longest a watch stays open (env FABRIC_KUBE_WATCH_MAX_SECONDS)")
    p.add_argument("--bookmark-interval", type=non_negative_float,
                   default=_env("BOOKMARK_INTERVAL", "60"),
                   help="seconds between watch BOOKMARKs (env FABRIC_KUBE_BOOKMARK_INTERVAL)")
    p.add_argument("--history", type=positive_int, default=_env("HISTORY", "1000"),
                   help="watch events kept for resuming; older versions get 410 Expired "
                        "(env FABRIC_KUBE_HISTORY)")
    p.add_argument("--fault", type=_fault, action="append", default=_env_faults(),
                   help='a fault rule active from the start, as JSON (repeatable; env '
                        'FABRIC_KUBE_FAULTS holds a JSON list), e.g. '
                        '\'{"mode": "error500", "count": 3, "match": {"method": "POST"}}\'')
    p.add_argument("--compact-after", type=positive_int, default=_env("COMPACT_AFTER", "1000"),
                   help="journal records before the store writes a new snapshot "
                        "(env FABRIC_KUBE_COMPACT_AFTER)")
    add_logging_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.data_dir is None:
        p.error("--data-dir (or FABRIC_KUBE_DATA_DIR) is required")
    configure_logging(args.log_format, args.log_level, process="kube-emulator")
    data_dir: Path = args.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        load(data_dir, repair=False)  # fail fast, with one line, on an unreadable store
        token = kubeconfig.ensure_token(data_dir, args.token)
        tls_dir = tls.ensure_certificates(data_dir, args.listen[0]) if args.tls else None
        (args.kubeconfig_out or data_dir / "kubeconfig").parent.mkdir(parents=True,
                                                                       exist_ok=True)
        _check_listen(*args.listen)
    except (OSError, CorruptStore, RuntimeError) as exc:
        print(f"kube-emulator: {exc}", file=sys.stderr)
        return 2
    host, port = args.listen
    kubeconfig_out: Path = args.kubeconfig_out or data_dir / "kubeconfig"
    settings = ServerSettings(
        host, port, token, args.version_minor, args.read_only_token,
        tls.server_context(tls_dir) if tls_dir is not None else None,
        ApiSettings(args.watch_max_seconds, args.bookmark_interval),
    )

    def on_bound(bound_port: int) -> None:
        scheme = "https" if tls_dir is not None else "http"
        url_host = f"[{host}]" if ":" in host else host
        ca = (tls_dir / "ca.crt").read_bytes() if tls_dir is not None else None
        kubeconfig.write(kubeconfig_out, kubeconfig.render(
            f"{scheme}://{url_host}:{bound_port}", token, args.cluster_name, ca))
        log.info("kubeconfig_written", path=str(kubeconfig_out), port=bound_port)

    async def setup(system: ActorSystem) -> None:
        store = system.spawn(
            lambda: Store(StoreSettings(data_dir, args.finalize_delay, args.history,
                                        args.compact_after)),
            name="store")
        control = system.spawn(lambda: Control(tuple(args.fault)), name="control")
        system.spawn(lambda: HttpServer(settings, store, control, on_bound), name="http")

    return asyncio.run(run_until_signalled(setup))
