"""The RPC client: one connection to a daemon, calls matched to replies by serial.

Several calls may be in flight at once (replies can come back out of
order); MESSAGEs (events) go to a callback; a PING is answered with PONG.
When the connection is lost, every pending call fails with libvirt's
"end of file" error, and the ``closed`` future is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import struct
import time
from typing import Any, Callable

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from .protocol import Procedure
from .protocol.keepalive import PING, PONG
from .stream import Direction
from .stream.outgoing import OutgoingStream, ReceivingStream
from .wire import NUM_FDS_MAX
from .wire import (EOF, NEED_DATA, Framer, Header, Message, MessageType, Program, ProtocolError,
                   Status, decode_error_payload, encode_call, encode_message)

log = logging.getLogger(__name__)

EventHandler = Callable[[Message], None]


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _eof_error(detail: str = "End of file while reading data: Input/output error") -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC, detail)


class RPCClient(asyncio.Protocol):
    def __init__(self, on_message: EventHandler | None = None) -> None:
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None
        self.serial = 0
        self.pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.on_message = on_message
        self.streams: dict[tuple[int, int], OutgoingStream | ReceivingStream] = {}
        self.reply_nfds: dict[int, int] = {}   # serial -> descriptors its REPLY_WITH_FDS announced
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_rx = time.monotonic()
        self._keepalive: asyncio.Task[None] | None = None

    # -- connecting ----------------------------------------------------------
    @classmethod
    async def connect_tcp(cls, host: str, port: int, **kw: Any) -> "RPCClient":
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_connection(lambda: cls(**kw), host, port)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC,
                        f"unable to connect to server at '{host}:{port}': {_reason(exc)}") from exc
        return proto

    @classmethod
    async def connect_unix(cls, path: str, **kw: Any) -> "RPCClient":
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_unix_connection(lambda: cls(**kw), path)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC,
                        f"Failed to connect socket to '{path}': {_reason(exc)}") from exc
        return proto

    @classmethod
    async def connect_tls(cls, uri: Any, **kw: Any) -> "RPCClient":
        """TLS from the first byte (``qemu+tls://``), then the server's verdict byte;
        :func:`.tls_transport.connect` has the details."""
        from . import tls_transport
        return await tls_transport.connect(uri, client_factory=cls, **kw)

    @classmethod
    async def connect_ssh(cls, plan: Any, **kw: Any) -> "RPCClient":
        """Through an ssh child (``qemu+ssh://``); ``plan`` from :func:`.ssh_transport.plan`."""
        from . import ssh_transport
        return await ssh_transport.connect(plan, **kw)

    # -- asyncio callbacks -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        framer = self.framer
        try:
            framer.receive_data(data)
            while True:
                msg = framer.next_message()
                if msg is NEED_DATA or msg is EOF:
                    return
                self._dispatch(msg)  # type: ignore[arg-type]
        except ProtocolError as exc:
            log.error("protocol error from the server: %s", exc)
            self._fail(error(ErrorNumber.RPC, ErrorDomain.RPC, f"protocol error from the server: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def _dispatch(self, msg: Message) -> None:
        h = msg.header
        if h.type == MessageType.STREAM or h.type == MessageType.STREAM_HOLE or (h.type == MessageType.REPLY and h.serial not in self.pending
                                            and (h.proc, h.serial) in self.streams):
            stream = self.streams.get((h.proc, h.serial))
            if stream is not None:
                stream.received(msg)
            return
        if h.type == MessageType.REPLY or h.type == MessageType.REPLY_WITH_FDS:
            if msg.nfds:
                self.reply_nfds[h.serial] = msg.nfds
            fut = self.pending.pop(h.serial, None)
            if fut is None:
                log.warning("reply for unknown serial %d (proc %d)", h.serial, h.proc)
            elif not fut.done():
                fut.set_result((h.status, msg.payload))
        elif h.prog == Program.KEEPALIVE:
            if h.proc == PING:
                self._send(encode_message((Program.KEEPALIVE, 1, PONG, MessageType.MESSAGE, 0, Status.OK)))
        elif h.type == MessageType.MESSAGE:
            if self.on_message is not None:
                try:
                    self.on_message(msg)
                except Exception:
                    log.exception("event handler failed")
        else:
            log.debug("ignoring message %s", h)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._fail(self.lost_error())
        for stream in list(self.streams.values()):
            stream.connection_lost()
        if not self.closed.done():
            self.closed.set_result(None)

    def lost_error(self) -> libvirtError:
        """The error pending calls get when the connection ends (a transport with
        more to say, such as ssh's stderr, says it here)."""
        return _eof_error()

    def _fail(self, err: libvirtError) -> None:
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)

    def _send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise _eof_error("Cannot write data: the connection is closed")
        self.transport.write(data)

    # -- calls -----------------------------------------------------------------
    async def call(self, prog: int, proc: Procedure, args: tuple[Any, ...] = ()) -> Any:
        payload = proc.encode_args(args)
        status, ret = await self.call_raw(prog, proc.number, payload)
        if status != Status.OK:
            raise decode_error_payload(ret)
        return proc.decode_ret(ret)

    async def call_raw(self, prog: int, proc: int, payload: bytes) -> tuple[int, bytes]:
        if self.closed.done():
            raise _eof_error("Cannot write data: the connection is closed")
        serial = self.serial
        self.serial += 1
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[serial] = fut
        for stream in list(self.streams.values()):
            stream.make_way()       # a download paused reading: the reply must get through
        self._send(encode_call(prog, proc, serial, payload))
        return await fut

    def start_keepalive(self, interval: float = 5.0, count: int = 5) -> None:
        """Ping the server when it has been silent for ``interval`` seconds and drop
        the connection after ``count`` silent intervals more, as libvirt's client
        does: a peer that vanished without a word (power loss, a partition) then
        fails pending calls instead of leaving them waiting for ever.  Every
        server answers PING, asked for keepalive or not."""
        if self._keepalive is not None or interval <= 0:
            return

        async def run() -> None:
            ping = encode_message((Program.KEEPALIVE, 1, PING, MessageType.MESSAGE, 0, Status.OK))
            while not self.closed.done():
                await asyncio.sleep(interval)
                silent = time.monotonic() - self.last_rx
                if silent >= interval * (count + 1):
                    log.warning("no answer from the server for %.0f s: dropping the connection", silent)
                    if self.transport is not None:
                        self.transport.abort()
                    return
                if silent >= interval and self.transport is not None and not self.transport.is_closing():
                    self.transport.write(ping)
        self._keepalive = asyncio.get_running_loop().create_task(run(), name="rpc-keepalive")

    async def call_with_fds(self, prog: int, proc: Procedure, args: tuple[Any, ...]) -> tuple[Any, list[int]]:
        """A call whose reply brings descriptors (REPLY_WITH_FDS; UNIX sockets only).

        The descriptors follow the reply, each on a byte of its own with SCM_RIGHTS,
        which a plain read would discard: until they are in, this client reads the
        socket itself with recvmsg (the transport's reading paused) and hands the
        bytes to the usual path, so messages arriving meanwhile are not lost."""
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or sock.family != socket.AF_UNIX or self.encrypted:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.RPC,
                        "Connection does not support file descriptor passing")
        loop = asyncio.get_running_loop()
        serial = self.serial
        fds: list[int] = []
        transport.pause_reading()
        raw = socket.socket(fileno=os.dup(sock.fileno()))
        try:
            call = asyncio.ensure_future(self.call(prog, proc, args))
            while not (call.done() and len(fds) >= self.reply_nfds.get(serial, 0)):
                readable = loop.create_future()
                loop.add_reader(raw.fileno(), lambda: readable.done() or readable.set_result(None))
                try:
                    await asyncio.wait((readable, call, self.closed), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    loop.remove_reader(raw.fileno())
                if self.closed.done():
                    break
                if not readable.done():
                    continue
                try:
                    data, ancillary, _flags, _addr = raw.recvmsg(65536, socket.CMSG_SPACE(4 * NUM_FDS_MAX))
                except (BlockingIOError, InterruptedError):
                    continue
                got: list[int] = []
                for level, kind, payload in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        got += struct.unpack(f"@{len(payload) // 4}i", payload[:len(payload) - len(payload) % 4])
                if not data:
                    break      # the server closed: the transport, reading again, reports it
                if got:        # the kernel ends a read with a descriptor's marker byte: drop it
                    fds += got
                    data = data[:len(data) - len(got)]
                if data:
                    self.data_received(data)
            ret = await call
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        finally:
            self.reply_nfds.pop(serial, None)
            raw.close()
            if not transport.is_closing():
                transport.resume_reading()
        return ret, fds

    async def call_passing_fds(self, prog: int, proc: Procedure, args: tuple[Any, ...], fds: list[int]) -> Any:
        """A call that brings descriptors (CALL_WITH_FDS; UNIX sockets only): the message,
        then each descriptor with SCM_RIGHTS on a byte of its own, as libvirt's client
        sends them.  Without descriptors it is a plain CALL, as libvirt's."""
        if not fds:
            return await self.call(prog, proc, args)
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or sock.family != socket.AF_UNIX or self.encrypted:
            # libvirt's client finds this out once the message has gone and drops the
            # connection; refused before sending here, the connection stays usable
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC,
                        "Sending file descriptors is not supported on this socket")
        if len(fds) > NUM_FDS_MAX:
            raise error(ErrorNumber.RPC, ErrorDomain.RPC, f"at most {NUM_FDS_MAX} descriptors go with one call")
        if self.closed.done():
            raise _eof_error("Cannot write data: the connection is closed")
        payload = proc.encode_args(args)
        serial = self.serial
        self.serial += 1
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[serial] = fut
        packet = encode_message((prog, 1, proc.number, MessageType.CALL_WITH_FDS, serial, Status.OK), payload,
                                nfds=len(fds))
        try:
            while transport.get_write_buffer_size():   # what the transport holds goes first
                await asyncio.sleep(0.001)
            _send_with_fds(sock, packet, fds)           # no await: nothing can write in between
        except OSError as exc:
            self.pending.pop(serial, None)
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC,
                        f"Failed to send file descriptor {fds[0]}: {_reason(exc)}") from exc
        status, ret = await fut
        if status != Status.OK:
            raise decode_error_payload(ret)
        return proc.decode_ret(ret)

    async def call_stream(self, prog: int, proc: Procedure, args: tuple[Any, ...],
                          sparse: bool = False) -> tuple[Any, ReceivingStream]:
        """A call that opens a stream the server sends on (screenshot, volume download; console, both
        ways); ``sparse``: holes may come (a volume opened with its SPARSE_STREAM flag)."""
        serial = self.serial
        stream = ReceivingStream(self, prog, proc.number, serial, proc.stream or Direction.DOWNLOAD, sparse=sparse)
        self.streams[stream.key] = stream      # before the call: data may follow its reply at once
        try:
            ret = await self.call(prog, proc, args)
        except BaseException:
            self.streams.pop((proc.number, serial), None)
            raise
        return ret, stream

    async def call_upload(self, prog: int, proc: Procedure, args: tuple[Any, ...],
                          sparse: bool = False) -> tuple[Any, OutgoingStream]:
        """A call that opens a client→server stream: returns (reply, stream)."""
        serial = self.serial
        stream = OutgoingStream(self, prog, proc.number, serial, proc.stream or Direction.UPLOAD, sparse=sparse)
        self.streams[stream.key] = stream
        try:
            ret = await self.call(prog, proc, args)
        except BaseException:
            self.streams.pop((proc.number, serial), None)
            raise
        return ret, stream

    @property
    def encrypted(self) -> bool:
        """TLS or a SASL security layer: the socket carries ciphertext, so a pump must not
        write to it directly."""
        transport = self.transport
        return transport is not None and (transport.get_extra_info("ssl_object") is not None
                                          or bool(transport.get_extra_info("sasl_ssf")))

    # Flow control for senders through the transport (a stream over TLS): the
    # transport says when its buffer is over its high-water mark and back under.
    _write_paused: "asyncio.Future[None] | None" = None

    def pause_writing(self) -> None:
        if self._write_paused is None:
            self._write_paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        fut, self._write_paused = self._write_paused, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark (or the connection is gone)."""
        fut = self._write_paused
        if fut is not None and not self.closed.done():
            await asyncio.wait((fut, self.closed), return_when=asyncio.FIRST_COMPLETED)

    def socket_fd(self) -> int:
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            raise _eof_error("Cannot write data: the connection is closed")
        return sock.fileno()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def is_open(self) -> bool:
        return not self.closed.done()


def _send_with_fds(sock: Any, packet: bytes, fds: list[int]) -> None:
    """Write ``packet`` then each descriptor's byte on the socket itself (a blocking wait
    for room, bounded, rather than letting another writer in between)."""
    with socket.socket(fileno=os.dup(sock.fileno())) as raw:
        view = memoryview(packet)
        while view:
            select.select([], [raw], [], 5.0)
            try:
                view = view[raw.send(view):]
            except BlockingIOError:
                continue
        for fd in fds:
            while True:
                select.select([], [raw], [], 5.0)
                try:
                    raw.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("@i", fd))])
                    break
                except BlockingIOError:
                    continue


__all__ = ["RPCClient", "Header"]
