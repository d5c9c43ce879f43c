"""`Socket.deliver`: each message handed to a handler from the FD callback, in order, none
lost, whether it arrived before the handler was set, in a burst larger than one callback
hands over, or after a handler that failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.keys import api_keys, keys_dir, server_keys
from tests.support.ports import free_tcp_endpoint
from tests.support.wait import wait_until
from transport.curve import AllowList, CurveGate
from transport.sockets import DELIVER_MAX, Context, Socket, bind_router, connect_dealer


@pytest.fixture
async def pair(ctx: Context) -> AsyncIterator[tuple[Socket, Socket]]:
    """A CURVE ROUTER and a DEALER connected to it, with the ZAP gate serving."""
    gate = CurveGate(ctx, AllowList.load(keys_dir(), server_public=server_keys().public))
    gate.start()
    serving = asyncio.create_task(gate.serve())
    address = free_tcp_endpoint()
    router = bind_router(ctx, address, server_keys())
    dealer = connect_dealer(ctx, address, api_keys())
    try:
        yield router, dealer
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        dealer.close()
        router.close()
        gate.stop()


async def _echo(router: Socket, count: int) -> None:
    """Answer the dealer's hello with `count` numbered replies, all at once."""
    _user, (identity, _hello) = await router.recv_from()
    for i in range(count):
        assert router.send_nowait([identity, b"%d" % i])


async def test_every_reply_is_delivered_in_order_from_a_burst_beyond_one_callback(
    pair: tuple[Socket, Socket],
) -> None:
    router, dealer = pair
    got: list[bytes] = []
    dealer.deliver(lambda frames: got.extend(frames))
    count = DELIVER_MAX * 3 + 7
    assert dealer.send_nowait([b"hello"])
    await _echo(router, count)
    await wait_until(lambda: len(got) >= count, timeout=10, message="every reply delivered")
    assert got == [b"%d" % i for i in range(count)]


async def test_replies_queued_before_the_handler_is_set_are_delivered(
    pair: tuple[Socket, Socket],
) -> None:
    router, dealer = pair
    assert dealer.send_nowait([b"hello"])
    await _echo(router, 3)
    first = await dealer.recv()  # the rest may wait in the socket already, their FD edge consumed
    got: list[bytes] = []
    dealer.deliver(lambda frames: got.extend(frames))
    await wait_until(lambda: len(got) >= 2, timeout=10, message="the queued replies delivered")
    assert [first[0], *got] == [b"0", b"1", b"2"]


async def test_a_failing_handler_goes_to_the_loops_exception_handler_and_delivery_goes_on(
    pair: tuple[Socket, Socket],
) -> None:
    router, dealer = pair
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    got: list[bytes] = []

    def handler(frames: list[bytes]) -> None:
        if frames == [b"1"]:
            raise ValueError("bad reply")
        got.extend(frames)

    try:
        dealer.deliver(handler)
        assert dealer.send_nowait([b"hello"])
        await _echo(router, 3)
        await wait_until(lambda: len(got) >= 2, timeout=10, message="replies after the failure")
    finally:
        loop.set_exception_handler(None)
    assert got == [b"0", b"2"]
    assert [type(c["exception"]) for c in reported] == [ValueError]
