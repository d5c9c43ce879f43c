"""The actor runtime on plain asyncio: actors, refs, supervision, process lifecycle."""

from actors.runtime.actor import (
    Actor,
    ActorRef,
    ActorStopped,
    AskTimeout,
    Later,
    Request,
)
from actors.runtime.system import ActorSystem, Escalation, RestartPolicy, run_until_signalled

__all__ = [
    "Actor",
    "ActorRef",
    "ActorStopped",
    "ActorSystem",
    "AskTimeout",
    "Escalation",
    "Later",
    "Request",
    "RestartPolicy",
    "run_until_signalled",
]
