"""A loopback TCP proxy for fault tests: forwards bytes, or holds them (a blackholed link).

`pause()` stops reading on every connection, old and new, so nothing flows but
no connection closes (what a half-open TCP link looks like to both ends);
`resume()` lets the held bytes through; `drop_connections()` closes them
instead, losing what was held. `close()` ends every task it started.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from tests.support.ports import free_port


class TcpProxy:
    def __init__(self, target: str) -> None:
        url = urlsplit(target)
        assert url.hostname is not None
        assert url.port is not None
        self._target = (url.hostname, url.port)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closed = False

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def drop_connections(self) -> None:
        """Close every open connection: whatever the proxy was holding is lost."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        writers = [writer]
        try:
            if self._closed:
                return  # accepted while closing: close() no longer sees this task
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            writers.append(up_writer)
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # Also when cancelled half-way (while connecting upstream): an unclosed transport
            # would be reported, by the garbage collector, in whichever test runs next.
            for w in writers:
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._flowing.wait()
            data = await reader.read(65536)
            if not data:
                writer.close()
                return
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
