"""How a subscriber decides that live messages follow on from its position, or that it missed some."""

from __future__ import annotations

import pytest

from transport.protocol import LiveEvents
from transport.subscriber import _follow_on

A, B, C = b"a", b"b", b"c"


@pytest.mark.parametrize(
    ("items", "position", "expected"),
    [
        # Every key (EV): seqs follow on one by one; an old one is passed over; a jump is a gap.
        ([LiveEvents(((5, A), (6, B)))], 4, ([(5, A), (6, B)], 6, False)),
        ([LiveEvents(((4, A), (5, B)))], 4, ([(5, B)], 5, False)),
        ([LiveEvents(((5, A),)), LiveEvents(((7, B),))], 4, ([(5, A)], 5, True)),
        # One family (EF): seqs jump over other families' records; `prev` says what came before.
        ([LiveEvents(((9, A), (12, B)), prev=4)], 4, ([(9, A), (12, B)], 12, False)),
        ([LiveEvents(((9, A),), prev=2)], 7, ([(9, A)], 9, False)),  # moved past by a heartbeat
        ([LiveEvents(((9, A),), prev=8)], 7, ([], 7, True)),  # the family's record 8 was missed
        ([LiveEvents(((9, A),), prev=4), LiveEvents(((15, B),), prev=11)], 4, ([(9, A)], 9, True)),
        ([LiveEvents(((9, A), (12, B)), prev=4), LiveEvents(((15, C),), prev=12)], 9,
         ([(12, B), (15, C)], 15, False)),
    ],
)
def test_live_messages_follow_on_or_show_a_gap(
    items: list[LiveEvents], position: int, expected: tuple[list[tuple[int, bytes]], int, bool]
) -> None:
    assert _follow_on(items, position) == expected
