"""The operator console: a page served by the API, its sessions and its live updates.

Plain HTML, CSS and JavaScript in `static/` (no build step). The page logs in
by exchanging an API key for a session cookie (sessions.py), then calls the
API's own JSON-RPC methods on `POST /rpc` with that cookie (the key's scope
applies, actors/api/access.py; the Origin check: guard.py) and follows
changes over server-sent events (events.py, fed by feeds.py). web.py mounts
the routes; app.py wires them in.
"""

from actors.api.console.feeds import Feeds
from actors.api.console.sessions import ConsoleSettings, SessionStore
from actors.api.console.web import Console

__all__ = ["Console", "ConsoleSettings", "Feeds", "SessionStore"]
