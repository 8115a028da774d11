"""Message framing: the Framer state machine, header encoding, libvirtd's own errors."""

from __future__ import annotations

import struct

import pytest

from pyvirt.errors import libvirtError
from pyvirt.rpc import wire
from pyvirt.rpc.wire import EOF, NEED_DATA, Framer, Header, MessageType, Program, ProtocolError, Status

CALL = Header(Program.REMOTE, 1, 16, MessageType.CALL, 42, Status.OK)


def drain(framer: Framer) -> list[wire.Message]:
    return list(framer)


def test_header_layout():
    data = wire.encode_message(CALL, b"abcd")
    assert data.hex() == ("00000020" "20008086" "00000001" "00000010"
                          "00000000" "0000002a" "00000000" "61626364")
    assert wire.encode_call(Program.REMOTE, 16, 42, b"abcd") == data


def test_reply_header_mirrors_the_call():
    reply = CALL.reply(Status.ERROR)
    assert reply == (Program.REMOTE, 1, 16, MessageType.REPLY, 42, Status.ERROR)
    msg = next(iter(feed(wire.encode_reply(CALL, b"xyzw"))))
    assert msg.header == CALL.reply() and msg.payload == b"xyzw"


def feed(*chunks: bytes) -> Framer:
    framer = Framer()
    for chunk in chunks:
        framer.receive_data(chunk)
    return framer


def test_one_byte_at_a_time():
    data = wire.encode_message(CALL, b"12345678") + wire.encode_message(CALL._replace(serial=43))
    framer = Framer()
    got = []
    for byte in data:
        framer.receive_data(bytes([byte]))
        got += drain(framer)
    assert [m.header.serial for m in got] == [42, 43]
    assert got[0].payload == b"12345678" and got[1].payload == b""
    assert framer.next_message() is NEED_DATA


def test_many_messages_in_one_chunk_and_split_across_chunks():
    msgs = [wire.encode_message(CALL._replace(serial=n), bytes([n]) * n) for n in range(10)]
    blob = b"".join(msgs)
    framer = feed(blob[:50])
    first = drain(framer)
    framer.receive_data(blob[50:])
    rest = drain(framer)
    got = first + rest
    assert [m.header.serial for m in got] == list(range(10))
    assert all(m.payload == bytes([n]) * n for n, m in enumerate(got))
    assert isinstance(got[3].payload, bytes)
    assert framer.buffered == 0


def test_clean_eof():
    framer = feed(wire.encode_message(CALL), b"")
    assert framer.next_message().header == CALL
    assert framer.next_message() is EOF
    with pytest.raises(ProtocolError, match="after EOF"):
        framer.receive_data(b"x")


def test_eof_inside_a_packet_is_a_protocol_error():
    framer = feed(wire.encode_message(CALL, b"abcd")[:-1], b"")
    with pytest.raises(ProtocolError, match="inside a packet"):
        framer.next_message()


@pytest.mark.parametrize("length", [0, 4, 27])
def test_length_word_too_small(length):
    framer = feed(struct.pack(">I", length) + b"\0" * 40)
    with pytest.raises(ProtocolError, match="packet length"):
        framer.next_message()
    with pytest.raises(ProtocolError):  # and stays failed
        framer.next_message()


def test_length_word_too_large():
    assert Framer().max_packet == wire.MESSAGE_MAX + 4
    framer = feed(struct.pack(">I", wire.MESSAGE_MAX + 5))
    with pytest.raises(ProtocolError, match="packet length"):
        framer.next_message()
    small = Framer(max_message=64)
    small.receive_data(wire.encode_message(CALL, b"x" * 40))  # exactly 4 + 24 + 40 = 68
    assert small.next_message().payload == b"x" * 40
    small.receive_data(wire.encode_message(CALL, b"x" * 44))
    with pytest.raises(ProtocolError):
        small.next_message()


def test_limits():
    assert wire.PAYLOAD_MAX == 33554408
    assert wire.LEGACY_PAYLOAD_MAX == 262120
    with pytest.raises(ProtocolError, match="exceeds"):
        wire.encode_message(CALL, bytes(wire.PAYLOAD_MAX + 1))
    assert len(wire.encode_frame_header(CALL, wire.PAYLOAD_MAX)) == 28


def test_parts_do_not_copy_the_payload():
    payload = bytearray(b"x" * 1000)
    parts = wire.encode_message_parts(CALL, payload)
    assert parts[1] is payload and b"".join(parts) == wire.encode_message(CALL, bytes(payload))
    assert wire.encode_message_parts(CALL) == [wire.encode_message(CALL)]


def test_received_buffers_are_not_aliased():
    buf = bytearray(wire.encode_message(CALL, b"abcd"))
    framer = Framer()
    framer.receive_data(buf)
    buf[:] = b"\0" * len(buf)
    assert framer.next_message().payload == b"abcd"


def test_fd_count_for_with_fds_types():
    header = CALL._replace(type=MessageType.CALL_WITH_FDS)
    data = wire.encode_message(header, b"args", nfds=2)
    assert len(data) == 28 + 4 + 4
    msg = feed(data).next_message()
    assert msg.nfds == 2 and msg.payload == b"args"
    too_many = wire.encode_message(header, b"", nfds=wire.NUM_FDS_MAX + 1)
    with pytest.raises(ProtocolError, match="fds"):
        feed(too_many).next_message()


def test_unknown_procedure_error_is_libvirts():
    err = wire.unknown_procedure_error(999)
    assert isinstance(err, libvirtError)
    assert err.get_error_code() == 39 and err.get_error_domain() == 7
    assert err.get_error_level() == 2
    assert err.get_error_message() == "unknown procedure: 999"


def test_connection_not_open_error():
    err = wire.connection_not_open_error()
    assert (err.get_error_code(), err.get_error_domain()) == (1, 7)
    assert "hypervisor connection not open" in err.get_error_message()


def test_error_reply_roundtrip():
    data = wire.encode_error_reply(CALL, wire.unknown_procedure_error(16))
    msg = feed(data).next_message()
    assert msg.header == CALL.reply(Status.ERROR)
    err = wire.decode_error_payload(msg.payload)
    assert err.err == wire.unknown_procedure_error(16).err


def test_event_message():
    data = wire.encode_event(Program.REMOTE, 318, b"abcd")
    msg = feed(data).next_message()
    assert msg.header == (Program.REMOTE, 1, 318, MessageType.MESSAGE, 1, Status.OK)
