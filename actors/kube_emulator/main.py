"""bin/kube-emulator: a local Kubernetes API server stand-in (development and tests only).

Settings come from flags or FABRIC_KUBE_* environment variables (flags win; see `--help`). It serves
plain http unless --tls; over http, requests without credentials are accepted (kubectl
sends none over http) and a wrong bearer token gets 401. Objects persist under --data-dir;
a restart on the same --listen address resumes them. On start it writes a kubeconfig for
itself to --kubeconfig-out (default DATA_DIR/kubeconfig).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

import structlog

from actors.kube_emulator import kubeconfig, tls
from actors.kube_emulator.api import ApiSettings
from actors.kube_emulator.control import Control, FaultBook, FaultRule, parse_fault
from actors.kube_emulator.durability import Durability
from actors.kube_emulator.persistence import CorruptStore, load
from actors.kube_emulator.server import HttpServer, ServerSettings
from actors.kube_emulator.store import Store, StoreSettings
from actors.runtime import ActorSystem, run_until_signalled
from actors.runtime.logging import configure_logging
from actors.runtime.loop import run as run_loop
from actors.runtime.settings import (
    LOG_SETTINGS,
    Setting,
    SettingsParser,
    host_port,
    non_negative_float,
    positive_int,
    settings_parser,
)

log = structlog.get_logger()


def _fault(value: str) -> FaultRule:
    try:
        return parse_fault(json.loads(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad fault rule {value!r}: {exc}")


def _faults(value: str) -> list[FaultRule]:
    try:
        rules = json.loads(value)
        if not isinstance(rules, list):
            raise ValueError("expected a JSON list of rules")
        return [parse_fault(rule) for rule in rules]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


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


SETTINGS = (
    Setting("--data-dir", "FABRIC_KUBE_DATA_DIR", "where objects persist", type=Path,
            required="objects persist there"),
    Setting("--listen", "FABRIC_KUBE_LISTEN", "HOST:PORT to serve on", type=host_port,
            default="127.0.0.1:0"),
    Setting("--kubeconfig-out", "FABRIC_KUBE_KUBECONFIG_OUT",
            "kubeconfig to write (default DATA_DIR/kubeconfig)", type=Path),
    Setting("--token", "FABRIC_KUBE_TOKEN",
            "bearer token (default: generated once and kept in DATA_DIR/token)"),
    Setting("--read-only-token", "FABRIC_KUBE_READ_ONLY_TOKEN",
            "a second token that may only read; its writes get 403 Forbidden"),
    Setting("--cluster-name", "FABRIC_KUBE_CLUSTER_NAME", "cluster/context name in the kubeconfig",
            default="kube-emulator"),
    Setting("--finalize-delay", "FABRIC_KUBE_FINALIZE_DELAY",
            "seconds a deleted namespace stays Terminating", type=non_negative_float, default="2"),
    Setting("--tls", "FABRIC_KUBE_TLS", "serve https with a self-signed CA kept in DATA_DIR/tls",
            switch=True),
    Setting("--version-minor", "FABRIC_KUBE_VERSION_MINOR",
            "minor version /version reports (31 makes the kubectl dispatcher pick a JSON-speaking "
            "kubectl)", type=positive_int, default="31"),
    Setting("--watch-max-seconds", "FABRIC_KUBE_WATCH_MAX_SECONDS", "longest a watch stays open",
            type=non_negative_float, default="1800"),
    Setting("--bookmark-interval", "FABRIC_KUBE_BOOKMARK_INTERVAL",
            "seconds between watch BOOKMARKs", type=non_negative_float, default="60"),
    Setting("--history", "FABRIC_KUBE_HISTORY",
            "watch events kept for resuming; older versions get 410 Expired", type=positive_int,
            default="1000"),
    Setting("--faults", "FABRIC_KUBE_FAULTS", "fault rules active from the start, as a JSON list",
            type=_faults, metavar="JSON"),
    Setting("--fault", None,
            'one fault rule active from the start, as JSON (repeatable), e.g. '
            '\'{"mode": "error500", "count": 3, "match": {"method": "POST"}}\'',
            type=_fault, repeat=True, metavar="JSON"),
    Setting("--compact-after", "FABRIC_KUBE_COMPACT_AFTER",
            "journal records before the store writes a new snapshot", type=positive_int,
            default="1000"),
    *LOG_SETTINGS,
)


def parser() -> SettingsParser:
    return settings_parser(
        "kube-emulator",
        "A local stand-in for a Kubernetes API server (namespaces, resourcequotas, limitranges, "
        "serviceaccounts, networkpolicies, roles, rolebindings).",
        SETTINGS,
    )


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_settings(argv)
    faults = [*(args.faults or ()), *args.fault]
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
        durability = Durability()  # shared by the store and the requests waiting on it
        store = system.spawn(
            lambda: Store(StoreSettings(data_dir, args.finalize_delay, args.history,
                                        args.compact_after), durability),
            name="store")
        book = FaultBook()
        control = system.spawn(lambda: Control(tuple(faults), book=book), name="control")
        system.spawn(lambda: HttpServer(settings, store, control, on_bound, durability, book),
                     name="http")

    return run_loop(run_until_signalled(setup))
