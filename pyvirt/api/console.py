"""libvirt-python's methods for console and graphics (openConsole, screenshot, sendKey, openGraphicsFD),
and ``virStream``, the handle those streams are read and written through.

A stream is created empty (``conn.newStream()``) and given its end by the
call that opens it.  That end is either a descriptor the driver handed out
(an embedded driver: the console's pty, the screenshot's file) or the
client end of an RPC stream (a daemon); :class:`virStream` speaks to both.
"""

from __future__ import annotations

import errno
import os
import select
from collections.abc import Callable

from .. import aio
from ..driver import FdReply, StreamSink
from ..errors import ErrorDomain, ErrorNumber, error, libvirtError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

STREAM_NONBLOCK = 1          # VIR_STREAM_NONBLOCK
_RECV_ALL_CHUNK = 64 * 1024


class _LocalEnd:
    """A descriptor from an in-process driver: read and written here, blocking on select."""

    def __init__(self, sink: StreamSink) -> None:
        self.sink = sink
        self.fd = sink.fd
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.failure: BaseException | None = None
        self.closed = False
        sink.cancel = self._cancelled

    def _cancelled(self, err: BaseException) -> None:
        self.failure = err
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def pending(self) -> bool:
        return bool(select.select([self.fd, self.wake_r], [], [], 0)[0])

    def recv(self, nbytes: int) -> bytes:
        while True:
            if self.failure is not None:
                raise self.failure
            ready = select.select([self.fd, self.wake_r], [], [])[0]
            if self.fd not in ready:
                continue
            try:
                return os.read(self.fd, nbytes)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:     # a pty whose QEMU has gone: end of data
                    return b""
                raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                            f"cannot read from the stream: {exc.strerror}") from None

    def send(self, data: bytes) -> int:
        if self.failure is not None:
            raise self.failure
        view, sent = memoryview(data), 0
        while sent < len(view):
            select.select([], [self.fd], [])
            try:
                sent += os.write(self.fd, view[sent:])
            except BlockingIOError:
                continue
            except OSError as exc:
                raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                            f"cannot write to the stream: {exc.strerror}") from None
        return sent

    def close(self, err: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (self.fd, self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.sink.done(err)

    def finish(self) -> None:
        failure = self.failure
        self.close(failure)
        if failure is not None:
            raise failure

    def abort(self) -> None:
        self.close(error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.STREAMS, "the stream was aborted"))


class _RemoteEnd:
    """The client end of an RPC stream: its coroutines run on pyvirt's loop."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def pending(self) -> bool:
        return self.stream.pending()

    def recv(self, nbytes: int) -> bytes:
        return aio.run(self.stream.recv(nbytes))

    def send(self, data: bytes) -> int:
        return aio.run(self.stream.send(bytes(data)))

    def finish(self) -> None:
        aio.run(self.stream.finish())

    def abort(self) -> None:
        aio.run(self.stream.abort())


class virStream:  # noqa: N801 - libvirt-python's name
    """libvirt-python's stream: recv/send, recvAll/sendAll, finish, abort."""

    def __init__(self, conn: Any, flags: int = 0) -> None:
        self._conn = conn
        self._flags = flags
        self._end: _LocalEnd | _RemoteEnd | None = None

    def _attach(self, end: Any) -> None:
        if self._end is not None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.STREAMS, "the stream is already in use")
        self._end = _LocalEnd(end) if isinstance(end, StreamSink) else _RemoteEnd(end)

    def _open(self) -> "_LocalEnd | _RemoteEnd":
        if self._end is None:
            raise error(ErrorNumber.INVALID_STREAM, ErrorDomain.STREAMS, "virStream: no stream opened on it yet")
        return self._end

    def connect(self) -> Any:
        return self._conn

    def recv(self, nbytes: int) -> bytes | int:
        end = self._open()
        if self._flags & STREAM_NONBLOCK and not end.pending():
            return -2
        return end.recv(int(nbytes))

    def send(self, data: bytes) -> int:
        return self._open().send(bytes(data))

    def recvAll(self, handler: Callable[["virStream", bytes, Any], Any], opaque: Any) -> None:
        while True:
            got = self.recv(_RECV_ALL_CHUNK)
            if got == -2:
                raise libvirtError("cannot use recvAll with nonblocking stream")
            if not got:
                return
            try:
                ret = handler(self, got, opaque)
                if isinstance(ret, int) and ret < 0:
                    raise RuntimeError(f"recvAll handler returned {ret}")
            except BaseException:
                try:
                    self.abort()
                except libvirtError:
                    pass
                raise

    def sendAll(self, handler: Callable[["virStream", int, Any], bytes], opaque: Any) -> None:
        while True:
            try:
                got = handler(self, _RECV_ALL_CHUNK, opaque)
            except BaseException:
                try:
                    self.abort()
                except libvirtError:
                    pass
                raise
            if not got:
                return
            self.send(got)

    def finish(self) -> int:
        self._open().finish()
        return 0

    def abort(self) -> int:
        self._open().abort()
        return 0

    def __repr__(self) -> str:
        return f"<pyvirt.virStream {'open' if self._end is not None else 'unused'}>"


class DomainConsoleAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference

    def openConsole(self, dev_name: str | None, stream: virStream, flags: int = 0) -> int:
        _ret, end = self._call("domain_open_console", dev_name, flags)
        stream._attach(end)
        return 0

    def screenshot(self, stream: virStream, screen: int, flags: int = 0) -> str | None:
        mime, end = self._call("domain_screenshot", int(screen), flags)
        stream._attach(end)
        return mime

    def sendKey(self, codeset: int, holdtime: int, keycodes: list[int], nkeycodes: int, flags: int = 0) -> int:
        codes = [int(k) for k in list(keycodes)[:nkeycodes]]
        self._call("domain_send_key", int(codeset), int(holdtime), codes, flags)
        return 0

    def openGraphicsFD(self, idx: int, flags: int = 0) -> int:
        reply = self._call("domain_open_graphics_fd", int(idx), flags)
        if isinstance(reply, FdReply):
            return reply.fds[0]
        return int(reply)


class ConnectConsoleAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through

    def newStream(self, flags: int = 0) -> virStream:
        return virStream(self, flags)


__all__ = ["virStream", "DomainConsoleAPI", "ConnectConsoleAPI"]
