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
STREAM_RECV_STOP_AT_HOLE = 1  # VIR_STREAM_RECV_STOP_AT_HOLE
_RECV_ALL_CHUNK = 262120     # virStorageVol.streamBufSize: what libvirt-python's *All loops ask for


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


class _LocalVolumeEnd(_LocalEnd):
    """A volume's own descriptor from an in-process storage driver: positioned reads
    and writes within the call's ``length``, holes found and made as the daemon's
    volume stream does (:mod:`pyvirt.sparsefile`)."""

    def __init__(self, sink: StreamSink) -> None:
        super().__init__(sink)
        from .. import sparsefile
        self._sparse = sparsefile
        self.pos = self.start = os.lseek(self.fd, 0, os.SEEK_CUR)
        self.limit = self.start + sink.length if sink.length else None
        size = sparsefile.end_of(self.fd)
        self.end = size if self.limit is None else min(self.limit, size)
        self.sparse = sink.sparse
        self.wrote = False

    def pending(self) -> bool:
        return True

    def recv(self, nbytes: int, stop_at_hole: bool = False) -> bytes | int:
        if self.failure is not None:
            raise self.failure
        try:
            if self.pos >= self.end:
                return b""
            in_data, size = (self._sparse.section(self.fd, self.pos, self.end) if self.sparse
                             else (True, self.end - self.pos))
            if not in_data:
                if stop_at_hole:
                    return -3
                size = min(size, nbytes)
                self.pos += size
                return bytes(size)
            data = os.pread(self.fd, min(nbytes, size), self.pos)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                        f"cannot read from the stream: {exc.strerror}") from None
        self.pos += len(data)
        return data

    def recv_hole(self) -> int:
        if self.pos >= self.end:
            return 0
        in_data, size = self._sparse.section(self.fd, self.pos, self.end)
        if in_data:
            return 0
        self.pos += size
        return size

    def _room(self, wanted: int) -> int:
        if self.limit is None:
            return wanted
        if self.pos >= self.limit:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                        "cannot write to stream: No space left on device")
        return min(wanted, self.limit - self.pos)

    def send(self, data: bytes) -> int:
        if self.failure is not None:
            raise self.failure
        view = memoryview(data)[:self._room(len(data))]
        try:
            while view:
                written = os.pwrite(self.fd, view, self.pos)
                self.pos += written
                view = view[written:]
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                        f"cannot write to the stream: {exc.strerror}") from None
        self.wrote = True
        return len(data)

    def send_hole(self, length: int, flags: int = 0) -> None:
        fits = self._room(length)
        try:
            self._sparse.make_hole(self.fd, self.pos, fits)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                        f"cannot write to the stream: {exc.strerror}") from None
        self.pos += fits
        self.wrote = True

    def finish(self) -> None:
        if self.wrote and self.failure is None:
            try:
                self._sparse.extend_to(self.fd, self.pos)      # a trailing hole still counts
            except OSError as exc:
                self.failure = error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                                     f"cannot write to the stream: {exc.strerror}")
        super().finish()


