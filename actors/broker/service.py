"""Run the broker inside an actor system: the process main and tests that embed it use this."""

from __future__ import annotations

from actors.broker.binding import BrokerSockets
from actors.broker.log import EventLog
from actors.broker.server import LOG_DIR, Broker, BrokerMessage
from actors.broker.settings import BrokerSettings
from actors.runtime import ActorRef, ActorSystem, RestartPolicy
from transport.sockets import Context

# No restarts: a crash may be a failed fdatasync, after which only a fresh process and
# its recovery scan can say what is on disk.
NO_RESTART = RestartPolicy(max_restarts=0)


def spawn_broker(system: ActorSystem, ctx: Context, settings: BrokerSettings) -> ActorRef[BrokerMessage]:
    """Recover the log and bind the sockets here, so a bad data dir or a taken port fails
    at once with a clear error (`CorruptLog`, `SocketError`, `OSError`); then hand both to
    the broker actor, which owns them from there on."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = EventLog.open(
        settings.data_dir / LOG_DIR, segment_bytes=settings.segment_bytes, dedup=settings.dedup.window()
    )
    try:
        sockets = BrokerSockets.bind(ctx, settings.endpoints)
    except Exception:
        log.close()
        raise
    return system.spawn(lambda: Broker(settings, log, sockets), name="broker", policy=NO_RESTART)
