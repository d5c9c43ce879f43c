"""Run the broker inside an actor system: the process main and tests that embed it use this."""

from __future__ import annotations

from actors.broker.binding import BrokerSockets
from actors.broker.log import EventLog
from actors.broker.metrics import BrokerMetrics
from actors.broker.server import LOG_DIR, Broker, BrokerMessage
from actors.broker.settings import BrokerSettings
from actors.runtime import ActorRef, ActorSystem, RestartPolicy
from transport.curve import AllowList, CurveGate, load_server_keys
from transport.sockets import Context

# No restarts: a crash may be a failed fdatasync, after which only a fresh process and
# its recovery scan can say what is on disk.
NO_RESTART = RestartPolicy(max_restarts=0)


def spawn_broker(
    system: ActorSystem, ctx: Context, settings: BrokerSettings, metrics: BrokerMetrics | None = None
) -> ActorRef[BrokerMessage]:
    """Load the keys, recover the log, start the ZAP handler and bind the sockets here, so a
    bad certificate, a bad data dir or a taken port fails at once with a clear error
    (`KeyFileError`, `CorruptLog`, `SocketError`, `OSError`); then hand all of them to the
    broker actor, which owns them from there on."""
    keys = load_server_keys(settings.curve_secret)
    allow = AllowList.load(settings.curve_clients, server_public=keys.public)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = EventLog.open(
        settings.data_dir / LOG_DIR, segment_bytes=settings.segment_bytes, dedup=settings.dedup.window()
    )
    gate = CurveGate(ctx, allow)
    try:
        gate.start()  # before the sockets: they refuse to be CURVE servers without it
        sockets = BrokerSockets.bind(ctx, settings.endpoints, keys)
    except Exception:
        gate.stop()
        log.close()
        raise
    return system.spawn(
        lambda: Broker(settings, log, sockets, gate, metrics), name="broker", policy=NO_RESTART
    )