class _RemoteEnd:
    """The client end of an RPC stream: its coroutines run on pyvirt's loop."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def pending(self) -> bool:
        return self.stream.pending()

    @property
    def sparse(self) -> bool:
        return self.stream.state.sparse

    def recv(self, nbytes: int, stop_at_hole: bool = False) -> bytes | int:
        if not hasattr(self.stream, "recv"):
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.STREAMS, "the stream carries no data to read")
        if stop_at_hole:
            return aio.run(self.stream.recv(nbytes, True))
        return aio.run(self.stream.recv(nbytes))

    def recv_hole(self) -> int:
        return aio.run(self.stream.recv_hole())

    def send(self, data: bytes) -> int:
        return aio.run(self.stream.send(bytes(data)))

    def send_hole(self, length: int, flags: int = 0) -> None:
        aio.run(self.stream.send_hole(length, flags))

    def finish(self) -> None:
        aio.run(self.stream.finish())

    def abort(self) -> None:
        aio.run(self.stream.abort())


class virStream:  # noqa: N801 - libvirt-python's name
    """libvirt-python's stream: recv/send, recvAll/sendAll, finish, abort, and for a volume
    opened with its SPARSE_STREAM flag recvFlags (STOP_AT_HOLE), recvHole, sendHole,
    sparseRecvAll/sparseSendAll."""

    def __init__(self, conn: Any, flags: int = 0) -> None:
        self._conn = conn
        self._flags = flags
        self._end: _LocalEnd | _RemoteEnd | None = None

    def _attach(self, end: Any) -> None:
        if self._end is not None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.STREAMS, "the stream is already in use")
        if isinstance(end, StreamSink):
            self._end = _LocalVolumeEnd(end) if end.length or end.sparse else _LocalEnd(end)
        else:
            self._end = _RemoteEnd(end)

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

    def recvFlags(self, nbytes: int, flags: int = 0) -> bytes | int:
        """recv, or with VIR_STREAM_RECV_STOP_AT_HOLE -3 where a hole starts (then :meth:`recvHole`)."""
        end = self._open()
        if flags & ~STREAM_RECV_STOP_AT_HOLE:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.STREAMS,
                        f"unsupported flags (0x{flags & ~STREAM_RECV_STOP_AT_HOLE:x}) in function virStreamRecvFlags")
        if self._flags & STREAM_NONBLOCK and not end.pending():
            return -2
        stop = bool(flags & STREAM_RECV_STOP_AT_HOLE)
        if stop and not self._sparse(end):
            stop = False
        return end.recv(int(nbytes), stop) if stop else end.recv(int(nbytes))

    def recvHole(self, flags: int = 0) -> int:
        """The length of the hole the stream has reached (consumed)."""
        end = self._open()
        if not self._sparse(end):
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.RPC, "Holes are not supported with this stream")
        return end.recv_hole()

    def sendHole(self, length: int, flags: int = 0) -> int:
        """Tell the target to leave ``length`` bytes empty (a sparse upload)."""
        end = self._open()
        if length < 0:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.STREAMS, "Cannot send negative length hole")
        if not self._sparse(end):
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.RPC, "Skipping is not supported with this stream")
        end.send_hole(int(length), flags)
        return 0

    @staticmethod
    def _sparse(end: Any) -> bool:
        return bool(getattr(end, "sparse", False))

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

    def sparseRecvAll(self, handler: Callable[["virStream", bytes, Any], Any],
                      holeHandler: Callable[["virStream", int, Any], Any], opaque: Any) -> None:
        """recvAll, with each hole handed to ``holeHandler(stream, length, opaque)``."""
        while True:
            got = self.recvFlags(_RECV_ALL_CHUNK, STREAM_RECV_STOP_AT_HOLE)
            if got == -2:
                raise libvirtError("cannot use sparseRecvAll with nonblocking stream")
            if got == -3:
                ret = holeHandler(self, self.recvHole(), opaque)
                if isinstance(ret, int) and ret < 0:
                    self.abort()
                    raise RuntimeError(f"holeHandler handler returned {ret}")
                continue
            if not got:
                return
            ret = handler(self, got, opaque)
            if isinstance(ret, int) and ret < 0:
                self.abort()
                raise RuntimeError(f"sparseRecvAll handler returned {ret}")

    def sparseSendAll(self, handler: Callable[["virStream", int, Any], Any],
                      holeHandler: Callable[["virStream", Any], Any],
                      skipHandler: Callable[["virStream", int, Any], int], opaque: Any) -> None:
        """sendAll, asking ``holeHandler(stream, opaque)`` for ``[inData, sectionLen]`` before
        each piece: holes are sent as such and skipped in the source by ``skipHandler``."""
        while True:
            in_data, section_len = holeHandler(self, opaque)
            if not in_data and section_len > 0:
                if self.sendHole(section_len) < 0 or skipHandler(self, section_len, opaque) < 0:
                    self.abort()
                continue
            got = handler(self, min(_RECV_ALL_CHUNK, section_len), opaque)
            if isinstance(got, int) and got < 0:
                self.abort()
                raise RuntimeError(f"sparseSendAll handler returned {got}")
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
