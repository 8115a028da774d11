"""Sans-I/O state of one RPC stream (tunnelled migration, console, volume transfer).

A stream belongs to the CALL that opened it: every packet of the stream
carries that call's ``(prog, proc, serial)``.  After the call's REPLY/OK the
packets are (type/status, from whom):

=================  =======================  ===========================================
event              packet                   sent by
=================  =======================  ===========================================
:class:`Data`      STREAM/CONTINUE, bytes   a side that carries data in this direction
:class:`Hole`      STREAM_HOLE/CONTINUE     same, only on sparse streams;
                   ``{length hyper, flags uint}``
:class:`EndOfData` STREAM/CONTINUE, empty   a data sender: it has no more data
:class:`Finish`    STREAM/OK, empty         the client: done, please confirm
:class:`Abort`     STREAM/ERROR, empty      the client: cancel
:class:`Ack`       STREAM/OK, empty         the server: Finish or Abort is done
:class:`Failed`    STREAM/ERROR or          the server: the stream failed
                   REPLY/ERROR + remote_error
=================  =======================  ===========================================

All transition rules live in :data:`TRANSITIONS` and :meth:`Stream._check`;
the same object serves either side (``role`` says which one we are).  Sending
an illegal event raises :class:`LocalStreamError`; receiving one raises
:class:`RemoteStreamError` (the peer broke the protocol).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union as TUnion

from ..direction import Direction  # noqa: F401 - part of this package's names
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..wire import (
    LEGACY_PAYLOAD_MAX,
    PROTOCOL_VERSION,
    Message,
    MessageType,
    Status,
    decode_error_payload,
    encode_frame_header,
)
from ..xdr import encode_error


class Role(Enum):
    CLIENT = "client"  # sent the CALL that opened the stream
    SERVER = "server"

    @property
    def peer(self) -> "Role":
        return Role.SERVER if self is Role.CLIENT else Role.CLIENT




class StreamState(Enum):
    OPEN = "open"
    FINISHING = "finishing"  # client sent Finish, waiting for Ack
    ABORTING = "aborting"  # client sent Abort, waiting for Ack
    CLOSED = "closed"  # acknowledged
    FAILED = "failed"  # the server reported an error


# --- events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Data:
    data: Any  # bytes-like


@dataclass(frozen=True, slots=True)
class Hole:
    length: int
    flags: int = 0

    def __post_init__(self) -> None:
        if self.length < 0:
            raise ValueError(f"hole length must not be negative, got {self.length}")


@dataclass(frozen=True, slots=True)
class EndOfData:
    pass


@dataclass(frozen=True, slots=True)
class Finish:
    pass


@dataclass(frozen=True, slots=True)
class Abort:
    pass


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class Failed:
    error: libvirtError


Event = TUnion[Data, Hole, EndOfData, Finish, Abort, Ack, Failed]

_DATA_EVENTS = (Data, Hole, EndOfData)


class StreamError(Exception):
    """An event that is not legal in the stream's current state."""


class LocalStreamError(StreamError):
    """We tried to send something illegal: a bug on our side."""


class RemoteStreamError(StreamError):
    """The peer sent something illegal: abort the stream."""


# --- the rules ---------------------------------------------------------------------

C, S = Role.CLIENT, Role.SERVER
O, FIN, ABT = StreamState.OPEN, StreamState.FINISHING, StreamState.ABORTING

TRANSITIONS: dict[tuple[StreamState, Role, type], StreamState] = {
    # data in either direction while open (direction and half-close checked separately)
    **{(O, who, ev): O for who in (C, S) for ev in _DATA_EVENTS},
    # server data already in flight when the client finishes or aborts
    **{(st, S, ev): st for st in (FIN, ABT) for ev in _DATA_EVENTS},
    (O, C, Finish): FIN,
    (O, C, Abort): ABT,
    (FIN, C, Abort): ABT,
    (FIN, S, Ack): StreamState.CLOSED,
    (ABT, S, Ack): StreamState.CLOSED,
    (O, S, Failed): StreamState.FAILED,
    (FIN, S, Failed): StreamState.FAILED,
    (ABT, S, Failed): StreamState.FAILED,
}
"""(state, sender, event type) -> next state.  Anything absent is illegal."""

del C, S, O, FIN, ABT

_HOLE = struct.Struct(">qI")


