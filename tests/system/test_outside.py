"""`fabric up` pointed at what it does not run itself: FABRIC_LEGACY_DSN for the legacy
database (no embedded PostgreSQL) and `--kubeconfig NAME=PATH` for a cluster (no emulator
started for it; here the "real" cluster is a kube emulator the test runs on its own)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actors.legacy import embedded
from tests.support.kube import start_kube_emulator
from tests.support.postgres import psql, with_database
from tests.support.processes import ProcessGroup
from tests.system.harness import FabricUp, call_ok, eventually

pytestmark = pytest.mark.processes


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[FabricUp]:
    """A first `fabric up` whose embedded PostgreSQL plays the outside database."""
    system = FabricUp(tmp_path / "host", tmp_path / "host-logs", ["h"])
    system.start()
    try:
        await system.wait_ready()
        yield system
    finally:
        system.close()


async def test_up_uses_an_outside_database_and_an_outside_cluster(
    host: FabricUp, procs: ProcessGroup, tmp_path: Path
) -> None:
    ports = json.loads((host.state_dir / "ports.json").read_text())
    server = embedded.dsn(int(ports["postgres"]))
    database = f"outside_{uuid.uuid4().hex[:8]}"
    psql(server, "-c", f"CREATE DATABASE {database}")
    outside_kube = await start_kube_emulator(procs, tmp_path / "outside-kube", name="outside-kube")

    up = FabricUp(tmp_path / "state", tmp_path / "logs", ["local", "remote"])
    try:
        up.start(
            extra_env={"FABRIC_LEGACY_DSN": with_database(server, database)},
            extra_args=("--kubeconfig", f"remote={outside_kube.kubeconfig}"),
        )
        await up.wait_ready()
        run = {p.stem for p in (up.state_dir / "run").glob("*.pid")}
        assert run == {"broker", "api", "kube-local", "daemon-local", "daemon-remote"}
        assert up.endpoints["clusters"]["remote"] == {
            "api": outside_kube.url,
            "kubeconfig": str(outside_kube.kubeconfig),
        }

        account = await call_ok(
            up, "account.create", {"name": "Outside", "owner_email": "o@example.com", "slug": "outside"}
        )

        async def provisioned() -> bool:
            got = await call_ok(up, "account.get", {"id": account["id"]})
            assert got["status"] == "ready", got
            assert got["clusters"]["remote"]["state"] == "created", got
            status, _ = await outside_kube.request("GET", "/api/v1/namespaces/acc-outside")
            assert status == 200
            return True

        await eventually(provisioned, timeout=30, message="namespace in the outside cluster")
        rows = psql(with_database(server, database), "-At", "-c", "SELECT count(*) FROM organizations")
        assert rows.strip() == "1"
        assert up.stop() == 0
    finally:
        up.close()
