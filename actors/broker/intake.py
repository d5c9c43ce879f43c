"""What one control batch appends: PUB envelopes schema-checked, authorized and deduplicated.

An `Intake` lives for one batch of control requests. `admit` checks every
envelope of a PUB request (all or nothing: one bad envelope, or one the
publisher's identity may not publish, refuses the request), then gives each
its receipt: the seq it was stored under before
(within the dedup window, or earlier in this same batch), or the next seq,
queuing its record (key, tombstone flag, envelope bytes) for the batch's one
append.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from actors.broker.log import Append, EventLog
from actors.broker.permissions import Peer, envelope_refusal
from core.envelope import InvalidEnvelope
from transport import codec


@dataclass(frozen=True, slots=True)
class Forbidden:
    """The publisher's identity may not publish an envelope of the request: why, and its key."""

    reason: str
    key: str


class Intake:
    def __init__(self, log: EventLog, logger: structlog.stdlib.BoundLogger) -> None:
        self._log = log
        self._logger = logger
        self._pending: dict[bytes, int] = {}
        self.next_seq = log.head + 1
        self.to_write: list[Append] = []

    def admit(self, envelopes: Sequence[bytes], peer: Peer) -> list[tuple[int, bool]] | Forbidden | str:
        """(seq, duplicate) per envelope, in order; or why the request is refused: `Forbidden`,
        or (a str) what makes an envelope invalid."""
        checked: list[tuple[bytes, bytes, str, str, Append]] = []
        for i, raw in enumerate(envelopes):
            try:
                env = codec.decode_envelope(raw)
            except (codec.CodecError, InvalidEnvelope) as exc:
                return f"envelope {i}: {exc}"
            forbidden = envelope_refusal(peer, env)
            if forbidden is not None:
                return Forbidden(f"envelope {i}: {forbidden}", env.key)
            eid = bytes.fromhex(env.event_id.replace("-", ""))
            record = Append(eid, env.key.encode(), env.tombstone, raw)
            checked.append((eid, raw, env.event_id, env.aggregate_id, record))
        receipts: list[tuple[int, bool]] = []
        for eid, _raw, event_id, account_id, record in checked:
            seq = self._log.seq_of(eid) or self._pending.get(eid)
            if seq is not None:
                receipts.append((seq, True))
                self._logger.debug("event_duplicate", event_id=event_id, seq=seq)
                continue
            seq = self.next_seq
            self.next_seq += 1
            self._pending[eid] = seq
            self.to_write.append(record)
            receipts.append((seq, False))
            self._logger.debug("event_stored", event_id=event_id, account_id=account_id, seq=seq)
        return receipts
