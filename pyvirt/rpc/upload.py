"""Upload streams from a file descriptor, without copying the payload.

The tunnelled-migration hot path: QEMU writes its migration stream into a
pipe; this pump moves it into STREAM/CONTINUE packets on the RPC socket.
Each packet is a 28-byte header written with ``send`` followed by the
payload moved from the pipe to the socket by ``os.splice``: the bytes never
enter Python.  It runs in its own thread with blocking ``poll`` waits, so
the event loop (job info, abort, speed and downtime calls) is never held up
by it, and it stops at once when told to (a wake-up pipe), so QEMU never
blocks on a full pipe after an abort: the read end is closed by the owner.

While a pump runs it is the only writer on its socket: the connection it
borrows carries nothing else until the stream is finished or aborted.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import termios
import threading
import time
from typing import Callable

from .wire import FRAME_HEADER_SIZE, MessageType, Status

CHUNK = 1 << 20                 # payload per STREAM packet (the protocol allows up to 32 MiB)
COALESCE_BYTES = 256 << 10      # wait for this much (briefly) before sending a packet
COALESCE_TRIES = 4
COALESCE_SLEEP = 0.0002
PIPE_SIZE = 1 << 20
_FRAME = struct.Struct(">IIIiiIi")
_INT = struct.Struct("i")


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Bigger pipes mean fewer wake-ups per megabyte; the kernel may cap it."""
    try:
        fcntl.fcntl(fd, 1031, size)   # F_SETPIPE_SZ
    except OSError:
        pass


def _available(fd: int) -> int:
    buf = bytearray(4)
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
    to the descriptor.  The socket is non-blocking again after :meth:`close`,
    which the thread itself calls when it is done.  :meth:`stop` wakes any
    poll at once.
    """

    blocking = False

    def __init__(self, sock_fd: int) -> None:
        self.sock_fd = os.dup(sock_fd)
        if self.blocking:
            os.set_blocking(self.sock_fd, True)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def close(self) -> None:
        try:
            os.set_blocking(self.sock_fd, False)    # the event loop uses it again after us
        except OSError:
            pass
        for fd in (self._wake_r, self._wake_w, self.sock_fd):
            try:
                os.close(fd)
            except OSError:
                pass

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


class FdUploader(SocketPump):
    """Moves everything readable from ``src_fd`` into STREAM packets on ``sock_fd``."""

    def __init__(self, src_fd: int, sock_fd: int, prog: int, proc: int, serial: int,
                 chunk: int = CHUNK) -> None:
        super().__init__(sock_fd)
        self.src_fd = src_fd
        self.header = (prog, 1, proc, MessageType.STREAM, serial, Status.CONTINUE)
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


def run_in_thread(uploader: FdUploader, done: Callable[[int | None, BaseException | None], None]) -> threading.Thread:
    """Run the pump on its own thread; it closes its own descriptors when it ends,
    so nobody closes them under it."""
    def target() -> None:
        try:
            sent = uploader.run()
        except BaseException as exc:   # reported to the owner, never raised in the thread
            uploader.close()
            done(None, exc)
        else:
            uploader.close()
            done(sent, None)
    thread = threading.Thread(target=target, name="rpc-upload", daemon=True)
    thread.start()
    return thread
