"""`fabric up` hands each kube emulator a generated token on its command line; a token that
starts with a dash (one in 64 of them) must still reach the emulator as the token."""

from __future__ import annotations

from pathlib import Path

from actors.kube_emulator.main import parser as kube_parser
from actors.up.layout import KubePorts, Layout, Ports
from actors.up.options import UpSettings
from actors.up.plan import child_specs


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
