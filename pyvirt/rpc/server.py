"""The RPC server: listeners, one session per client, keepalive, limits.

This module moves bytes and frames; what a call *means* is the
:class:`CallHandler`'s business (the daemon's dispatcher).  Each client is
an asyncio Protocol: received bytes go through the sans-I/O
:class:`~pyvirt.rpc.wire.Framer`, and every complete CALL is handed to the
handler at once, so calls on one connection run concurrently and replies
may leave out of order (virsh polls job info while a migration call is
pending on the same connection).

A client that breaks framing (a bad length word, garbage, a packet larger
than the limit) is dropped; the others carry on.  Keepalive follows
libvirt: PING is always answered, and the server pings an idle client only
after the client asked for keepalive (feature 10).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import time
from typing import Any, Protocol

from .protocol.keepalive import PING, PONG
from .wire import EOF, NEED_DATA, Framer, MessageType, Message, Program, ProtocolError, Status, encode_message

log = logging.getLogger(__name__)


class CallHandler(Protocol):
    def client_connected(self, client: "ServerClient") -> None: ...
    def handle_message(self, client: "ServerClient", msg: Message) -> None: ...
    async def client_disconnected(self, client: "ServerClient") -> None: ...


_KEEPALIVE_HDR = {kind: (Program.KEEPALIVE, 1, kind, MessageType.MESSAGE, 0, Status.OK) for kind in (PING, PONG)}


class ServerClient(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: "RPCServer", read_only: bool, listener: str) -> None:
        self.server = server
        self.read_only = read_only
        self.listener = listener
        self.framer = Framer(server.max_message)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.session: Any = None          # the handler's per-client state
        self.closed = False
        self.last_rx = time.monotonic()
        self.keepalive_enabled = False
        self._ka_missed = 0
        self._ka_task: asyncio.Task[None] | None = None
        self._paused_for: set[str] = set()

    # -- asyncio callbacks ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else (peer or self.listener)
        if len(self.server.clients) >= self.server.max_clients:
            log.warning("refusing client %s: %d clients already connected", self.peer, self.server.max_clients)
            self.closed = True
            transport.close()
            return
        self.server.clients.add(self)
        self.server.handler.client_connected(self)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self._ka_missed = 0
        framer = self.framer
        try:
            framer.receive_data(data)
            while True:
                msg = framer.next_message()
                if msg is NEED_DATA or msg is EOF:
                    return
                if msg.header.prog == Program.KEEPALIVE:   # type: ignore[union-attr]
                    self._keepalive(msg)                   # type: ignore[arg-type]
                else:
                    self.server.handler.handle_message(self, msg)  # type: ignore[arg-type]
                if self.closed:
                    return
        except ProtocolError as exc:
            log.warning("dropping client %s: %s", self.peer, exc)
            self.abort()

    def feed(self, data: bytes) -> None:
        """Bytes read by someone else on this connection's behalf (a stream receiver)."""
        if not self.closed:
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        if self._ka_task is not None:
            self._ka_task.cancel()
        if self in self.server.clients:
            self.server.clients.discard(self)
            if not was_closed or self.session is not None:
                self.server.spawn(self.server.handler.client_disconnected(self))

    # -- flow control: reading stops while any reason holds --------------------
    def pause(self, reason: str) -> None:
        """Stop reading from this client (a slow reader, too many calls in flight, a stream)."""
        if not self._paused_for and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._paused_for.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._paused_for:
            return
        self._paused_for.discard(reason)
        if not self._paused_for and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its calls, or the
        # replies would pile up in our memory without bound.
        self.pause("writing")

    def resume_writing(self) -> None:
        self.resume("writing")

    # -- sending ---------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def send_parts(self, parts: list[Any]) -> None:
        if not self.closed and self.transport is not None:
            self.transport.writelines(parts)

    def close(self) -> None:
        """Close after flushing what was queued."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- keepalive -------------------------------------------------------------
    def _keepalive(self, msg: Message) -> None:
        h = msg.header
        if h.vers != 1 or h.type != MessageType.MESSAGE:
            raise ProtocolError(f"malformed keepalive message {h}")
        if h.proc == PING:
            self.send(encode_message(_KEEPALIVE_HDR[PONG]))
        elif h.proc != PONG:
            raise ProtocolError(f"unknown keepalive procedure {h.proc}")

    def start_keepalive(self) -> None:
        """Ping when idle; drop the client after ``count`` unanswered pings."""
        interval, count = self.server.keepalive_interval, self.server.keepalive_count
        if self.keepalive_enabled or interval <= 0:
            return
        self.keepalive_enabled = True

        async def run() -> None:
            while not self.closed:
                await asyncio.sleep(interval)
                if time.monotonic() - self.last_rx < interval:
                    continue
                if self._ka_missed >= count:
                    log.warning("client %s: no answer to %d keepalive pings, dropping it", self.peer, count)
                    self.abort()
                    return
                self._ka_missed += 1
                self.send(encode_message(_KEEPALIVE_HDR[PING]))
        self._ka_task = asyncio.get_running_loop().create_task(run(), name=f"keepalive-{self.peer}")


class RPCServer:
    """Listeners plus the set of connected clients."""

    def __init__(self, handler: CallHandler, *, max_clients: int = 5000, max_message: int = 33554432,
                 keepalive_interval: int = 5, keepalive_count: int = 5) -> None:
        self.handler = handler
        self.max_clients = max_clients
        self.max_message = max_message
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        self.clients: set[ServerClient] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unix_paths: list[str] = []

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def listen_unix(self, path: str, *, read_only: bool = False, mode: int = 0o700) -> None:
        """Listen on a UNIX socket, replacing a stale socket file (never another file type)."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                if _socket_in_use(path):
                    raise OSError(f"{path} is in use by another daemon")
                os.unlink(path)
        except FileNotFoundError:
            pass
        loop = asyncio.get_running_loop()
        old_umask = os.umask(0o077)
        try:
            srv = await loop.create_unix_server(lambda: ServerClient(self, read_only, path), path)
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        self._servers.append(srv)
        self._unix_paths.append(path)

    async def listen_tcp(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: ServerClient(self, False, f"tcp:{host}:{port}"),
                                       host, port, reuse_address=True)
        for sock in srv.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    async def close(self, drop_clients: bool = True) -> None:
        for srv in self._servers:
            srv.close()
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
        for path in self._unix_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if drop_clients:
            for client in list(self.clients):
                client.abort()


def _socket_in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True
