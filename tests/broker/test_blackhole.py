"""A link that silently stops carrying bytes: both sides notice, and nothing is lost after."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.bus import Delivery
from tests.broker.helpers import envelope
from tests.broker.proxy import TcpProxy
from tests.support.broker import embedded_broker
from tests.support.keys import api_keys, consumer_keys
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Directory, Publisher, Subscriber
from transport.sockets import Context


@pytest.mark.parametrize("heal", ["resume", "drop"])
async def test_a_blackholed_consumer_is_marked_offline_then_catches_up_when_the_link_heals(
    ctx: Context, tmp_path: Path, heal: str
) -> None:
    events = [envelope(i) for i in range(20)]
    got: list[Delivery] = []
    async with embedded_broker(tmp_path, consumer_timeout=0.6) as endpoints:
        proxies = [
            await TcpProxy(address).start()
            for address in (endpoints.control, endpoints.events, endpoints.acks)
        ]
        try:
            via_proxy = BrokerEndpoints(*(p.address for p in proxies))
            async with (
                Publisher(ctx, endpoints, keys=api_keys()) as pub,
                Directory(ctx, endpoints, keys=api_keys()) as directory,
                Subscriber(
                    ctx, via_proxy, keys=consumer_keys("cluster:far"), consumer="cluster:far",
                    key_prefix="account:", heartbeat_interval=0.1, timeout=0.5,
                ) as sub,
            ):
                stream = sub.batches()

                async def online(expected: bool) -> bool:
                    infos = await directory.consumers()
                    return any(i.name == "cluster:far" and i.online is expected for i in infos)

                await pub.publish(events[:10])
                while len(got) < 10:
                    got += (await anext(stream)).deliveries
                _ = await wait_until(lambda: online(True), message="consumer online")
                for proxy in proxies:
                    proxy.pause()
                await pub.publish(events[10:])
                _ = await wait_until(
                    lambda: online(False), timeout=10, message="silent consumer marked offline"
                )
                for proxy in proxies:
                    if heal == "drop":  # what the link held is lost; libzmq reconnects
                        await proxy.drop_connections()
                    proxy.resume()
                while len(got) < 20:
                    got += (await anext(stream)).deliveries
                _ = await wait_until(lambda: online(True), timeout=10, message="consumer back")
                await stream.aclose()  # type: ignore[attr-defined]
        finally:
            for proxy in proxies:
                await proxy.close()
    assert [d.envelope for d in got] == events
