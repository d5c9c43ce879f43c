"""The broker's three addresses, as given on command lines and in endpoints.json."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BrokerEndpoints:
    """The broker's three sockets: control (ROUTER), events (PUB), acks (PULL)."""

    control: str
    events: str
    acks: str

    @classmethod
    def parse(cls, text: str) -> BrokerEndpoints:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or not all(parts):
            raise ValueError("broker endpoints: give CONTROL,EVENTS,ACKS addresses, comma-separated")
        return cls(*parts)

    def to_dict(self) -> dict[str, str]:
        return {"control": self.control, "events": self.events, "acks": self.acks}

    def __str__(self) -> str:
        return f"{self.control},{self.events},{self.acks}"
