"""A TCP proxy standing for the network link to the destination host.

It listens on a second loopback address (127.0.0.2) on the same ports as
the daemons listen on 127.0.0.1 (their RPC port and migration port range)
and forwards every connection there.  Daemons configured with
``migration_host = "127.0.0.2"`` advertise it to migration sources, and
clients and peer-to-peer sources reach the destination daemon through it:
every byte between "the source side" and the destination crosses it.

:meth:`LinkProxy.cut` is the link going down: every connection through it is
reset at once and new ones are refused until :meth:`LinkProxy.heal`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

PROXY_HOST = "127.0.0.2"
TARGET_HOST = "127.0.0.1"


class LinkProxy:
    def __init__(self, ports: list[int]):
        self.ports = sorted(set(ports))
        self._loop = asyncio.new_event_loop()
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self.is_cut = False
        self._thread = threading.Thread(target=self._loop.run_forever, name="link-proxy", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.close()                 # a port taken: release the ones bound so far
            raise

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self) -> None:
        for port in self.ports:
            server = await asyncio.start_server(lambda r, w, p=port: self._forward(r, w, p),
                                                PROXY_HOST, port, reuse_address=True)
            self._servers.append(server)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        if self.is_cut:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(TARGET_HOST, port)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.close()

    def cut(self) -> None:
        """The link goes down: reset every connection, refuse new ones."""
        async def cut() -> None:
            self.is_cut = True
            for pair in list(self._pairs):
                for w in pair:
                    _reset(w)
            self._pairs.clear()
        self._call(cut())

    def heal(self) -> None:
        self.is_cut = False

    def close(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            for pair in list(self._pairs):
                for w in pair:
                    _reset(w)
        try:
            self._call(close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a link that went away looks to both ends."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()
