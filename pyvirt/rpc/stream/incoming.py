"""The server's end of a client→server stream: the client's data into a pipe.

When a call's reply opens a stream (tunnelled migration's Prepare), the
daemon gives an :class:`IncomingStream` the pipe the driver reads and the
callback to run at the end, routes the stream's packets to
:meth:`IncomingStream.receive` and does nothing else: the pipe I/O is here.

After the reply the stream takes the connection's reading over and a
:class:`~.pump.SpliceReceiver` moves the payload socket → pipe on its own
thread.  Packets that reach the event loop instead (none on a plain socket,
but the path is kept correct) are written with backpressure: when the pipe
is full, reading from the client stops until it drains.  The client's
finish is acknowledged only once every byte is in the pipe.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import stat
from typing import Any, Callable

from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..server import ServerClient
from ..wire import LEN_SIZE, PROTOCOL_VERSION, Header, Message, MessageType
from . import pump
from ... import sparsefile
from .state import Abort, Ack, Data, Direction, EndOfData, Failed, Finish, Hole, LocalStreamError, \
    RemoteStreamError, Role, Stream, StreamState

log = logging.getLogger(__name__)


class IncomingStream:
    """Stream ``header`` of ``client``, written into ``fd``; ``done(error or None)`` at the end.

    ``fd`` belongs to the stream from now on: it is closed at the end (after
    the receiving thread let go of it), which the reader sees as EOF.
    ``on_closed`` runs when the stream is over, before ``done``.
    """

    def __init__(self, client: ServerClient, fd: int, done: Callable[[BaseException | None], Any],
                 header: Header, direction: Direction = Direction.UPLOAD,
                 on_closed: Callable[[], None] = lambda: None) -> None:
        self.client, self.fd, self._done, self._on_closed = client, fd, done, on_closed
        self.state = Stream(header.prog, header.proc, header.serial, role=Role.SERVER, direction=direction)
        self.pending: collections.deque[memoryview] = collections.deque()
        self.finishing = False
        self.closed = False
        self.receiver: pump.SpliceReceiver | None = None
        os.set_blocking(fd, False)

    def __repr__(self) -> str:
        return f"<IncomingStream {self.state!r} of {self.client.peer}>"

    # -- starting ------------------------------------------------------------------
    def start(self) -> None:
        """The reply that opened the stream is sent: receive the data.

        The connection's reading is taken over until the stream ends: the
        payloads go socket → pipe by splice on a thread, never through
        Python (the hot path of tunnelled migration).
        """
        if self.client.closed:     # prepared after its client left: nobody will send data
            return self.abort(error(ErrorNumber.RPC, ErrorDomain.RPC, "client disconnected"))
        sock = self.client.plain_socket()     # None over TLS: the packets come through the loop
        if sock is None or self.closed:
            return
        self.client.pause("stream")
        loop = asyncio.get_running_loop()
        feed = self.client.feed
        receiver = pump.SpliceReceiver(sock.fileno(), self.fd, self.state.proc, self.state.serial,
                                       self.client.framer.take_buffered(),
                                       lambda packet: loop.call_soon_threadsafe(feed, packet),
                                       self.client.server.max_message + LEN_SIZE)
        self.receiver = receiver
        pump.start(receiver, "rpc-stream-receive").add_done_callback(self._receiver_done)

    def _receiver_done(self, fut: "asyncio.Future[pump.ReceiverEnd]") -> None:
        self.receiver = None
        if fut.cancelled() or fut.exception() is not None:
            exc = None if fut.cancelled() else fut.exception()
            end = pump.ReceiverEnd(None, b"", b"", 0, exc)
        else:
            end = fut.result()
        if self.closed:        # ended meanwhile (client gone, abort): the pipe waited for the thread
            self._close_fd()
            return
        if end.leftover:
            self.client.feed(end.leftover)
        self.client.resume("stream")
        if end.status is not None:     # the stream's own last packet: Finish or Abort
            state = self.state
            header = Header(state.prog, PROTOCOL_VERSION, state.proc, MessageType.STREAM, state.serial, end.status)
            self.receive(Message(header, end.payload))
        elif end.error is not None:
            self.fail(error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS, f"stream receive failed: {end.error}"))
        elif not self.closed:
            self.abort(error(ErrorNumber.RPC, ErrorDomain.RPC, "the client went away during the stream"))

    # -- packets from the client --------------------------------------------------------
    def receive(self, msg: Message) -> None:
        """One packet of this stream that reached the event loop."""
        if self.closed:
            return
        try:
            event = self.state.receive(msg)
        except RemoteStreamError as exc:
            return self.fail(error(ErrorNumber.INVALID_STREAM, ErrorDomain.STREAMS, str(exc)))
        kind = type(event)
        if kind is Data:
            self._write(event.data)    # type: ignore[union-attr]
        elif kind is Finish:
            self._finish()
        elif kind is Abort:
            self.abort()
        # EndOfData: the client's data is over, its Finish follows

    def _write(self, payload: bytes) -> None:
        if self.pending:
            self.pending.append(memoryview(payload))
            return
        try:
            written = os.write(self.fd, payload)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            return self.fail(_write_error(exc))
        if written < len(payload):
            self.pending.append(memoryview(payload)[written:])
            self.client.pause("stream-backlog")
            asyncio.get_running_loop().add_writer(self.fd, self._drain)

    def _drain(self) -> None:
        try:
            while self.pending:
                chunk = self.pending[0]
                written = os.write(self.fd, chunk)
                if written < len(chunk):
                    self.pending[0] = chunk[written:]
                    return
                self.pending.popleft()
        except BlockingIOError:
            return
        except OSError as exc:
            return self.fail(_write_error(exc))
        asyncio.get_running_loop().remove_writer(self.fd)
        self.client.resume("stream-backlog")
        if self.finishing:
            self._complete(None)

    def _finish(self) -> None:
        if self.pending:
            self.finishing = True      # acknowledged when the backlog is in the pipe
        else:
            self._complete(None)

    # -- ending ------------------------------------------------------------------------
    def abort(self, err: BaseException | None = None) -> None:
        """End without the rest of the data: the client aborted, or ``err`` (it went away)."""
        self.pending.clear()
        self._complete(err or error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.STREAMS,
                                    "the client aborted the stream"))

    def fail(self, err: libvirtError) -> None:
        """End with an error the client is told about."""
        if not self.closed:
            try:
                self.client.send_parts(self.state.send(Failed(err)))
            except LocalStreamError:   # already over on the wire
                pass
        self.pending.clear()
        self._complete(err)

    def _complete(self, err: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            asyncio.get_running_loop().remove_writer(self.fd)
        except (ValueError, OSError):
            pass
        if self.receiver is not None:
            # Still splicing (aborted from elsewhere): stop the thread; the pipe is
            # closed when it has stopped using it, never under its feet.
            self.receiver.stop()
        else:
            self._close_fd()
        self._on_closed()
        self.client.resume("stream-backlog")
        try:
            self._done(err)
        except Exception:
            log.exception("stream completion callback failed")
        if self.state.state in (StreamState.FINISHING, StreamState.ABORTING):
            self.client.send_parts(self.state.send(Ack()))   # the client's finish or abort is done

    def _close_fd(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class FdStream:
    """The server's end of a download or two-way stream over one descriptor.

    A screenshot file is sent to the client (DOWNLOAD); a console's pty or
    socket is read into the stream and the client's data written into it
    (BOTH).  Byte rates are a console's or one image's, so the I/O runs on
    the event loop: the descriptor is read when readable, and while the
    client has more than OUTPUT_HIGH bytes unread the reading stops.  End of
    the descriptor (EOF, or EIO from a pty whose QEMU went away) is sent as
    the end of the data; the client then finishes and is acknowledged.
    ``fd`` belongs to the stream and is closed at the end.
    """

    READ_SIZE = 256 << 10
    OUTPUT_HIGH = 1 << 20
    OUTPUT_RETRY = 0.005   # s: a look at the client's unread output while it is over OUTPUT_HIGH

    def __init__(self, client: ServerClient, fd: int, done: Callable[[BaseException | None], Any],
                 header: Header, direction: Direction, on_closed: Callable[[], None] = lambda: None) -> None:
        self.client, self.fd, self._done, self._on_closed = client, fd, done, on_closed
        self.state = Stream(header.prog, header.proc, header.serial, role=Role.SERVER, direction=direction)
        self.pending: collections.deque[memoryview] = collections.deque()
        self.closed = False
        self.reading = False
        self.eof_sent = False
        self.regular = stat.S_ISREG(os.fstat(fd).st_mode)
        os.set_blocking(fd, False)

    def __repr__(self) -> str:
        return f"<FdStream {self.state!r} of {self.client.peer}>"

    def start(self) -> None:
        """The reply that opened the stream is sent: data may flow."""
        if self.client.closed:
            return self.abort(error(ErrorNumber.RPC, ErrorDomain.RPC, "client disconnected"))
        if self.state.direction & Direction.DOWNLOAD and not self.closed:
            self._watch(True)

    def _watch(self, on: bool) -> None:
        if on == self.reading or self.closed:
            return
        self.reading = on
        if self.regular:           # always readable (epoll takes no files): a chunk per loop turn
            if on:
                asyncio.get_running_loop().call_soon(self._file_turn)
            return
        loop = asyncio.get_running_loop()
        if on:
            loop.add_reader(self.fd, self._readable)
        else:
            loop.remove_reader(self.fd)

    def _file_turn(self) -> None:
        if self.reading and not self.closed:
            self._readable()
            if self.reading and not self.closed:
                asyncio.get_running_loop().call_soon(self._file_turn)

    def _readable(self) -> None:
        transport = self.client.transport
        if transport is not None and transport.get_write_buffer_size() > self.OUTPUT_HIGH:
            # the client reads slower than the source writes: wait for its socket to drain
            self._watch(False)
            asyncio.get_running_loop().call_later(self.OUTPUT_RETRY, self._watch, True)
            return
        try:
            data = os.read(self.fd, self.READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno != errno.EIO:     # EIO: the pty's other end (QEMU) is gone, an end of data
                return self.fail(error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                                       f"cannot read the stream's source: {exc.strerror}"))
            data = b""
        if data:
            try:
                self.client.send_parts(self.state.send(Data(data)))
            except LocalStreamError:       # the client aborted meanwhile
                self._watch(False)
            return
        self._watch(False)
        if not self.eof_sent and self.state.sending[Role.SERVER]:
            self.eof_sent = True
            self.client.send_parts(self.state.send(EndOfData()))

    # -- packets from the client --------------------------------------------------------
    def receive(self, msg: Message) -> None:
        if self.closed:
            return
        try:
            event = self.state.receive(msg)
        except RemoteStreamError as exc:
            return self.fail(error(ErrorNumber.INVALID_STREAM, ErrorDomain.STREAMS, str(exc)))
        kind = type(event)
        if kind is Data:
            self._write(memoryview(event.data))    # type: ignore[union-attr]
        elif kind is Finish:
            self._complete(None)
        elif kind is Abort:
            self._complete(error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.STREAMS,
                                 "the client aborted the stream"))

    def _write(self, data: memoryview) -> None:
        if not self.pending:
            try:
                written = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                return self.fail(_write_error(exc))
            if written == len(data):
                return
            data = data[written:]
            asyncio.get_running_loop().add_writer(self.fd, self._drain)
            self.client.pause("stream-backlog")
        self.pending.append(data)

    def _drain(self) -> None:
        try:
            while self.pending:
                chunk = self.pending[0]
                written = os.write(self.fd, chunk)
                if written < len(chunk):
                    self.pending[0] = chunk[written:]
                    return
                self.pending.popleft()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            return self.fail(_write_error(exc))
        asyncio.get_running_loop().remove_writer(self.fd)
        self.client.resume("stream-backlog")

    # -- ending ------------------------------------------------------------------------
    def abort(self, err: BaseException | None = None) -> None:
        """End without telling the client (it is gone)."""
        self._complete(err or error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.STREAMS,
                                    "the stream was aborted"))

    def fail(self, err: BaseException) -> None:
        """End with an error the client is told about (also the driver's cancel)."""
        if self.closed:
            return
        if not isinstance(err, libvirtError):
            err = error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.STREAMS, str(err))
        try:
            self.client.send_parts(self.state.send(Failed(err)))
        except LocalStreamError:
            pass
        self._complete(err)

    def _complete(self, err: BaseException | None) -> None:
        if self.closed:
            return
        self._watch(False)
        self.closed = True
        try:
            asyncio.get_running_loop().remove_writer(self.fd)
        except (ValueError, OSError):
            pass
        self.pending.clear()
        try:
            os.close(self.fd)
        except OSError:
            pass
        self._on_closed()
        self.client.resume("stream-backlog")
        try:
            self._done(err)
        except Exception:
            log.exception("stream completion callback failed")
        if self.state.state in (StreamState.FINISHING, StreamState.ABORTING):
            self.client.send_parts(self.state.send(Ack()))


