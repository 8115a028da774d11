"""The stream hot path: payload between a pipe and the RPC socket, by splice.

Tunnelled migration moves gigabytes through a stream.  Two pumps, each on
its own thread with blocking ``poll`` waits, keep those bytes out of Python
and off the event loop (job info, abort, speed and downtime calls are never
held up by them):

* :class:`FdUploader` (the sending side): QEMU writes into a pipe; each
  packet is a 28-byte header written with ``write`` followed by the payload
  moved from the pipe to the socket by ``os.splice``.
* :class:`SpliceReceiver` (the receiving side): while it runs, the
  connection's asyncio reading is paused; it reads packet headers itself and
  splices each payload from the socket into the target pipe.  A packet that
  is not the stream's data (another call, a keepalive) is read whole and
  handed back to the event loop.

Backpressure is the kernel's: a full pipe or socket blocks the pump's
``poll``, never the event loop.  :meth:`SocketPump.stop` wakes a pump at
once (a wake-up pipe), so a QEMU writing into the pipe never blocks after
an abort: the owner closes the pipe once the pump has let go of it.

While a pump runs it is the only reader (receiver) or writer (uploader) of
its socket's payload bytes.  :func:`start` runs one on its thread and
closes its descriptors on the event loop after the thread ended, so a
``stop`` (event loop only) never touches a closed or reused descriptor.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import select
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..wire import FRAME_HEADER_SIZE, PROTOCOL_VERSION, MessageType, Status

CHUNK = 1 << 20                 # payload per STREAM packet (the protocol allows up to 32 MiB)
COALESCE_BYTES = 256 << 10      # wait for this much (briefly) before sending a packet
COALESCE_TRIES = 4
COALESCE_SLEEP = 0.0002         # seconds per try: QEMU refills a pipe within this
RECV_SIZE = 65536               # smallest read of packet headers from the socket
_FRAME = struct.Struct(">IIIiiIi")   # length word + header, as rpc.wire frames them
_INT = struct.Struct("i")


def _available(fd: int) -> int:
    buf = bytearray(_INT.size)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return _INT.unpack(buf)[0]


class PumpStopped(Exception):
    """The pump was told to stop before its source ended."""


class SocketPump:
    """I/O on a thread over its own descriptor of an RPC socket.

    Owning a dup means the event loop may close its descriptor at any time
    without this thread ever using a recycled number.  A subclass may ask for
    blocking mode (the kernel waits instead of us polling) only where the
    event loop cannot write meanwhile: O_NONBLOCK belongs to the socket, not
    to the descriptor.  The socket is non-blocking again after :meth:`close`.
    :meth:`stop` wakes any poll at once.
    """

    blocking = False

    def __init__(self, sock_fd: int) -> None:
        self.sock_fd = os.dup(sock_fd)
        if self.blocking:
            os.set_blocking(self.sock_fd, True)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stopped = False
        self._closed = False

    def stop(self) -> None:
        self._stopped = True
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def close(self) -> None:
        """Release the descriptors; only once the thread no longer uses them."""
        if self._closed:
            return
        self._closed = True
        try:
            os.set_blocking(self.sock_fd, False)    # the event loop uses it again after us
        except OSError:
            pass
        for fd in (self._wake_r, self._wake_w, self.sock_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def run(self) -> Any:
        raise NotImplementedError

    def _wait(self, *wants: tuple[int, int]) -> None:
        """Wait until every (fd, event) is ready, or one hangs up; PumpStopped if stopped."""
        poller = select.poll()
        for fd, event in wants:
            poller.register(fd, event | select.POLLHUP | select.POLLERR)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            if self._stopped:
                raise PumpStopped()
            ready = dict(poller.poll())
            if self._stopped:
                raise PumpStopped()
            if all(fd in ready for fd, _ in wants):
                return
            if any(ready.get(fd, 0) & (select.POLLHUP | select.POLLERR) for fd, _ in wants):
                return


def start(pump: SocketPump, name: str) -> "asyncio.Future[Any]":
    """Run ``pump.run()`` on its own thread; the future gets its result or error.

    The pump's descriptors are closed on the event loop once the thread has
    ended, also when the future was cancelled meanwhile.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def finished(result: Any, exc: BaseException | None) -> None:
        pump.close()
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def target() -> None:
        try:
            result, exc = pump.run(), None
        except BaseException as err:   # reported to the owner, never raised in the thread
            result, exc = None, err
        try:
            loop.call_soon_threadsafe(finished, result, exc)
        except RuntimeError:           # the event loop is gone (daemon shutdown)
            pump.close()
    threading.Thread(target=target, name=name, daemon=True).start()
    return fut


class FdUploader(SocketPump):
    """Moves everything readable from ``src_fd`` into STREAM packets on ``sock_fd``."""

    def __init__(self, src_fd: int, sock_fd: int, prog: int, proc: int, serial: int,
                 chunk: int = CHUNK) -> None:
        super().__init__(sock_fd)
        self.src_fd = src_fd
        self.header = (prog, PROTOCOL_VERSION, proc, MessageType.STREAM, serial, Status.CONTINUE)
        self.chunk = chunk
        self.sent = 0

    def _send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.sock_fd, view)
                view = view[n:]
            except BlockingIOError:
                self._wait((self.sock_fd, select.POLLOUT))

    def _splice_exactly(self, n: int) -> None:
        while n:
            try:
                moved = os.splice(self.src_fd, self.sock_fd, n)
            except BlockingIOError:
                self._wait((self.sock_fd, select.POLLOUT))
                continue
            if moved == 0:
                raise OSError(errno.EPIPE, "source closed in the middle of a packet")
            n -= moved

    def run(self) -> int:
        """Pump until the source reaches EOF; return the payload bytes sent."""
        pack = _FRAME.pack
        header = self.header
        while True:
            self._wait((self.src_fd, select.POLLIN))
            n = _available(self.src_fd)
            # QEMU writes in small pieces: give the pipe a moment to fill, so that
            # each packet (two syscalls) carries a useful amount.
            for _ in range(COALESCE_TRIES):
                if n >= COALESCE_BYTES or n == 0:
                    break
                time.sleep(COALESCE_SLEEP)
                n = _available(self.src_fd)
            n = min(n, self.chunk)
            if n == 0:
                # readable with nothing to read: every writer closed the pipe (EOF)
                return self.sent
            self._send_all(pack(FRAME_HEADER_SIZE + n, *header))
            self._splice_exactly(n)
            self.sent += n


