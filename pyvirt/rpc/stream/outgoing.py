"""The client's end of a client→server stream (tunnelled migration's source).

Data goes straight from a file descriptor to the socket (:class:`~.pump.FdUploader`
on its own thread); the end is a STREAM/OK that the server acknowledges; an
abort is an empty STREAM/ERROR.  A failure the server reports mid-stream
stops the pump and reaches ``on_failure``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from typing import Any, Callable, Protocol

from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..wire import Message
from . import pump
from . import state as _state
from .state import Abort, Ack, Data, Direction, Failed, Finish, RemoteStreamError, Role, Stream

log = logging.getLogger(__name__)


class StreamConnection(Protocol):
    """What a stream needs of the client connection it travels on."""

    is_open: bool
    streams: dict[tuple[int, int], Any]

    def _send(self, data: bytes) -> None: ...
    def socket_fd(self) -> int: ...


def _closed_error(detail: str) -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC, detail)


class OutgoingStream:
    """The sending end of stream ``(prog, proc, serial)`` on ``client``."""

    def __init__(self, client: StreamConnection, prog: int, proc: int, serial: int,
                 direction: Direction = Direction.UPLOAD, sparse: bool = False) -> None:
        self.client = client
        self.state = Stream(prog, proc, serial, role=Role.CLIENT, direction=direction, sparse=sparse)
        self._ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._uploader: pump.FdUploader | None = None
        self.failure: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self.sent = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.state.proc, self.state.serial)

    def __repr__(self) -> str:
        return f"<OutgoingStream {self.state!r}>"

    # -- from the server -------------------------------------------------------------
    def received(self, msg: Message) -> None:
        """A packet of this stream from the server: the acknowledgement or a failure."""
        try:
            event = self.state.receive(msg)
        except RemoteStreamError as exc:
            return self._failed(error(ErrorNumber.RPC, ErrorDomain.STREAMS, f"protocol error on the stream: {exc}"))
        if type(event) is Ack:
            if not self._ack.done():
                self._ack.set_result(None)
        elif type(event) is Failed:
            self._failed(event.error)   # type: ignore[union-attr]

    def connection_lost(self) -> None:
        self._failed(_closed_error("the stream was closed by the server"))

    def _failed(self, err: BaseException) -> None:
        self.failure = self.failure or err
        self.stop()
        if not self._ack.done():
            self._ack.set_exception(err)
            self._ack.exception()   # retrieved here; callers see self.failure
        if self.on_failure is not None:
            self.on_failure(err)

    # -- data -------------------------------------------------------------------------
    async def send_from_fd(self, fd: int) -> int:
        """Upload everything readable from ``fd`` until its EOF."""
        if getattr(self.client, "encrypted", False):
            return await self._send_through_transport(fd)
        state = self.state
        uploader = pump.FdUploader(fd, self.client.socket_fd(), state.prog, state.proc, state.serial)
        self._uploader = uploader
        try:
            self.sent = await pump.start(uploader, "rpc-upload")   # the descriptors are closed for us
            return self.sent
        except asyncio.CancelledError:
            uploader.stop()
            raise
        finally:
            self._uploader = None

    async def _send_through_transport(self, fd: int) -> int:
        """Over TLS the payload must pass through the TLS layer: read ``fd`` on the
        event loop and write each chunk as a STREAM packet through the transport,
        waiting while the transport holds more than its high-water mark."""
        loop = asyncio.get_running_loop()
        client: Any = self.client
        os.set_blocking(fd, False)
        while self.failure is None:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(fd)
            try:
                data = os.read(fd, pump.CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                break
            if self.failure is not None:
                break
            for part in self.state.send(Data(data)):
                client._send(part)
            self.sent += len(data)
            await client.drain()
        if self.failure is not None:
            raise self.failure
        return self.sent

    async def send(self, data: bytes) -> int:
        """One write of the caller's data (libvirt's virStreamSend): STREAM packets
        through the transport, waiting while it holds more than its high-water mark."""
        if self.failure is not None:
            raise self.failure
        if data:
            try:
                parts = self.state.send(Data(data))
            except _state.LocalStreamError as exc:
                raise error(ErrorNumber.RPC, ErrorDomain.STREAMS, str(exc)) from None
            self.client._send(b"".join(parts))
            self.sent += len(data)
            drain = getattr(self.client, "drain", None)
            if drain is not None:
                await drain()
        return len(data)

    async def send_hole(self, length: int, flags: int = 0) -> None:
        """A hole of ``length`` bytes (libvirt's virStreamSendHole); only on a sparse stream."""
        if self.failure is not None:
            raise self.failure
        self.client._send(b"".join(self.state.send(_state.Hole(length, flags))))

    def make_way(self) -> None:
        """A call is made on the connection (nothing to do: this stream never pauses reading)."""

    def stop(self) -> None:
        """Stop the pump at once (the data is not over: abort or fail follows)."""
        if self._uploader is not None:
            self._uploader.stop()

    # -- the end ------------------------------------------------------------------------
    async def finish(self) -> None:
        """End the stream and wait for the server's acknowledgement."""
        if self.failure is not None:
            raise self.failure
        self.client._send(b"".join(self.state.send(Finish())))
        try:
            await self._ack
        except libvirtError:
            raise self.failure or _closed_error("End of file while reading data: Input/output error")
        finally:
            self.client.streams.pop(self.key, None)

    async def abort(self, timeout: float = 5.0) -> None:
        """Stop sending and tell the server; never raises."""
        self.stop()
        try:
            if not self._ack.done() and self.client.is_open:
                self.client._send(b"".join(self.state.send(Abort())))
                await asyncio.wait_for(asyncio.shield(self._ack), timeout)
        except Exception as exc:
            log.debug("stream abort: %s", exc)
        finally:
            self.client.streams.pop(self.key, None)


class ReceivingStream:
    """The client's end of a download or two-way stream (console, screenshot).

    What the server sends is queued here as it arrives (a console's output, an
    image: small, so no pump); :meth:`recv` takes from the queue, an empty
    result meaning the server's data is over.  :meth:`send` writes a packet at
    once.  :meth:`finish` / :meth:`abort` end the stream and wait for the
    server's acknowledgement.
    """

    # Reading from the connection stops while this much arrived that the caller has
    # not taken (a volume downloaded faster than it is written), and resumes below LOW.
    QUEUED_HIGH = 8 << 20
    QUEUED_LOW = 2 << 20

    def __init__(self, client: StreamConnection, prog: int, proc: int, serial: int,
                 direction: Direction, sparse: bool = False) -> None:
        self.client = client
        self.state = Stream(prog, proc, serial, role=Role.CLIENT, direction=direction, sparse=sparse)
        # the server's data in order: bytes, or an int for a hole of that many bytes
        self.chunks: collections.deque[bytes | int] = collections.deque()
        self.queued = 0
        self.paused = False
        self.eof = False
        self.failure: BaseException | None = None
        self._ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake: asyncio.Future[None] | None = None
        self.on_failure: Callable[[BaseException], None] | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.state.proc, self.state.serial)

    def __repr__(self) -> str:
        return f"<ReceivingStream {self.state!r}>"

    # -- from the server -----------------------------------------------------------------
    def received(self, msg: Message) -> None:
        try:
            event = self.state.receive(msg)
        except RemoteStreamError as exc:
            return self._failed(error(ErrorNumber.RPC, ErrorDomain.STREAMS, f"protocol error on the stream: {exc}"))
        kind = type(event)
        if kind is _state.Data:
            self.chunks.append(bytes(event.data))      # type: ignore[union-attr]
            self.queued += len(event.data)             # type: ignore[union-attr]
            if self.queued > self.QUEUED_HIGH:
                self._reading(False)
        elif kind is _state.Hole:
            if event.length:                           # type: ignore[union-attr]
                self.chunks.append(event.length)       # type: ignore[union-attr]
        elif kind is _state.EndOfData:
            self.eof = True
        elif kind is Ack:
            if not self._ack.done():
                self._ack.set_result(None)
        elif kind is Failed:
            return self._failed(event.error)           # type: ignore[union-attr]
        self._notify()

    def connection_lost(self) -> None:
        self._failed(error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC, "the stream was closed by the server"))

    def _failed(self, err: BaseException) -> None:
        self.failure = self.failure or err
        if not self._ack.done():
            self._ack.set_exception(err)
            self._ack.exception()
        self._notify()
        if self.on_failure is not None:
            self.on_failure(err)

    def make_way(self) -> None:
        """A call is made on the connection: read again until its reply is in, whatever
        this stream has queued (the data waits in memory meanwhile, as with libvirt's client)."""
        self._reading(True)

    def _reading(self, on: bool) -> None:
        if on != self.paused:           # already reading (or already paused)
            return
        if not on and getattr(self.client, "pending", None):
            return                      # a reply is awaited: never hold it up
        transport = getattr(self.client, "transport", None)
        if transport is None or transport.is_closing():
            self.paused = False
            return
        self.paused = not on
        if on:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _notify(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- data ------------------------------------------------------------------------------
    def pending(self) -> bool:
        """True if :meth:`recv` would not wait."""
        return bool(self.chunks) or self.eof or self.failure is not None

    async def recv(self, nbytes: int, stop_at_hole: bool = False) -> bytes | int:
        """Up to ``nbytes`` of the server's data, waiting for some; b"" once it is over.

        A hole reads as zeros, or, with ``stop_at_hole``, as -3 (libvirt's
        VIR_STREAM_RECV_STOP_AT_HOLE) until :meth:`recv_hole` takes it."""
        while not self.chunks:
            if self.failure is not None:
                raise self.failure
            if self.eof:
                return b""
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        chunk = self.chunks.popleft()
        if isinstance(chunk, int):
            if stop_at_hole:
                self.chunks.appendleft(chunk)
                return -3
            if chunk > nbytes:
                self.chunks.appendleft(chunk - nbytes)
                chunk = nbytes
            return bytes(chunk)
        if len(chunk) > nbytes:
            self.chunks.appendleft(chunk[nbytes:])
            chunk = chunk[:nbytes]
        self.queued -= len(chunk)
        if self.paused and self.queued < self.QUEUED_LOW:
            self._reading(True)
        return chunk

    async def recv_hole(self) -> int:
        """The length of the hole the data has reached (0: none); it is consumed."""
        if self.chunks and isinstance(self.chunks[0], int):
            return self.chunks.popleft()       # type: ignore[return-value]
        return 0

    async def send(self, data: bytes) -> int:
        if self.failure is not None:
            raise self.failure
        if data:
            try:
                parts = self.state.send(_state.Data(data))
            except _state.LocalStreamError as exc:
                raise error(ErrorNumber.RPC, ErrorDomain.STREAMS, str(exc)) from None
            self.client._send(b"".join(parts))
        return len(data)

    # -- the end ------------------------------------------------------------------------------
    async def finish(self) -> None:
        if self.failure is not None:
            raise self.failure
        self._reading(True)        # the acknowledgement must get through
        try:
            self.client._send(b"".join(self.state.send(Finish())))
            await self._ack
        except libvirtError:
            raise self.failure or _closed_error("End of file while reading data: Input/output error")
        finally:
            self.client.streams.pop(self.key, None)

    async def abort(self, timeout: float = 5.0) -> None:
        self._reading(True)
        try:
            if not self._ack.done() and self.client.is_open:
                self.client._send(b"".join(self.state.send(Abort())))
                await asyncio.wait_for(asyncio.shield(self._ack), timeout)
        except Exception as exc:
            log.debug("stream abort: %s", exc)
        finally:
            self.client.streams.pop(self.key, None)


__all__ = ["OutgoingStream", "ReceivingStream", "StreamConnection"]