class VolumeStream(FdStream):
    """The server's end of a storage volume's upload or download (``fd`` is the volume itself).

    As :class:`FdStream`, plus what the call asked for: at most ``length``
    bytes from the descriptor's offset (0: to the end of the volume) and, on a
    ``sparse`` stream, holes as STREAM_HOLE packets — a download finds them
    with SEEK_DATA/SEEK_HOLE and sends their length instead of zeros, an
    upload makes each received hole a hole of the file and extends a file
    left shorter than the stream at the end.  Reads and writes are positioned
    (pread/pwrite), so nothing depends on the descriptor's offset after the start.
    """

    def __init__(self, client: ServerClient, fd: int, done: Callable[[BaseException | None], Any],
                 header: Header, direction: Direction, on_closed: Callable[[], None] = lambda: None,
                 length: int = 0, sparse: bool = False) -> None:
        super().__init__(client, fd, done, header, direction, on_closed)
        self.state = Stream(header.prog, header.proc, header.serial, role=Role.SERVER, direction=direction,
                            sparse=sparse)
        self.regular = True     # a file or a block device (a logical volume): always readable, never polled
        self.pos = first = os.lseek(fd, 0, os.SEEK_CUR)
        self.limit = first + length if length else None     # upload: where writes must stop
        self.end = sparsefile.end_of(fd) if self.limit is None else min(self.limit, sparsefile.end_of(fd))

    def __repr__(self) -> str:
        return f"<VolumeStream {self.state!r} at {self.pos} of {self.client.peer}>"

    # -- download ----------------------------------------------------------------------------
    def _readable(self) -> None:
        transport = self.client.transport
        if transport is not None and transport.get_write_buffer_size() > self.OUTPUT_HIGH:
            self._watch(False)
            asyncio.get_running_loop().call_later(self.OUTPUT_RETRY, self._watch, True)
            return
        try:
            if self.pos < self.end:
                in_data, size = (sparsefile.section(self.fd, self.pos, self.end) if self.state.sparse
                                 else (True, self.end - self.pos))
                if not in_data:
                    self.client.send_parts(self.state.send(Hole(size)))
                    self.pos += size
                    return
                data = os.pread(self.fd, min(self.READ_SIZE, size), self.pos)
            else:
                data = b""
        except LocalStreamError:           # the client aborted meanwhile
            return self._watch(False)
        except OSError as exc:
            return self.fail(error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                                   f"cannot read the volume: {exc.strerror}"))
        if data:
            self.pos += len(data)
            try:
                self.client.send_parts(self.state.send(Data(data)))
            except LocalStreamError:
                self._watch(False)
            return
        self._watch(False)
        if not self.eof_sent and self.state.sending[Role.SERVER]:
            self.eof_sent = True
            self.client.send_parts(self.state.send(EndOfData()))

    # -- upload --------------------------------------------------------------------------------
    def receive(self, msg: Message) -> None:
        if self.closed:
            return
        try:
            event = self.state.receive(msg)
        except RemoteStreamError as exc:
            return self.fail(error(ErrorNumber.INVALID_STREAM, ErrorDomain.STREAMS, str(exc)))
        kind = type(event)
        try:
            if kind is Data:
                self._put(event.data)           # type: ignore[union-attr]
            elif kind is Hole:
                self._skip(event.length)        # type: ignore[union-attr]
            elif kind is Finish:
                if self.state.direction & Direction.UPLOAD:   # (a download's fd is read-only)
                    sparsefile.extend_to(self.fd, self.pos)    # a trailing hole still counts
                self._complete(None)
            elif kind is Abort:
                self._complete(error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.STREAMS,
                                     "the client aborted the stream"))
        except libvirtError as exc:
            self.fail(exc)
        except OSError as exc:
            self.fail(_write_error(exc))

    def _room(self, wanted: int) -> int:
        """How much of ``wanted`` bytes fits before ``length``; none left is libvirt's ENOSPC."""
        if self.limit is None:
            return wanted
        room = self.limit - self.pos
        if room <= 0:       # libvirt's fdstream words it so
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                        f"cannot write to stream: {os.strerror(errno.ENOSPC)}")
        return min(room, wanted)

    def _put(self, data: Any) -> None:
        view = memoryview(data)
        fits = self._room(len(view))
        while view:
            written = os.pwrite(self.fd, view[:fits], self.pos)
            self.pos += written
            view, fits = view[written:], fits - written
            if view and fits <= 0:
                fits = self._room(len(view))

    def _skip(self, length: int) -> None:
        fits = self._room(length)
        sparsefile.make_hole(self.fd, self.pos, fits)
        self.pos += fits
        if fits < length:
            self._room(length - fits)


def _write_error(exc: OSError) -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                 f"cannot write the stream into its target: {exc.strerror}")


__all__ = ["IncomingStream", "FdStream", "VolumeStream"]