@dataclass
class ReceiverEnd:
    status: int | None          # Status.OK / Status.ERROR of the stream's last packet; None: socket closed or stopped
    payload: bytes              # that packet's payload (an error, for ERROR)
    leftover: bytes             # bytes read after it, for the framer
    received: int               # payload bytes moved into the pipe
    error: BaseException | None = None


class SpliceReceiver(SocketPump):
    """Moves the payload of the stream ``(proc, serial)`` from ``sock_fd`` into ``pipe_fd``.

    ``leftover`` is what the connection's framer had already read;
    ``other_packet`` gets every whole packet that is not this stream's data
    (called on the receiver's thread).  The stream's end (STREAM/OK or
    ERROR), a closed socket or :meth:`stop` ends it; the bytes read past the
    end go back to the framer in :attr:`ReceiverEnd.leftover`.
    """

    # Blocking reads: the event loop does not read this socket while we do, and
    # what it writes to it meanwhile (rare replies, the final ack after us) is small.
    blocking = True

    def __init__(self, sock_fd: int, pipe_fd: int, proc: int, serial: int, leftover: bytes,
                 other_packet: Callable[[bytes], None], max_packet: int) -> None:
        super().__init__(sock_fd)
        self.pipe_fd = pipe_fd
        os.set_blocking(pipe_fd, True)
        self.proc, self.serial = proc, serial
        self.buf = leftover
        self.other_packet = other_packet
        self.max_packet = max_packet
        self.received = 0

    def stop(self) -> None:
        """Abort: wake the thread even from a blocking read (the connection is dropped)."""
        super().stop()
        if self._closed:
            return
        try:
            with socket.socket(fileno=os.dup(self.sock_fd)) as s:
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _recv_into_buf(self, need: int) -> bool:
        """Make ``self.buf`` at least ``need`` bytes long; False on EOF."""
        while len(self.buf) < need:
            try:
                chunk = os.read(self.sock_fd, max(need - len(self.buf), RECV_SIZE))
            except BlockingIOError:
                self._wait((self.sock_fd, select.POLLIN))
                continue
            if not chunk:
                return False
            self.buf += chunk
        return True

    def _write_pipe(self, data: memoryview) -> None:
        while data:
            try:
                n = os.write(self.pipe_fd, data)
                data = data[n:]
                self.received += n
            except BlockingIOError:
                self._wait((self.pipe_fd, select.POLLOUT))

    def _splice(self, n: int) -> bool:
        """Move exactly ``n`` bytes socket → pipe; False on EOF."""
        while n:
            try:
                moved = os.splice(self.sock_fd, self.pipe_fd, n)
            except BlockingIOError:
                self._wait((self.sock_fd, select.POLLIN), (self.pipe_fd, select.POLLOUT))
                continue
            if moved == 0:
                return False
            n -= moved
            self.received += moved
        return True

    def run(self) -> ReceiverEnd:
        try:
            return self._run()
        except PumpStopped:
            return ReceiverEnd(None, b"", self.buf, self.received)
        except OSError as exc:
            if self._stopped:
                return ReceiverEnd(None, b"", b"", self.received)
            return ReceiverEnd(None, b"", b"", self.received, exc)

    def _run(self) -> ReceiverEnd:
        while True:
            if not self._recv_into_buf(FRAME_HEADER_SIZE):
                return ReceiverEnd(None, b"", b"", self.received)
            length, _prog, _vers, proc, mtype, serial, status = _FRAME.unpack_from(self.buf)
            if length < FRAME_HEADER_SIZE or length > self.max_packet:
                return ReceiverEnd(None, b"", b"", self.received,
                                   OSError(f"packet length {length} out of range"))
            n = length - FRAME_HEADER_SIZE
            ours = proc == self.proc and serial == self.serial and mtype == MessageType.STREAM
            if ours and status == Status.CONTINUE and not n:    # an empty data packet: nothing to move
                self.buf = self.buf[FRAME_HEADER_SIZE:]
                continue
            if ours and status == Status.CONTINUE:
                have = memoryview(self.buf)[FRAME_HEADER_SIZE:FRAME_HEADER_SIZE + n]
                self._write_pipe(have)
                remaining = n - len(have)
                self.buf = self.buf[FRAME_HEADER_SIZE + len(have):]
                if remaining and not self._splice(remaining):
                    return ReceiverEnd(None, b"", b"", self.received)
                continue
            if not self._recv_into_buf(length):
                return ReceiverEnd(None, b"", b"", self.received)
            packet, self.buf = self.buf[:length], self.buf[length:]
            if ours:
                return ReceiverEnd(status, packet[FRAME_HEADER_SIZE:], self.buf, self.received)
            self.other_packet(packet)


__all__ = ["CHUNK", "PumpStopped", "SocketPump", "FdUploader", "SpliceReceiver", "ReceiverEnd", "start"]
