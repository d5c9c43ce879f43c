"""`fabric up` makes the CurveZMQ keys of CONTRACT section 6 under DIR/keys/ and hands each
child its own: the broker its certificate and the allow-list, every client its certificate
and the broker's public one. There is no switch that turns this off."""

from __future__ import annotations

import stat
from pathlib import Path

from actors.api.main import parser as api_parser
from actors.broker.settings import parse_settings as broker_settings
from actors.daemon.settings import build_parser as daemon_parser
from actors.up.layout import KubePorts, Layout, Ports, ensure_keys
from actors.up.options import UpSettings
from actors.up.plan import ChildSpec, child_specs
from actors.up.probes import BrokerProbe, ConsumerProbe
from transport.bus_choice import ZmqBus
from transport.curve import AllowList, load_server_keys


def _names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_up_writes_a_key_pair_per_identity_and_a_later_cluster_gets_its_own(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    layout.prepare()
    assert ensure_keys(layout, ("a",)) == ["broker", "api", "cluster-a"]
    keys = layout.keys_dir
    assert keys == tmp_path / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert _names(keys) == {
        f"{name}{suffix}" for name in ("broker", "api", "cluster-a") for suffix in (".key", ".key_secret")
    }
    for secret in keys.glob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    before = {p.name: p.read_bytes() for p in keys.iterdir()}
    assert ensure_keys(layout, ("a", "b")) == ["cluster-b"]
    assert {p.name: p.read_bytes() for p in keys.iterdir() if p.name in before} == before
    assert {"cluster-b.key", "cluster-b.key_secret"} <= _names(keys)
    broker = load_server_keys(layout.broker_secret)
    allowed = AllowList.load(keys, server_public=broker.public).identities
    assert sorted(allowed.values()) == ["api", "cluster-a", "cluster-b"]


def _spec(specs: list[ChildSpec], name: str) -> list[str]:
    (spec,) = [s for s in specs if s.name == name]
    module = next(i for i, arg in enumerate(spec.argv) if arg.startswith("actors."))
    return list(spec.argv[module + 1 :])


def test_every_child_gets_its_own_key_and_the_broker_its_allow_list(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    settings = UpSettings(
        layout=layout, api_port=None, clusters=("east",), external_kubeconfigs={},
        legacy_dsn="postgresql://u@127.0.0.1:1/d", resync_seconds="30", log_format="json",
    )
    ports = Ports(postgres=1, broker_control=2, broker_events=3, broker_acks=4, api=5,
                  kubes={"east": KubePorts(6, "token")})
    specs = child_specs(settings, ports, admin_key=lambda: "key", postgres=None)
    keys = layout.keys_dir

    broker = broker_settings([*_spec(specs, "broker")])
    assert (broker.curve_secret, broker.curve_clients) == (keys / "broker.key_secret", keys)
    api = api_parser().parse_args(_spec(specs, "api"))
    assert (api.broker_key, api.broker_public_key) == (keys / "api.key_secret", keys / "broker.key")
    daemon = daemon_parser({}).parse_args(_spec(specs, "daemon-east"))
    assert (daemon.broker_key, daemon.broker_public_key) == (
        keys / "cluster-east.key_secret", keys / "broker.key",
    )
    # fabric up's own readiness probes ask the broker as the api, the identity that may list.
    probes = [s.probe for s in specs if isinstance(s.probe, BrokerProbe | ConsumerProbe)]
    assert probes
    assert {p.bus.keys.secret for p in probes if isinstance(p.bus, ZmqBus)} == {keys / "api.key_secret"}
