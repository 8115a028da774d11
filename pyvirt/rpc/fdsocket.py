"""Reading a UNIX client's bytes together with the descriptors that come with them.

libvirt's client sends a CALL_WITH_FDS message, then each descriptor with
SCM_RIGHTS on one byte of its own.  The event loop's transport reads with a
plain read, which makes the kernel drop those descriptors (and the kernel
glues the marker bytes to the message bytes before them in one read, so
they cannot be caught afterwards).  A connection that may pass descriptors
is therefore read through an :class:`FdReader` instead: every read is a
``recvmsg`` whose descriptors queue up in ``fds``, in the order their bytes
came (the kernel ends a read at a byte that carries descriptors).  Whoever
takes descriptors from the queue owns them; the rest are closed by
:meth:`close`.
"""

from __future__ import annotations

import os
import socket
import struct
from collections import deque

from .wire import NUM_FDS_MAX

_ROOM = socket.CMSG_SPACE(4 * NUM_FDS_MAX)
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)   # received descriptors never leak into children
READ_SIZE = 256 * 1024


class FdReader:
    """Reads a duplicate of the socket ``fd`` (non-blocking, as the loop's)."""

    __slots__ = ("sock", "fds")

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=os.dup(fd))
        self.sock.setblocking(False)
        self.fds: deque[int] = deque()

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bytes:
        """What the socket holds (b"" at its end); BlockingIOError when nothing yet."""
        data, ancillary, _flags, _addr = self.sock.recvmsg(READ_SIZE, _ROOM, _CLOEXEC)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                self.fds.extend(struct.unpack(f"@{usable // 4}i", payload[:usable]))
        return data

    def take_fds(self, count: int) -> list[int] | None:
        """The next ``count`` descriptors, or None if fewer have come."""
        if len(self.fds) < count:
            return None
        return [self.fds.popleft() for _ in range(count)]

    def close(self) -> None:
        while self.fds:
            try:
                os.close(self.fds.popleft())
            except OSError:
                pass
        self.sock.close()
