"""The load generator's measuring: sides take turns, each rate is its own side's, and a short
slice is counted without bias. The "requests" here are simulated (an awaited sleep of a
known length), so what is checked is the arithmetic, not any server's speed."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.figures import BenchError
from bench.load import One, alternate


def _side(name: str, seconds: float, calls: list[str], took: list[float] | None = None) -> One:
    async def one(_worker: int, _n: int) -> None:
        calls.append(name)
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        if took is not None:
            took.append(time.perf_counter() - start)

    return one


def _turns(calls: list[str]) -> list[str]:
    return [name for i, name in enumerate(calls) if i == 0 or calls[i - 1] != name]


async def test_sides_take_turns_warm_up_first_then_slice_by_slice() -> None:
    calls: list[str] = []
    sides = [_side("api", 0.001, calls), _side("bare", 0.001, calls)]
    _ = await alternate(2, 0.02, 0.06, sides, slices=3)
    assert _turns(calls) == ["api", "bare"] + ["api", "bare"] * 3


async def test_each_rate_is_its_own_sides() -> None:
    calls: list[str] = []
    fast, slow = await alternate(
        4, 0.02, 0.2, [_side("fast", 0.001, calls), _side("slow", 0.008, calls)], slices=2
    )
    # One request takes 8x longer on the slow side; timer overshoot narrows that, never to 2x.
    assert fast > 2 * slow > 0


async def test_a_slice_a_few_requests_long_is_counted_without_bias() -> None:
    # 50 ms slices of 20 ms requests: a count of the replies within the window would see two
    # rounds of four, 160/s, against the 200/s the workers made.
    took: list[float] = []
    (rate,) = await alternate(4, 0.0, 0.1, [_side("api", 0.02, [], took)], slices=2)
    made = 4 / (sum(took) / len(took))
    assert rate == pytest.approx(made, rel=0.1)


async def test_a_failing_request_ends_the_run_at_once_with_its_error() -> None:
    async def failing(_worker: int, n: int) -> None:
        await asyncio.sleep(0.001)
        if n == 5:
            raise BenchError("HTTP 500: boom")

    with pytest.raises(BenchError, match="boom"):
        async with asyncio.timeout(10):  # the duration below is far longer
            _ = await alternate(2, 0.01, 600.0, [failing])
