"""Receiving an upload stream straight from the socket into a pipe.

The daemon side of the tunnelled-migration hot path.  While a client
streams data, the connection's asyncio reading is paused and this receiver
reads packet headers itself and moves each payload from the socket into
the target pipe with ``os.splice``: the bytes never enter Python.  A packet
that is not the stream's data (another call, a keepalive) is read whole and
handed back to the event loop.  The stream's end (STREAM/OK or ERROR), a
closed socket or ``stop()`` ends the receiver; the bytes it read past the
end go back to the connection's framer.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from dataclasses import dataclass
from typing import Callable

from .upload import PumpStopped, SocketPump
from .wire import FRAME_HEADER_SIZE, MessageType, Status

_FRAME = struct.Struct(">IIIiiIi")


@dataclass
class ReceiverEnd:
    status: int | None          # Status.OK / Status.ERROR of the stream's last packet; None: socket closed or stopped
    payload: bytes              # that packet's payload (an error, for ERROR)
    leftover: bytes             # bytes read after it, for the framer
    received: int               # payload bytes moved into the pipe
    error: BaseException | None = None


class SpliceReceiver(SocketPump):
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
        try:
            with socket.socket(fileno=os.dup(self.sock_fd)) as s:
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _recv_into_buf(self, need: int) -> bool:
        """Make ``self.buf`` at least ``need`` bytes long; False on EOF."""
        while len(self.buf) < need:
            try:
                chunk = os.read(self.sock_fd, max(need - len(self.buf), 65536))
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
