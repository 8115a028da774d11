"""The RPC server: listeners, one session per client, keepalive, limits.

This module moves bytes and frames; what a call *means* is the
:class:`CallHandler`'s business (the daemon's dispatcher).  Each client is
an asyncio Protocol: received bytes go through the sans-I/O
:class:`~pyvirt.rpc.wire.Framer`, and every complete CALL is handed to the
handler at once, so calls on one connection run concurrently and replies
may leave out of order (virsh polls job info while a migration call is
pending on the same connection).

A client that breaks framing (a bad length word, garbage, a packet larger
than the limit) is dropped; the others carry on.

Limits, as libvirtd's (``libvirtd.conf``) where libvirtd has one:

* ``max_clients`` connections at once, of which at most
  ``max_anonymous_clients`` not yet authenticated (a listener without
  authentication makes its clients authenticated at once, as libvirt does;
  a TLS client counts from the end of its handshake, which
  ``tls_handshake_timeout`` bounds, where libvirtd counts it from the accept).
  At either limit the server stops *accepting*, as libvirtd suspends its
  services: further connections wait in the kernel's listen queue, of
  ``max_queued_clients`` entries, and are served when a slot frees; beyond
  the queue the kernel refuses them.
* Keepalive as libvirt's virkeepalive.c: a PING is always answered; a client
  that asked for keepalive (SUPPORTS_FEATURE 10) is pinged after
  ``keepalive_interval`` seconds without a complete message from it and
  dropped when ``keepalive_count`` pings in a row went unanswered, that is
  about interval * (count + 1) seconds after its last message.
* An incomplete frame must be complete within ``frame_timeout`` seconds of
  its first byte, or the client is dropped (libvirtd has no such timer and
  keeps such a client until keepalive, which only applies to clients that
  asked for it).  Time during which the server chose not to read the client
  (too many calls in flight, a stream, memory) does not count.
* Memory of incomplete frames: the Framer holds what arrived, never what a
  length word announces.  A frame announcing up to 256 KiB (every ordinary
  call, a stream chunk) is read to its end at once; a larger one is read on
  only while the large frames being read, counted at their announced
  length, fit in ``max_large_frame_bytes`` (the first always does).  The
  others wait, their bytes in the kernel, and are let in first come first
  served as those complete or their senders are dropped: nothing deadlocks,
  and a client waiting its turn holds no more than the read that brought
  the length word (at most 256 KiB).  So incomplete frames cost at most
  ``max_large_frame_bytes`` + 256 KiB per client, where libvirtd reads every
  client's frame whole (32 MiB each).
* Output: a client that does not read its replies stops being read (so it
  sends no more calls); one that leaves more than ``max_client_output_bytes``
  bytes unread (events keep coming) is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import select
import socket
import stat
import struct
import time
from typing import Any, Protocol

from .fdsocket import FdReader
from .protocol.keepalive import PING, PONG
from .wire import (EOF, FRAME_HEADER_SIZE, LEGACY_PAYLOAD_MAX, MESSAGE_MAX, NEED_DATA, Framer, Message,
                   MessageType, Program, ProtocolError, Status, encode_message)

log = logging.getLogger(__name__)

SMALL_FRAME = FRAME_HEADER_SIZE + LEGACY_PAYLOAD_MAX
"""A frame announcing this size or less is always read to its end (256 KiB: a stream chunk)."""
ACCEPT_BATCH = 64
"""Connections accepted per wake-up of a listener, so a flood cannot starve the clients."""
ACCEPT_RETRY = 1.0
"""Seconds before accepting again after running out of descriptors or memory."""
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class CallHandler(Protocol):
    def client_connected(self, client: "ServerClient") -> None: ...
    def handle_message(self, client: "ServerClient", msg: Message) -> None: ...
    async def client_disconnected(self, client: "ServerClient") -> None: ...


_NOT_PAUSED: frozenset[str] = frozenset()
_FDS_FROM_CLIENTS = (MessageType.CALL_WITH_FDS,)
"""The one type whose fd count libvirtd reads from a client (any other is ignored whole)."""
_KEEPALIVE_HDR = {kind: (Program.KEEPALIVE, 1, kind, MessageType.MESSAGE, 0, Status.OK) for kind in (PING, PONG)}


class ServerClient(asyncio.Protocol):
    """One client connection."""

    # thousands of these may sit idle: no per-instance dict
    __slots__ = ("server", "read_only", "listener", "authenticated", "framer", "transport", "peer", "session",
                 "tls", "x509_dname", "closed", "connected", "last_message", "keepalive_enabled", "_ka_left",
                 "_ka_timer", "_held", "_admitted", "_frame_started", "_frame_timer", "_paused_for", "_handshaking",
                 "_fdsock", "__weakref__")

    def __init__(self, server: "RPCServer", read_only: bool, listener: str, authenticated: bool = True,
                 tls: Any = None) -> None:
        self.server = server
        self.tls = tls                    # the listener's ServerTLS (rpc.tlsconfig), None: plain
        self.x509_dname: str | None = None   # the client certificate's DN (libvirt's form), once checked
        self._handshaking = False         # TLS handshake and checks not over: not counted as anonymous yet
        self.read_only = read_only
        self.listener = listener
        self.authenticated = authenticated
        self.framer = Framer(server.max_message, with_fds=_FDS_FROM_CLIENTS)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.session: Any = None          # the handler's per-client state
        self.closed = False
        self.connected = False
        self.last_message = time.monotonic()   # when the last complete message arrived
        self.keepalive_enabled = False
        self._ka_left = 0                 # pings still allowed without an answer
        self._ka_timer: asyncio.TimerHandle | None = None
        self._held = 0                    # bytes of an incomplete frame after the last read
        self._admitted = 0                # announced length of the large frame let in, 0: none
        self._frame_started = 0.0
        self._frame_timer: asyncio.TimerHandle | None = None
        self._paused_for: set[str] | frozenset[str] = _NOT_PAUSED   # a set of its own once paused
        self._fdsock: FdReader | None = None   # reads a UNIX client that passes descriptors (not the transport)

    # -- asyncio callbacks ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else (peer or self.listener)
        if self.closed:              # the server closed meanwhile
            transport.abort()
            return
        if self.tls is not None and not self._tls_admitted(transport):
            return
        self.connected = True
        self.server.handler.client_connected(self)

    def _tls_admitted(self, transport: asyncio.BaseTransport) -> bool:
        """The handshake is over: libvirt's checks of the client's certificate,
        then the one encrypted byte 1 its client waits for, or the close."""
        dname, refused = self.tls.check_client(transport.get_extra_info("ssl_object"))
        self.x509_dname = dname
        if refused:
            log.warning("refusing TLS client %s%s: %s", self.peer, f" ({dname})" if dname else "", refused)
            self.closed = True
            transport.close()
            return False
        log.debug("TLS client %s: certificate %s accepted", self.peer, dname)
        transport.write(b"\x01")
        self._handshaking = False
        if not self.authenticated:        # SASL on top: anonymous from now on
            self.server._now_anonymous(self)
        return True

    def plain_socket(self) -> socket.socket | None:
        """The connection's socket when its bytes are the RPC stream itself (not
        TLS): only then may a pump move stream payloads on it directly."""
        transport = self.transport
        if transport is None or self.tls is not None:
            return None
        return transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        framer = self.framer
        completed = False
        try:
            framer.receive_data(data)
            while True:
                msg = framer.next_message()
                if msg is NEED_DATA or msg is EOF:
                    break
                if not completed:
                    # Any complete message shows the client alive (virKeepAliveCheckMessage);
                    # bytes of an unfinished one do not.
                    completed = True
                    self.last_message = time.monotonic()
                    self._ka_left = self.server.keepalive_count
                if msg.header.prog == Program.KEEPALIVE:   # type: ignore[union-attr]
                    self._keepalive(msg)                   # type: ignore[arg-type]
                else:
                    self.server.handler.handle_message(self, msg)  # type: ignore[arg-type]
                if self.closed:
                    return
        except ProtocolError as exc:
            log.warning("dropping client %s: %s", self.peer, exc)
            self.abort()
            return
        held = framer.buffered
        if held or self._held or self._admitted:
            self._incomplete(held, completed)

    def feed(self, data: bytes) -> None:
        """Bytes read by someone else on this connection's behalf (a stream receiver)."""
        if not self.closed:
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._fdsock is not None:     # with the descriptors sent but never claimed by a call
            self._stop_fd_reading()
            self._fdsock.close()
        for timer in (self._ka_timer, self._frame_timer):
            if timer is not None:
                timer.cancel()
        self._ka_timer = self._frame_timer = None
        self.server._forget(self)
        if self.connected:
            self.connected = False
            self.server.spawn(self.server.handler.client_disconnected(self))

    def mark_authenticated(self) -> None:
        """Authentication succeeded: the client no longer counts against max_anonymous_clients."""
        if not self.authenticated:
            self.authenticated = True
            self.server._authenticated(self)

    # -- flow control: reading stops while any reason holds --------------------
    def pause(self, reason: str) -> None:
        """Stop reading from this client (a slow reader, too many calls in flight, a stream)."""
        if not self._paused_for:
            self._paused_for = set()
            if self.transport is not None and not self.closed:
                if self._fdsock is not None:
                    self._stop_fd_reading()
                else:
                    self.transport.pause_reading()
        self._paused_for.add(reason)   # type: ignore[union-attr]

    def resume(self, reason: str) -> None:
        if reason not in self._paused_for:
            return
        self._paused_for.discard(reason)   # type: ignore[union-attr]
        if not self._paused_for:
            self._paused_for = _NOT_PAUSED
            if self.transport is not None and not self.closed:
                if self._fdsock is not None:
                    self._start_fd_reading()
                else:
                    self.transport.resume_reading()
        if reason != "writing" and not self._paused_by_us() and not self.closed:
            # Reading again: an incomplete frame gets its full time from now on.
            self._held = self.framer.buffered
            if self._held:
                self._frame_started = time.monotonic()
                self._arm_frame_timer()

    def _paused_by_us(self) -> bool:
        """Reading stopped for a reason of ours (calls in flight, a stream, memory),
        not because the client does not read its replies."""
        return len(self._paused_for) > ("writing" in self._paused_for)

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its calls, or the
        # replies would pile up in our memory without bound.
        self.pause("writing")

    def resume_writing(self) -> None:
        self.resume("writing")

    # -- sending ---------------------------------------------------------------
    def send(self, data: bytes) -> None:
        transport = self.transport
        if not self.closed and transport is not None:
            if transport.get_write_buffer_size() > self.server.max_client_output_bytes:
                return self._not_reading()
            transport.write(data)

    def send_parts(self, parts: list[Any]) -> None:
        transport = self.transport
        if not self.closed and transport is not None:
            if transport.get_write_buffer_size() > self.server.max_client_output_bytes:
                return self._not_reading()
            transport.writelines(parts)

    # -- descriptors from the client (CALL_WITH_FDS) ----------------------------
    def enable_fd_passing(self) -> None:
        """The client asked whether descriptors may be passed (libvirt's client always asks,
        and waits for the answer, before a call that passes any): from now on this
        connection is read by recvmsg, which keeps them, instead of by the transport.
        Only a plain UNIX socket carries them."""
        transport = self.transport
        if self._fdsock is not None or self.closed or transport is None or not self.can_pass_fds():
            return
        self._fdsock = FdReader(transport.get_extra_info("socket").fileno())
        self.framer.fd_markers = True
        if not self._paused_for:         # else already paused: resume() starts the reading
            transport.pause_reading()
            self._start_fd_reading()

    def _start_fd_reading(self) -> None:
        asyncio.get_running_loop().add_reader(self._fdsock.fileno(), self._fd_readable)  # type: ignore[union-attr]

    def _stop_fd_reading(self) -> None:
        try:
            asyncio.get_running_loop().remove_reader(self._fdsock.fileno())  # type: ignore[union-attr]
        except (RuntimeError, ValueError):   # no loop any more, or already closed
            pass

    def _fd_readable(self) -> None:
        try:
            data = self._fdsock.read()   # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.data_received(data)
            return
        # the end (or a reset): the transport reads it again and closes as always
        self._stop_fd_reading()
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def take_fds(self, count: int) -> list[int]:
        """The descriptors a CALL_WITH_FDS announced, now the caller's to close (libvirtd reads
        them only on a UNIX socket, and drops a client whose descriptors do not come)."""
        if not count:
            return []
        if self._fdsock is None:
            raise ProtocolError(f"{count} fds announced on a connection that cannot pass them")
        fds = self._fdsock.take_fds(count)
        if fds is None:
            raise ProtocolError(f"{count} fds announced, {len(self._fdsock.fds)} received")
        return fds

    def can_pass_fds(self) -> bool:
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        return sock is not None and sock.family == socket.AF_UNIX

    def send_with_fds(self, data: bytes, fds: list[int]) -> None:
        """A REPLY_WITH_FDS: ``data``, then one byte with SCM_RIGHTS per descriptor, nothing
        between them (libvirt's client reads the message, then each descriptor's byte).

        Written on the socket itself, so only once what the transport holds has gone."""
        transport = self.transport
        if self.closed or transport is None:
            raise OSError(errno.ENOTCONN, "the client is gone")
        if transport.get_write_buffer_size():
            raise OSError(errno.EAGAIN, "the client has unread output; retry the call")
        sock = transport.get_extra_info("socket")
        with socket.socket(fileno=os.dup(sock.fileno())) as raw:
            view = memoryview(data)
            while view:
                select.select([], [raw], [], 5.0)
                sent = raw.send(view)
                view = view[sent:]
            for fd in fds:
                select.select([], [raw], [], 5.0)
                raw.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("@i", fd))])

    def _not_reading(self) -> None:
        log.warning("dropping client %s: it left more than %d bytes unread", self.peer,
                    self.server.max_client_output_bytes)
        self.abort()

    def close(self) -> None:
        """Close after flushing what was queued."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- incomplete frames: memory and time --------------------------------------
    def _incomplete(self, held: int, completed: bool) -> None:
        """After a read: ``held`` bytes of a frame not complete yet (0: none);
        ``completed``: at least one message was complete in this read."""
        new_frame = completed or not self._held
        self._held = held
        if completed and self._admitted:
            self.server._release(self)       # the large frame it was let in for is complete
        if not held:
            return
        if new_frame:
            self._frame_started = time.monotonic()
        self._arm_frame_timer()
        if not self._admitted and self.framer.pending_length > SMALL_FRAME and not self._paused_by_us():
            self.server._admit(self)      # (a client we stopped reading asks when it is read again)

    def _arm_frame_timer(self) -> None:
        timeout = self.server.frame_timeout
        if self._frame_timer is None and timeout > 0 and not self._paused_by_us():
            delay = self._frame_started + timeout - time.monotonic()
            self._frame_timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._frame_check)

    def _frame_check(self) -> None:
        self._frame_timer = None
        framer = self.framer
        if self.closed or not framer.buffered or self._paused_by_us():
            return    # complete, gone, or not ours to blame (resume arms a new timer)
        timeout = self.server.frame_timeout
        if time.monotonic() < self._frame_started + timeout:
            return self._arm_frame_timer()     # a newer frame started meanwhile
        log.warning("dropping client %s: a frame of %d bytes still incomplete after %g s (%d bytes received)",
                    self.peer, framer.pending_length, timeout, framer.buffered)
        self.abort()

    # -- keepalive -------------------------------------------------------------
    def _keepalive(self, msg: Message) -> None:
        h = msg.header
        if h.vers != 1 or h.type != MessageType.MESSAGE:
            # not keepalive's to take (virKeepAliveCheckMessage): the handler answers
            # a CALL as one to a program it does not serve and ignores the rest
            return self.server.handler.handle_message(self, msg)
        if h.proc == PING:
            self.send(encode_message(_KEEPALIVE_HDR[PONG]))
        elif h.proc != PONG:
            log.debug("client %s: ignoring unknown keepalive procedure %d", self.peer, h.proc)

    def start_keepalive(self) -> None:
        """Ping after ``interval`` seconds without a message; drop after ``count`` unanswered pings."""
        interval = self.server.keepalive_interval
        if self.keepalive_enabled or interval <= 0 or self.closed:
            return
        self.keepalive_enabled = True
        self._ka_left = self.server.keepalive_count
        self._arm_keepalive(self.last_message + interval - time.monotonic())

    def _arm_keepalive(self, delay: float) -> None:
        self._ka_timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._keepalive_check)

    def _keepalive_check(self) -> None:
        self._ka_timer = None
        if self.closed:
            return
        interval = self.server.keepalive_interval
        idle = time.monotonic() - self.last_message
        if idle < interval:                      # the client spoke meanwhile
            return self._arm_keepalive(interval - idle)
        if self._ka_left <= 0:
            log.warning("dropping client %s: connection closed due to keepalive timeout "
                        "(no message in %.0f s, %d keepalive pings unanswered)",
                        self.peer, idle, self.server.keepalive_count)
            return self.abort()
        self._ka_left -= 1
        self.send(encode_message(_KEEPALIVE_HDR[PING]))
        self._arm_keepalive(interval)


class _Listener:
    __slots__ = ("sock", "name", "read_only", "auth_required", "unix_path", "tls", "watched")

    def __init__(self, sock: socket.socket, name: str, read_only: bool, auth_required: bool,
                 unix_path: str | None = None, tls: Any = None) -> None:
        self.sock, self.name, self.read_only = sock, name, read_only
        self.auth_required, self.unix_path = auth_required, unix_path
        self.tls = tls
        self.watched = False


class RPCServer:
    """Listeners plus the set of connected clients."""

    def __init__(self, handler: CallHandler, *, max_clients: int = 5000, max_anonymous_clients: int = 20,
                 max_queued_clients: int = 1000, max_message: int = MESSAGE_MAX,
                 keepalive_interval: int = 5, keepalive_count: int = 5, frame_timeout: float = 30.0,
                 max_large_frame_bytes: int = MESSAGE_MAX, max_client_output_bytes: int = 2 * MESSAGE_MAX) -> None:
        self.handler = handler
        self.max_clients = max_clients
        self.max_anonymous_clients = max_anonymous_clients   # 0: no limit (libvirt)
        self.max_queued_clients = max_queued_clients
        self.max_message = max_message
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        self.frame_timeout = frame_timeout
        self.max_large_frame_bytes = max_large_frame_bytes
        self.max_client_output_bytes = max_client_output_bytes
        self.clients: set[ServerClient] = set()
        self.anonymous = 0                # clients not authenticated yet
        self.admitted_bytes = 0           # announced lengths of the large frames being read
        self._memory_waiters: collections.deque[ServerClient] = collections.deque()
        self._listeners: list[_Listener] = []
        self._accepting = False
        self._retry_at: asyncio.TimerHandle | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- listeners ---------------------------------------------------------------
    async def listen_unix(self, path: str, *, read_only: bool = False, mode: int = 0o700,
                          auth_required: bool = False) -> None:
        """Listen on a UNIX socket, replacing a stale socket file (never another file type)."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                if _socket_in_use(path):
                    raise OSError(f"{path} is in use by another daemon")
                os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o077)
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            os.chmod(path, mode)
            sock.listen(self.max_queued_clients)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._add_listener(_Listener(sock, path, read_only, auth_required, unix_path=path))

    async def listen_tcp(self, host: str, port: int, *, auth_required: bool = False, tls: Any = None) -> int:
        """Listen on every address ``host`` resolves to; returns the (first) port.
        With ``tls`` (an rpc.tlsconfig.ServerTLS) TLS starts at the first byte."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        socks: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(address)
                except OSError as exc:
                    raise OSError(exc.errno, f"error while attempting to bind on address {address!r}: "
                                  f"{(exc.strerror or str(exc)).lower()}") from None
                sock.listen(self.max_queued_clients)
                sock.setblocking(False)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        for sock in socks:
            self._add_listener(_Listener(sock, f"{'tls' if tls else 'tcp'}:{host}:{port}", False, auth_required,
                                         tls=tls))
        return socks[0].getsockname()[1]

    def _add_listener(self, listener: _Listener) -> None:
        self._listeners.append(listener)
        if self._accepting:
            self._watch(listener, True)
        else:
            self._check_limits()

    def _watch(self, listener: _Listener, on: bool) -> None:
        if listener.watched == on:
            return
        listener.watched = on
        loop = asyncio.get_running_loop()
        if on:
            loop.add_reader(listener.sock.fileno(), self._accept, listener)
        else:
            loop.remove_reader(listener.sock.fileno())

    # -- accepting, within the limits -----------------------------------------------
    def _may_accept(self) -> bool:
        return (not self._closing and self._retry_at is None and len(self.clients) < self.max_clients
                and (not self.max_anonymous_clients or self.anonymous < self.max_anonymous_clients))

    def _check_limits(self) -> None:
        """Accept while both limits allow one more client; otherwise leave new
        connections in the listen queue (libvirt's virNetServerCheckLimits)."""
        may = self._may_accept()
        if may == self._accepting:
            return
        self._accepting = may
        if not may and not self._closing:
            log.info("not accepting clients for now: %d connected (max_clients %d), %d not authenticated "
                     "(max_anonymous_clients %d)", len(self.clients), self.max_clients, self.anonymous,
                     self.max_anonymous_clients)
        elif may:
            log.info("accepting clients again")
        for listener in self._listeners:
            self._watch(listener, may)

    def _accept(self, listener: _Listener) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._accepting:
                return
            try:
                conn, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                log.error("cannot accept a client on %s: %s", listener.name, exc)
                if exc.errno in _RESOURCE_ERRORS:    # try again later rather than spin
                    self._retry_at = asyncio.get_running_loop().call_later(ACCEPT_RETRY, self._retry)
                    self._check_limits()
                return
            self._adopt(conn, listener)

    def _retry(self) -> None:
        self._retry_at = None
        self._check_limits()

    def _adopt(self, conn: socket.socket, listener: _Listener) -> None:
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = ServerClient(self, listener.read_only, listener.name, authenticated=not listener.auth_required,
                              tls=listener.tls)
        if client.tls is not None:      # known before the handshake, which may fail and must name it
            try:
                peer = conn.getpeername()
                client.peer = f"{peer[0]}:{peer[1]}"
            except OSError:             # already reset by the client
                pass
        self.clients.add(client)
        # A TLS client counts as anonymous only once its handshake and certificate
        # checks are over: stalled handshakes (bounded by the handshake timeout and
        # max_clients) must not fill max_anonymous_clients and stop the accepting.
        client._handshaking = client.tls is not None
        if not client.authenticated and not client._handshaking:
            self.anonymous += 1
        self._check_limits()
        self.spawn(self._connect(client, conn))

    async def _connect(self, client: ServerClient, conn: socket.socket) -> None:
        tls = client.tls
        try:
            if tls is None:
                await asyncio.get_running_loop().connect_accepted_socket(lambda: client, conn)
            else:
                # The handshake runs on the loop without blocking it; one that does not
                # finish within the timeout (a client that stalls) is dropped.
                await asyncio.get_running_loop().connect_accepted_socket(
                    lambda: client, conn, ssl=tls.context, ssl_handshake_timeout=tls.handshake_timeout)
        except Exception as exc:
            if tls is None:
                log.warning("client on %s lost while connecting: %s", client.listener, exc)
            else:
                # name the client: an operator looks for the machine whose certificate failed
                log.warning("TLS handshake with client %s on %s failed: %s", client.peer, client.listener,
                            "timed out" if isinstance(exc, (TimeoutError, ConnectionAbortedError)) else exc)
            conn.close()
            client.closed = True
            self._forget(client)

    def _authenticated(self, client: ServerClient) -> None:
        if client in self.clients and not client._handshaking:
            self.anonymous -= 1
            self._check_limits()

    def _now_anonymous(self, client: ServerClient) -> None:
        if client in self.clients:
            self.anonymous += 1
            self._check_limits()

    def _forget(self, client: ServerClient) -> None:
        """A client is gone: free its slot and whatever its incomplete frame held."""
        if client not in self.clients:
            return
        self.clients.discard(client)
        if not client.authenticated and not client._handshaking:
            self.anonymous -= 1
        if client._admitted:
            self._release(client)
        elif client in self._memory_waiters:
            self._memory_waiters.remove(client)
        self._check_limits()

    # -- memory of incomplete frames ---------------------------------------------------
    def _fits(self, length: int) -> bool:
        return not self.admitted_bytes or self.admitted_bytes + length <= self.max_large_frame_bytes

    def _admit(self, client: ServerClient) -> None:
        """``client`` announced a frame over 256 KiB: read on if its length fits, else wait its turn."""
        length = client.framer.pending_length
        if not self._memory_waiters and self._fits(length):
            client._admitted = length
            self.admitted_bytes += length
            return
        if client not in self._memory_waiters:
            log.info("client %s: not reading its %d-byte frame further while %d bytes of large frames are "
                     "being read (max_large_frame_bytes %d)", client.peer, length, self.admitted_bytes,
                     self.max_large_frame_bytes)
            self._memory_waiters.append(client)
            client.pause("memory")

    def _release(self, client: ServerClient) -> None:
        self.admitted_bytes -= client._admitted
        client._admitted = 0
        waiters = self._memory_waiters
        while waiters and self._fits(waiters[0].framer.pending_length):
            nxt = waiters.popleft()
            nxt._admitted = nxt.framer.pending_length
            self.admitted_bytes += nxt._admitted
            nxt.resume("memory")

    # -- shutting down -------------------------------------------------------------------
    async def close(self, drop_clients: bool = True) -> None:
        self._closing = True
        for listener in self._listeners:
            self._watch(listener, False)
            listener.sock.close()
            if listener.unix_path:
                try:
                    os.unlink(listener.unix_path)
                except FileNotFoundError:
                    pass
        self._listeners.clear()
        self._accepting = False
        if self._retry_at is not None:
            self._retry_at.cancel()
            self._retry_at = None
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
