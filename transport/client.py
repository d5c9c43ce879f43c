"""The broker client library: the only way the API, the event driver and the daemons reach the broker.

    endpoints = BrokerEndpoints.parse("tcp://127.0.0.1:7101,tcp://127.0.0.1:7102,tcp://127.0.0.1:7103")
    keys = load_client_keys(Path("keys/api.key_secret"), Path("keys/broker.key"))   # CURVE
    ctx = new_context()
    async with Publisher(ctx, endpoints, keys=keys) as pub:
        receipts = await pub.publish([envelope, ...])        # confirmed after fsync
    async with Subscriber(ctx, endpoints, keys=a_keys, consumer="cluster:a", key_prefix="account:") as sub:
        async for batch in sub.batches():                     # catch-up, then live
            ...store batch.deliveries...
            await sub.ack(batch.position)                     # cumulative
    async with Directory(ctx, endpoints, keys=keys) as d:
        infos = await d.consumers()
        await d.remove("cluster:gone")

Every socket is CURVE; what an identity may do is listed in `transport.protocol`.

Publisher, Subscriber and Directory implement the ports in `core.bus`; the
wire protocol they speak is documented in `transport.protocol`. Each lives in
its own module (`transport.publisher`, `.subscriber`, `.directory`); this one
gathers them.
"""

from __future__ import annotations

from transport.directory import Directory
from transport.endpoints import BrokerEndpoints
from transport.publisher import Publisher
from transport.subscriber import Subscriber

__all__ = ["BrokerEndpoints", "Directory", "Publisher", "Subscriber"]
