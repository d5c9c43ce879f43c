"""Process settings shared by every entry point: flags first, then `FABRIC_*` env, then defaults.

Every value type here is an argparse `type=` that raises `ArgumentTypeError`
with a reason, so a bad setting ends the process with one clear line (argparse
prints `prog: error: argument --x: reason` and exits 2), never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transport.bus_choice import bus_name
from transport.client import BrokerEndpoints


def env(name: str, default: str | None = None) -> str | None:
    """An env var as a flag default; empty counts as unset."""
    return os.environ.get(name) or default


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more: {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 hosts in brackets)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def broker_endpoints(text: str) -> BrokerEndpoints:
    """`CONTROL,EVENTS,ACKS`, three ZeroMQ addresses."""
    try:
        endpoints = BrokerEndpoints.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    for address in (endpoints.control, endpoints.events, endpoints.acks):
        if "://" not in address:
            raise argparse.ArgumentTypeError(f"not a zmq address (tcp://HOST:PORT): {address!r}")
    return endpoints


LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


def add_logging_flags(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """`--log-format json|console` and `--log-level`, the same in every process.

    Validated through `type=` rather than `choices=`: argparse runs string
    defaults (our env values) through `type` but checks `choices` for flags only.
    """
    source = os.environ if environ is None else environ
    parser.add_argument(
        "--log-format",
        type=_one_of(LOG_FORMATS),
        metavar="{json,console}",
        default=source.get("FABRIC_LOG_FORMAT") or "json",
        help="json lines (default) or console for people (FABRIC_LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level",
        type=_one_of(LOG_LEVELS),
        metavar="{debug,info,warning,error}",
        default=source.get("FABRIC_LOG_LEVEL") or "info",
        help="(FABRIC_LOG_LEVEL)",
    )


def _one_of(options: tuple[str, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(options)}: {text!r}")
        return text

    return check


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    return value


# ---- the one settings mechanism ---------------------------------------------------------------
#
# Every process declares its settings as a tuple of `Setting`s and builds its parser with
# `settings_parser`. So every process follows the same rules, checked once in
# tests/runtime/test_settings.py: a flag wins over its FABRIC_* variable, which wins over the
# default; an empty variable counts as unset; values from either source go through the same
# `type` check; a missing required setting, a bad value or a bad switch ends the process with
# one line naming the flag and its variable; a flag shared by several processes (`--broker`,
# `--log-format`, `--heartbeat-interval`...) reads the same variable in all of them.

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Setting:
    """One flag and the environment variable behind it.

    `default` is a string, checked by `type` like any value given. `required` is the reason
    shown when it is missing (None: optional). `switch` is a flag without a value (its variable
    takes 1/true/yes/on or 0/false/no/off). `repeat` collects every use of the flag into a
    list (no variable). `aliases` are older variable names still read, after `env`.
    """

    flag: str
    env: str | None
    help: str
    type: Callable[[str], Any] = str
    default: str | None = None
    required: str | None = None
    metavar: str | None = None
    switch: bool = False
    repeat: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


class SettingsParser(argparse.ArgumentParser):
    """An argparse parser built from `Setting`s; `parse_settings` also enforces `required`."""

    def __init__(self, *, settings: Sequence[Setting], environ: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = tuple(settings)
        add_settings(self, self.settings, environ)

    def parse_settings(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        ns = self.parse_args(argv)
        check_settings(self, ns, self.settings)
        return ns


def add_settings(
    parser: argparse.ArgumentParser, settings: Sequence[Setting], environ: Mapping[str, str] | None = None
) -> None:
    """Add `settings` to a parser (or a subcommand's); `check_settings` after parsing."""
    source = os.environ if environ is None else environ
    bad: list[str] = []
    for setting in settings:
        _add(parser, setting, source, bad)
    if bad:
        # Reported by `check_settings`, so a bad variable only stops the command that reads it.
        parser.set_defaults(settings_errors=bad)


def check_settings(
    parser: argparse.ArgumentParser, ns: argparse.Namespace, settings: Sequence[Setting]
) -> None:
    """Exit 2 with one line for a bad switch variable or a missing required setting."""
    for error in getattr(ns, "settings_errors", None) or ():
        parser.error(error)
    for setting in settings:
        if setting.required is not None and getattr(ns, setting.dest) in (None, "", []):
            source = f" (or {setting.env})" if setting.env else ""
            parser.error(f"{setting.flag}{source} is required: {setting.required}")


def env_value(setting: Setting, environ: Mapping[str, str]) -> str | None:
    """The setting's variable (or an older alias); empty counts as unset."""
    for name in (setting.env, *setting.aliases):
        if name is not None and environ.get(name):
            return environ[name]
    return None


def _add(
    parser: argparse.ArgumentParser, setting: Setting, environ: Mapping[str, str], bad: list[str]
) -> None:
    value = env_value(setting, environ)
    help_text = setting.help + _help_suffix(setting)
    if setting.switch:
        on = False
        if value is not None:
            if value.lower() in _TRUE:
                on = True
            elif value.lower() not in _FALSE:
                bad.append(f"{setting.env}: expected one of {', '.join(_TRUE + _FALSE)}, got {value!r}")
        parser.add_argument(setting.flag, action="store_true", default=on, help=help_text)
        return
    if setting.repeat:
        parser.add_argument(setting.flag, action="append", default=[], type=setting.type,
                            metavar=setting.metavar, help=help_text)
        return
    default: Any = setting.default
    if value is not None:
        # Checked here rather than by argparse, so the error names the variable it came from.
        try:
            default = setting.type(value)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            bad.append(f"{setting.flag} (from {_source(setting, environ)}): {exc}")
            default = None
    parser.add_argument(setting.flag, type=setting.type, metavar=setting.metavar,
                        default=default, help=help_text)


def _source(setting: Setting, environ: Mapping[str, str]) -> str:
    return next(n for n in (setting.env, *setting.aliases) if n is not None and environ.get(n))


def settings_parser(
    prog: str,
    description: str,
    settings: Sequence[Setting],
    environ: Mapping[str, str] | None = None,
) -> SettingsParser:
    return SettingsParser(
        settings=settings, environ=os.environ if environ is None else environ,
        prog=prog, description=description + " Every flag also reads the FABRIC_* variable "
        "named in its help (an empty one counts as unset); flags win.",
    )


def _help_suffix(setting: Setting) -> str:
    parts = [setting.env] if setting.env else []
    if setting.default is not None and not setting.switch:
        parts.append(f"default {setting.default}")
    return f" ({'; '.join(parts)})" if parts else ""


def one_of(*options: str) -> Callable[[str], str]:
    """A `type` accepting exactly these words."""
    return _one_of(options)


LOG_SETTINGS = (
    Setting("--log-format", "FABRIC_LOG_FORMAT", "json lines, or console for people",
            type=_one_of(LOG_FORMATS), default="json", metavar="{json,console}"),
    Setting("--log-level", "FABRIC_LOG_LEVEL", "the least severe level logged",
            type=_one_of(LOG_LEVELS), default="info", metavar="{debug,info,warning,error}"),
)

# Settings several processes share: declared once, so their flag, variable and checks agree.
HEARTBEAT = Setting(
    "--heartbeat-interval", "FABRIC_HEARTBEAT_SECONDS",
    "seconds between heartbeats (the broker's on its event stream, a daemon's pings to the bus)",
    type=positive_float, default="1.0",
)
METRICS_LISTEN = Setting(
    "--metrics-listen", "FABRIC_METRICS_LISTEN",
    "serve Prometheus metrics at http://HOST:PORT/metrics (unset: not served)",
    type=host_port, metavar="HOST:PORT",
)


def bus_settings(identity: str) -> tuple[Setting, ...]:
    """How a bus client (`bin/api`, `bin/daemon`) reaches the bus; `identity` is its name there.

    Values are checked by `transport.bus_choice.bus_from_args` for the chosen bus only."""
    return (
        Setting("--bus", "FABRIC_BUS", "the event bus: zmq (our broker) or jetstream (NATS)",
                type=bus_name, default="zmq", metavar="{zmq,jetstream}"),
        Setting("--broker", "FABRIC_BROKER", "the broker's CONTROL,EVENTS,ACKS addresses (zmq bus)"),
        Setting("--broker-key", "FABRIC_BROKER_KEY",
                f"this process's CURVE certificate with its secret key, e.g. "
                f"DIR/keys/{identity}.key_secret (zmq bus)", type=Path, metavar="PATH"),
        Setting("--broker-public-key", "FABRIC_BROKER_PUBLIC_KEY",
                "the broker's public CURVE certificate, e.g. DIR/keys/broker.key (zmq bus)",
                type=Path, metavar="PATH"),
        Setting("--nats-url", "FABRIC_NATS_URL", "NATS servers, comma-separated (jetstream bus)"),
        Setting("--nats-replicas", "FABRIC_NATS_REPLICAS",
                "copies JetStream keeps of the stream: 1, or 3 on a three-node cluster", default="1"),
        Setting("--nats-user", "FABRIC_NATS_USER", f"NATS user (default {identity})"),
        Setting("--nats-password-file", "FABRIC_NATS_PASSWORD_FILE",
                f"file holding the NATS user's password, e.g. DIR/keys/{identity}.nats",
                type=Path, metavar="PATH"),
        Setting("--nats-offline-after", "FABRIC_NATS_OFFLINE_AFTER",
                "a cluster whose daemon stopped pulling this long ago (seconds) shows offline",
                default="10", metavar="SECONDS"),
    )
RESYNC = Setting(
    "--resync", "FABRIC_RESYNC_SECONDS",
    "seconds between full resyncs of a cluster (a namespace deleted by hand comes back within it)",
    type=positive_float, default="30",
)
