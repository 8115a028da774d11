"""Message framing for libvirt's RPC, sans I/O.

A packet on the wire::

    u32 len      the whole packet, these 4 bytes included (>= 28)
    u32 prog     program number (REMOTE, QEMU, KEEPALIVE, ...)
    u32 vers     always 1
    i32 proc     procedure number within the program
    i32 type     MessageType
    u32 serial   the client counts calls from 0; replies and stream packets
                 carry the serial of the call they belong to
    i32 status   Status
    [i32 nfds]   only for *_WITH_FDS types (the fds travel by SCM_RIGHTS)
    payload      XDR: call args, reply ret, remote_error, or stream bytes

:class:`Framer` turns received bytes into :class:`Message` objects (feed it
with ``receive_data``, ``b""`` meaning EOF, then call ``next_message``);
the ``encode_*`` functions build packets.  Nothing here touches a socket.

A length word below 28 or above the message limit is a
:class:`ProtocolError`: the peer is broken or hostile and the connection
should be dropped (libvirtd does the same).
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Iterator
from enum import IntEnum

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from .xdr import decode_error, encode_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

# --- programs and limits -----------------------------------------------------------


class Program(IntEnum):
    """Program numbers (the ``prog`` header field)."""

    REMOTE = 0x20008086
    QEMU = 0x20008087
    LXC = 0x00068000
    KEEPALIVE = 0x6B656570  # "keep"
    ADMIN = 0x06900690


PROTOCOL_VERSION = 1
"""``vers`` of every program."""

LEN_SIZE = 4
HEADER_SIZE = 24
FRAME_HEADER_SIZE = LEN_SIZE + HEADER_SIZE
"""Smallest packet: a length word and a header with an empty payload."""
MESSAGE_MAX = 33554432
"""Largest packet not counting the length word (32 MiB, libvirt >= 6.x)."""
PAYLOAD_MAX = MESSAGE_MAX - HEADER_SIZE
"""Largest payload: 33554408 bytes."""
LEGACY_PAYLOAD_MAX = 262144 - HEADER_SIZE
"""Largest stream chunk libvirt sends (262120 bytes); older peers reject more."""
NUM_FDS_MAX = 32


class MessageType(IntEnum):
    CALL = 0
    REPLY = 1
    MESSAGE = 2  # one-way: events, keepalive
    STREAM = 3
    CALL_WITH_FDS = 4
    REPLY_WITH_FDS = 5
    STREAM_HOLE = 6


class Status(IntEnum):
    OK = 0
    ERROR = 1
    CONTINUE = 2  # stream data follows


_WITH_FDS = (MessageType.CALL_WITH_FDS, MessageType.REPLY_WITH_FDS)


class Header(namedtuple("Header", ("prog", "vers", "proc", "type", "serial", "status"))):
    """The 24-byte header.  Fields are plain ints when decoded (compare with the enums).
    (collections.namedtuple, not typing.NamedTuple: typing costs every command-line call)"""

    __slots__ = ()
    prog: int
    vers: int
    proc: int
    type: int
    serial: int
    status: int

    def reply(self, status: int = Status.OK) -> "Header":
        """The header answering this call: same prog, vers, proc and serial."""
        return Header(self.prog, self.vers, self.proc, MessageType.REPLY, self.serial, status)


class Message(namedtuple("Message", ("header", "payload", "nfds"), defaults=(0,))):
    """One received packet.  ``nfds`` counts fds announced by a *_WITH_FDS packet."""

    __slots__ = ()
    header: Header
    payload: bytes
    nfds: int


class ProtocolError(Exception):
    """The byte stream cannot be framed; drop the connection."""


# --- encoding -------------------------------------------------------------------

_FRAME = struct.Struct(">IIIiiIi")
_FRAME_FDS = struct.Struct(">IIIiiIiI")
_LEN = struct.Struct(">I")
_HDR = struct.Struct(">IIiiIi")


def encode_frame_header(header: tuple[int, ...], payload_len: int, nfds: int = 0) -> bytes:
    """Length word + header (+ nfds) for a payload of ``payload_len`` bytes."""
    if header[3] in _WITH_FDS:
        if payload_len + 4 > PAYLOAD_MAX:
            raise ProtocolError(f"payload of {payload_len} bytes exceeds {PAYLOAD_MAX - 4}")
        return _FRAME_FDS.pack(FRAME_HEADER_SIZE + 4 + payload_len, *header, nfds)
    if payload_len > PAYLOAD_MAX:
        raise ProtocolError(f"payload of {payload_len} bytes exceeds {PAYLOAD_MAX}")
    return _FRAME.pack(FRAME_HEADER_SIZE + payload_len, *header)


def encode_message(header: tuple[int, ...], payload: bytes = b"", nfds: int = 0) -> bytes:
    """One packet as a single bytes object (best for small messages)."""
    return encode_frame_header(header, len(payload), nfds) + payload


def encode_message_parts(header: tuple[int, ...], payload: Any = b"", nfds: int = 0) -> list[Any]:
    """One packet as buffers for ``writelines``/``sendmsg``: the payload is not copied."""
    frame = encode_frame_header(header, len(payload), nfds)
    return [frame, payload] if payload else [frame]


def encode_call(prog: int, proc: int, serial: int, payload: bytes = b"") -> bytes:
    return _FRAME.pack(FRAME_HEADER_SIZE + len(payload), prog, PROTOCOL_VERSION, proc,
                       MessageType.CALL, serial, Status.OK) + payload


def encode_reply(call: tuple[int, ...], payload: bytes = b"") -> bytes:
    """REPLY/OK to ``call`` (a Header) carrying the encoded ret struct."""
    n = len(payload)
    if n > PAYLOAD_MAX:
        raise ProtocolError(f"payload of {n} bytes exceeds {PAYLOAD_MAX}")
    return _FRAME.pack(FRAME_HEADER_SIZE + n, call[0], call[1], call[2],
                       MessageType.REPLY, call[4], Status.OK) + payload


def encode_error_reply(call: tuple[int, ...], err: libvirtError) -> bytes:
    """REPLY/ERROR to ``call`` carrying ``err`` as a remote_error."""
    payload = encode_error(err)
    return _FRAME.pack(FRAME_HEADER_SIZE + len(payload), call[0], call[1], call[2],
                       MessageType.REPLY, call[4], Status.ERROR) + payload


def encode_event(prog: int, proc: int, payload: bytes, serial: int = 1) -> bytes:
    """A MESSAGE (event).  libvirtd sends domain events with serial 1."""
    return _FRAME.pack(FRAME_HEADER_SIZE + len(payload), prog, PROTOCOL_VERSION, proc,
                       MessageType.MESSAGE, serial, Status.OK) + payload


def decode_error_payload(payload: Any) -> libvirtError:
    """The libvirtError carried by a REPLY/ERROR or STREAM/ERROR payload."""
    return decode_error(payload)


# --- the errors libvirtd itself answers with ----------------------------------------


def unknown_procedure_error(proc: int) -> libvirtError:
    """libvirtd's answer to a procedure it does not know.

    Clients rewrite exactly this (code RPC, domain RPC, level ERROR, message
    starting "unknown procedure") into VIR_ERR_NO_SUPPORT and fall back.
    """
    return error(ErrorNumber.RPC, ErrorDomain.RPC, f"unknown procedure: {proc}")


def unknown_program_error(prog: int, vers: int) -> libvirtError:
    return error(ErrorNumber.RPC, ErrorDomain.RPC, f"Cannot find program {prog} version {vers}")


def connection_not_open_error() -> libvirtError:
    """Any call but auth, SUPPORTS_FEATURE(10) and OPEN before CONNECT_OPEN."""
    return error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC, "hypervisor connection not open")


# --- decoding ------------------------------------------------------------------------


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
"""``next_message``: no complete packet buffered; feed more bytes."""
EOF = _Sentinel("EOF")
"""``next_message``: the peer closed cleanly between packets."""

_new_header = tuple.__new__
_new_message = tuple.__new__


class Framer:
    """Splits a received byte stream into messages.

    >>> f = Framer()
    >>> f.receive_data(data)          # b"" means the peer closed
    >>> while (m := f.next_message()) not in (NEED_DATA, EOF): handle(m)

    Bytes arriving in one piece are sliced without being copied into a
    buffer first; partial packets accumulate in a bytearray that grows with
    the bytes received, never with the length a packet announces: a peer
    that declares 32 MiB and sends 100 bytes costs 100 bytes.  How much a
    receiver lets peers hold (and for how long) is its own policy:
    ``buffered`` and ``pending_length`` tell it what an incomplete packet holds.
    """

    __slots__ = ("max_packet", "with_fds", "fd_markers", "_buf", "_pos", "_eof", "_failed")

    def __init__(self, max_message: int = MESSAGE_MAX, with_fds: tuple[int, ...] = _WITH_FDS) -> None:
        self.max_packet = max_message + LEN_SIZE
        self.with_fds = with_fds
        """Message types whose packets carry an fd count (a server reads it only in CALL_WITH_FDS)."""
        self.fd_markers = False
        """The byte each descriptor travels on follows the packet (a UNIX socket's peer sends
        them): a packet counts as complete once those bytes are in too, and they are dropped."""
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._eof = False
        self._failed: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf) - self._pos

    @property
    def pending_length(self) -> int:
        """The length word of the packet being received (0 while fewer than 4 bytes
        of it are here).  Meaningful after ``next_message`` returned NEED_DATA."""
        if len(self._buf) - self._pos < LEN_SIZE:
            return 0
        return _LEN.unpack_from(self._buf, self._pos)[0]

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not yet returned as messages (a receiver
        that takes over the byte stream for a while starts from these)."""
        rest = bytes(memoryview(self._buf)[self._pos:])
        self._buf, self._pos = b"", 0
        return rest

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            raise ProtocolError("data received after EOF")
        if not data:
            self._eof = True
            return
        if self._pos >= len(self._buf):
            # Keep the caller's bytes as they are; copy anything mutable so a
            # reused receive buffer is never aliased.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        buf = self._buf
        if isinstance(buf, bytes):
            buf = bytearray(memoryview(buf)[self._pos:])
        elif self._pos:
            del buf[:self._pos]
        buf += data
        self._buf = buf
        self._pos = 0

    def next_message(self) -> Message | _Sentinel:
        if self._failed is not None:
            raise self._failed
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < LEN_SIZE:
            return self._need(avail)
        n, = _LEN.unpack_from(buf, pos)
        if n < FRAME_HEADER_SIZE or n > self.max_packet:
            self._failed = ProtocolError(
                f"packet length {n} outside [{FRAME_HEADER_SIZE}, {self.max_packet}]")
            raise self._failed
        if avail < n:
            return self._need(avail)
        header = _new_header(Header, _HDR.unpack_from(buf, pos + LEN_SIZE))
        start, end = pos + FRAME_HEADER_SIZE, pos + n
        nfds = 0
        if header[3] in self.with_fds:
            if n < FRAME_HEADER_SIZE + 4:
                self._failed = ProtocolError("packet with fds has no fd count")
                raise self._failed
            nfds, = _LEN.unpack_from(buf, start)
            if nfds > NUM_FDS_MAX:
                self._failed = ProtocolError(f"{nfds} fds announced, at most {NUM_FDS_MAX}")
                raise self._failed
            start += 4
        markers = nfds if self.fd_markers else 0
        if avail < n + markers:
            return self._need(avail)
        if type(buf) is bytes:
            payload = buf[start:end]
        else:
            with memoryview(buf) as view:
                payload = view[start:end].tobytes()
        if end + markers == len(buf):
            # All of it consumed: let the buffer go now, not at the next read,
            # which may never come (an idle client would keep a 32 MiB buffer).
            self._buf, self._pos = b"", 0
        else:
            self._pos = end + markers
        return _new_message(Message, (header, payload, nfds))

    def _need(self, avail: int) -> _Sentinel:
        if not self._eof:
            return NEED_DATA
        if avail:
            self._failed = ProtocolError(f"connection closed inside a packet ({avail} bytes pending)")
            raise self._failed
        return EOF

    def __iter__(self) -> Iterator[Message]:
        """Yield every complete buffered message (stops at NEED_DATA or EOF)."""
        while True:
            msg = self.next_message()
            if msg is NEED_DATA or msg is EOF:
                return
            yield msg  # type: ignore[misc]


__all__ = [
    "Program", "PROTOCOL_VERSION", "MessageType", "Status", "Header", "Message",
    "ProtocolError", "Framer", "NEED_DATA", "EOF",
    "LEN_SIZE", "HEADER_SIZE", "FRAME_HEADER_SIZE", "MESSAGE_MAX", "PAYLOAD_MAX",
    "LEGACY_PAYLOAD_MAX", "NUM_FDS_MAX",
    "encode_frame_header", "encode_message", "encode_message_parts", "encode_call",
    "encode_reply", "encode_error_reply", "encode_event", "decode_error_payload",
    "unknown_procedure_error", "unknown_program_error", "connection_not_open_error",
]
