"""`fabric up` chooses its children's ports once per state dir (actors/up/layout.py); none of
them is bound while it starts, so a new port must not be one it already named or the API's."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.up.layout import Layout, load_or_allocate_ports
from transport import ports
from transport.ports import free_port


def test_no_new_port_is_the_apis_or_one_the_state_dir_already_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout = Layout.at(tmp_path)
    layout.prepare()
    api = free_port(count=2)
    # The sequence arrives at the API's ports, which nothing has bound yet.
    monkeypatch.setattr(ports, "_next", api)
    first = load_or_allocate_ports(layout, api_port=api, kube_clusters=["east"], api_replicas=2)
    named = first.children()
    assert first.api == api
    assert not {api, api + 1} & named
    assert len(named) == 4 + 1 + 2  # PostgreSQL, the broker's three, east, NATS's two
    # A later start: the state dir's ports are not bound either (its servers are stopped).
    monkeypatch.setattr(ports, "_next", first.postgres)
    again = load_or_allocate_ports(layout, api_port=api, kube_clusters=["east", "west"],
                                   api_replicas=2)
    assert again.kubes["east"] == first.kubes["east"]
    assert again.kubes["west"].port not in named | {api, api + 1}
