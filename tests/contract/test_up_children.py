"""What `fabric up` plans to run: a kube token that starts with a dash (one in 64 of them)
still reaches the emulator as the token; api replicas; the children on the JetStream bus."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from actors.daemon.settings import parse_settings as parse_daemon_settings
from actors.kube_emulator.main import parser as kube_parser
from actors.up.layout import KubePorts, Layout, Ports
from actors.up.options import UpSettings
from actors.up.plan import child_specs, endpoints_document
from transport.bus_choice import JetStreamBus


def test_a_kube_token_that_starts_with_a_dash_reaches_the_emulator(tmp_path: Path) -> None:
    token = "-starts-with-a-dash_0123456789abcdef"
    settings = UpSettings(
        layout=Layout.at(tmp_path), api_port=None, clusters=("east",), external_kubeconfigs={},
        legacy_dsn="postgresql://u@127.0.0.1:1/d", resync_seconds="30", log_format="json",
    )
    ports = Ports(postgres=1, broker_control=2, broker_events=3, broker_acks=4, api=5,
                  kubes={"east": KubePorts(6, token)})
    specs = child_specs(settings, ports, admin_key=lambda: "key", postgres=None)
    [kube] = [spec for spec in specs if spec.name == "kube-east"]
    module = kube.argv.index("actors.kube_emulator")
    args = kube_parser().parse_args(list(kube.argv[module + 1:]))
    assert args.token == token


def _settings(tmp_path: Path, **changes: object) -> UpSettings:
    base = UpSettings(
        layout=Layout.at(tmp_path), api_port=None, clusters=("east",), external_kubeconfigs={},
        legacy_dsn="postgresql://u@127.0.0.1:1/legacy", resync_seconds="30", log_format="json",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


PORTS = Ports(postgres=1, broker_control=2, broker_events=3, broker_acks=4, api=8000,
              kubes={"east": KubePorts(6, "token")}, nats=7, nats_monitor=9)


def test_api_replicas_listen_on_consecutive_ports_and_share_a_cache_on_the_legacy_postgres(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, api_replicas=3)
    specs = child_specs(settings, PORTS, admin_key=lambda: "key", postgres=None)
    apis = [spec for spec in specs if spec.name.startswith("api")]
    assert [spec.name for spec in apis] == ["api", "api-2", "api-3"]
    # The first starts alone (on a fresh shared cache it resets the consumer and replays).
    assert [spec.stage for spec in apis] == [3, 4, 4]
    assert all(spec.stage > 4 for spec in specs if spec.name.startswith("daemon-"))
    listens = [spec.argv[spec.argv.index("--listen") + 1] for spec in apis]
    assert listens == ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]
    assert {spec.env()["FABRIC_CACHE_DSN"] for spec in apis} == {"postgresql://u@127.0.0.1:1/fabric_cache"}
    document = endpoints_document(settings, PORTS)
    assert document["api"] == "http://127.0.0.1:8000"
    assert document["apis"] == [f"http://127.0.0.1:{p}" for p in (8000, 8001, 8002)]
    # One api keeps its SQLite cache unless a DSN is given.
    single = child_specs(_settings(tmp_path), PORTS, admin_key=lambda: "key", postgres=None)
    assert all("FABRIC_CACHE_DSN" not in spec.env() for spec in single)


def test_on_jetstream_a_local_nats_takes_the_brokers_place_and_clients_get_nats_users(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, bus="jetstream")
    binary = tmp_path / "nats-server"
    specs = child_specs(settings, PORTS, admin_key=lambda: "key", postgres=None, nats_server=binary)
    names = [spec.name for spec in specs]
    assert "broker" not in names
    (nats,) = [spec for spec in specs if spec.name == "nats"]
    assert nats.argv == (str(binary), "-c", str(settings.layout.nats_config))
    assert nats.stage == 1
    (daemon,) = [spec for spec in specs if spec.name == "daemon-east"]
    module = daemon.argv.index("actors.daemon")
    parsed = parse_daemon_settings(list(daemon.argv[module + 1:]), {})
    assert parsed.bus == JetStreamBus(
        ("nats://127.0.0.1:7",), user="cluster-east",
        password_file=settings.layout.keys_dir / "cluster-east.nats", replicas=1,
    )
    document = endpoints_document(settings, PORTS)
    assert (document["bus"], document["nats"], "broker" in document) == (
        "jetstream", ["nats://127.0.0.1:7"], False,
    )


def test_on_an_outside_nats_cluster_up_runs_no_nats_server(tmp_path: Path) -> None:
    servers = ("nats://10.0.0.1:4222", "nats://10.0.0.2:4222")
    settings = _settings(tmp_path, bus="jetstream", nats_servers=servers, nats_replicas=3)
    specs = child_specs(settings, PORTS, admin_key=lambda: "key", postgres=None)
    assert not {"nats", "broker"} & {spec.name for spec in specs}
    (api,) = [spec for spec in specs if spec.name == "api"]
    argv = list(api.argv)
    assert argv[argv.index("--nats-url") + 1] == ",".join(servers)
    assert argv[argv.index("--nats-replicas") + 1] == "3"
    assert endpoints_document(settings, PORTS)["nats"] == list(servers)