class Stream:
    """Protocol state of one stream, seen from ``role``.

    ``send(event)`` checks the event and returns the packet(s) as a list of
    buffers for ``writelines``; ``receive(message)`` turns a packet of this
    stream into an event after checking it.  Large :class:`Data` is split
    into packets of at most ``chunk_size`` bytes without copying.
    """

    def __init__(self, prog: int, proc: int, serial: int, *, role: Role, direction: Direction,
                 sparse: bool = False, chunk_size: int = LEGACY_PAYLOAD_MAX) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.prog, self.proc, self.serial = prog, proc, serial
        self.role = role
        self.direction = Direction(direction)
        self.sparse = sparse
        self.chunk_size = chunk_size
        self.state = StreamState.OPEN
        self.error: libvirtError | None = None
        # Whether each side may still send data (EndOfData or Finish closes its half).
        self.sending = {
            Role.CLIENT: bool(self.direction & Direction.UPLOAD),
            Role.SERVER: bool(self.direction & Direction.DOWNLOAD),
        }

    def __repr__(self) -> str:
        return (f"<Stream proc={self.proc} serial={self.serial} {self.role.value} "
                f"{self.direction!r} {self.state.value}>")

    @property
    def done(self) -> bool:
        return self.state in (StreamState.CLOSED, StreamState.FAILED)

    def matches(self, header: tuple[int, ...]) -> bool:
        """True if a packet with ``header`` belongs to this stream."""
        return header[0] == self.prog and header[2] == self.proc and header[4] == self.serial

    # -- rules
    def _check(self, who: Role, event: Event, exc: type[StreamError]) -> StreamState:
        kind = type(event)
        nxt = TRANSITIONS.get((self.state, who, kind))
        if nxt is None:
            raise exc(f"{who.value} may not send {kind.__name__} "
                      f"on a stream in state {self.state.value}")
        if kind in _DATA_EVENTS and not self.sending[who]:
            raise exc(f"{who.value} may not send {kind.__name__}: it carries no (more) data "
                      f"on this {self.direction!r} stream")
        if kind is Hole and not self.sparse:
            raise exc("holes are only allowed on sparse streams")
        return nxt

    def _apply(self, who: Role, event: Event, nxt: StreamState) -> None:
        kind = type(event)
        if kind is EndOfData or kind is Finish or kind is Abort:
            self.sending[who] = False  # that side's data is over
        if kind is Failed:
            self.error = event.error  # type: ignore[union-attr]
        self.state = nxt

    # -- sending
    def _header(self, mtype: int, status: int) -> tuple[int, ...]:
        return (self.prog, PROTOCOL_VERSION, self.proc, mtype, self.serial, status)

    def send(self, event: Event) -> list[Any]:
        nxt = self._check(self.role, event, LocalStreamError)
        parts = self._encode(event)
        self._apply(self.role, event, nxt)
        return parts

    def _encode(self, event: Event) -> list[Any]:
        kind = type(event)
        if kind is Data:
            return self._encode_data(event.data)  # type: ignore[union-attr]
        if kind is Hole:
            payload = _HOLE.pack(event.length, event.flags)  # type: ignore[union-attr]
            return [encode_frame_header(self._header(MessageType.STREAM_HOLE, Status.CONTINUE),
                                        len(payload)), payload]
        if kind is EndOfData:
            return [encode_frame_header(self._header(MessageType.STREAM, Status.CONTINUE), 0)]
        if kind is Finish or kind is Ack:
            return [encode_frame_header(self._header(MessageType.STREAM, Status.OK), 0)]
        if kind is Abort:
            return [encode_frame_header(self._header(MessageType.STREAM, Status.ERROR), 0)]
        if kind is Failed:
            payload = encode_error(event.error)  # type: ignore[union-attr]
            return [encode_frame_header(self._header(MessageType.STREAM, Status.ERROR),
                                        len(payload)), payload]
        raise LocalStreamError(f"not a stream event: {event!r}")

    def _encode_data(self, data: Any) -> list[Any]:
        n = len(data)
        if n == 0:
            raise LocalStreamError("empty Data would read as EndOfData; send EndOfData instead")
        header = self._header(MessageType.STREAM, Status.CONTINUE)
        step = self.chunk_size
        if n <= step:
            return [encode_frame_header(header, n), data]
        view = memoryview(data)
        parts: list[Any] = []
        for start in range(0, n, step):
            chunk = view[start:start + step]
            parts.append(encode_frame_header(header, len(chunk)))
            parts.append(chunk)
        return parts

    # -- receiving
    def receive(self, message: Message) -> Event:
        header, payload = message[0], message[1]
        if not self.matches(header):
            raise RemoteStreamError(f"packet {tuple(header)} does not belong to {self!r}")
        event = self._classify(header, payload)
        who = self.role.peer
        nxt = self._check(who, event, RemoteStreamError)
        self._apply(who, event, nxt)
        return event

    def _classify(self, header: tuple[int, ...], payload: Any) -> Event:
        mtype, status = header[3], header[5]
        from_client = self.role is Role.SERVER
        if mtype == MessageType.STREAM:
            if status == Status.CONTINUE:
                return Data(payload) if len(payload) else EndOfData()
            if status == Status.OK:
                return Finish() if from_client else Ack()
            if status == Status.ERROR:
                if from_client:
                    return Abort()
                return Failed(self._decode_error(payload))
        elif mtype == MessageType.STREAM_HOLE and status == Status.CONTINUE:
            if len(payload) < _HOLE.size:
                raise RemoteStreamError(f"hole payload of {len(payload)} bytes, need {_HOLE.size}")
            length, flags = _HOLE.unpack_from(payload)
            if length < 0:
                raise RemoteStreamError(f"negative hole length {length}")
            return Hole(length, flags)
        elif mtype == MessageType.REPLY and status == Status.ERROR and not from_client:
            return Failed(self._decode_error(payload))
        raise RemoteStreamError(f"unexpected packet type {mtype} status {status} on {self!r}")

    @staticmethod
    def _decode_error(payload: Any) -> libvirtError:
        if not len(payload):
            return error(ErrorNumber.RPC, ErrorDomain.STREAMS, "stream aborted by the server")
        try:
            return decode_error_payload(payload)
        except ValueError as exc:
            raise RemoteStreamError(f"undecodable stream error: {exc}") from exc


__all__ = [
    "Role", "Direction", "StreamState", "Stream", "TRANSITIONS",
    "Data", "Hole", "EndOfData", "Finish", "Abort", "Ack", "Failed", "Event",
    "StreamError", "LocalStreamError", "RemoteStreamError",
]
