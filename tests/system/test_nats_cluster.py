"""`fabric up --bus jetstream` on an outside three-node NATS cluster with three stream replicas:
a stream of creates while one NATS node is SIGKILLed and later restarted (CONTRACT section 7).

The cluster is the operator's: `fabric up` is pointed at it with FABRIC_NATS_URL and starts no
nats-server of its own. Its users are `fabric up`'s identities with the passwords in
DIR/keys/IDENTITY.nats, written before the cluster starts (`NatsCluster` calls
`ensure_credentials` on the state dir's keys, as an operator would), and `up` keeps them.

The history is checked as in test_faults (Jepsen-style: ok / fail / info per call; a create
whose answer was lost is retried with its slug): every answered create is in the legacy
database once, with the id it answered, nothing is lost and nothing is duplicated, and every
account ends ready in every cluster, with exactly one namespace per account.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.support.nats import NatsCluster, nats_cluster
from tests.system.harness import FabricUp
from tests.system.test_faults import SEED, WINDOW, History, check_converged, creates_under

pytestmark = pytest.mark.processes

CLUSTERS = ["a", "b"]
CREATES = 36


async def kill_and_restart_one_node(
    cluster: NatsCluster, rng: random.Random, t0: float, history: History
) -> None:
    node = rng.randrange(len(cluster.nodes))
    await asyncio.sleep(max(0.0, t0 + WINDOW / 3 - time.monotonic()))  # the fault schedule
    process = cluster.nodes[node].process
    pid = process.pid if process is not None else 0
    await cluster.kill(node)
    history.kills.append((time.monotonic() - t0, f"nats-{node}", pid))
    await asyncio.sleep(max(0.0, t0 + 2 * WINDOW / 3 - time.monotonic()))  # down for a third
    await cluster.restart(node)
    history.kills.append((time.monotonic() - t0, f"nats-{node} restarted", 0))


@pytest.mark.timeout(300)
async def test_creates_survive_sigkill_of_one_node_of_a_three_node_nats_cluster(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    state = tmp_path / "state"
    up = FabricUp(state, tmp_path / "logs", CLUSTERS, bus="jetstream")
    try:
        async with nats_cluster(state, size=3, clusters=CLUSTERS) as cluster:
            up.start(extra_env={"FABRIC_NATS_URL": ",".join(cluster.urls), "FABRIC_NATS_REPLICAS": "3"})
            await up.wait_ready()
            assert up.endpoints["nats"] == cluster.urls
            assert up.pid("nats") is None, "an outside cluster: up runs no nats-server"

            slugs, history = await creates_under(
                up, "nats", lambda t0, h: kill_and_restart_one_node(cluster, rng, t0, h), CREATES
            )

            await check_converged(up, history, slugs, diagnostics=cluster.logs())
            print(history.summary())
            assert up.stop() == 0
    finally:
        up.close()
