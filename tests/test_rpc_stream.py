"""Stream state: both ends driven in memory through the real framer."""

from __future__ import annotations

import pytest

from pyvirt.errors import ErrorDomain, ErrorNumber, error
from pyvirt.rpc import wire
from pyvirt.rpc.stream import (
    Abort,
    Ack,
    Data,
    Direction,
    EndOfData,
    Failed,
    Finish,
    Hole,
    LocalStreamError,
    RemoteStreamError,
    Role,
    Stream,
    StreamState,
)

PROG, PROC, SERIAL = wire.Program.REMOTE, 215, 9


def pair(direction: Direction, sparse: bool = False, chunk_size: int = wire.LEGACY_PAYLOAD_MAX):
    client = Stream(PROG, PROC, SERIAL, role=Role.CLIENT, direction=direction, sparse=sparse,
                    chunk_size=chunk_size)
    server = Stream(PROG, PROC, SERIAL, role=Role.SERVER, direction=direction, sparse=sparse)
    return client, server


def deliver(parts: list, to: Stream) -> list:
    """Frame the sender's buffers, parse them back, and feed the receiver."""
    framer = wire.Framer()
    framer.receive_data(b"".join(bytes(p) for p in parts))
    return [to.receive(msg) for msg in framer]


def test_upload_finish_ack():
    client, server = pair(Direction.UPLOAD, chunk_size=4)
    events = deliver(client.send(Data(b"0123456789")), server)
    assert [e.data for e in events] == [b"0123", b"4567", b"89"]
    assert deliver(client.send(Finish()), server) == [Finish()]
    assert client.state is server.state is StreamState.FINISHING
    assert deliver(server.send(Ack()), client) == [Ack()]
    assert client.state is server.state is StreamState.CLOSED
    assert client.done and server.done


def test_stream_packets_on_the_wire():
    client, server = pair(Direction.UPLOAD)
    finish_parts = client.send(Finish())
    finish = b"".join(finish_parts)
    deliver(finish_parts, server)
    assert finish.hex() == ("0000001c" "20008086" "00000001" "000000d7"
                            "00000003" "00000009" "00000000")
    ack = b"".join(server.send(Ack()))
    assert ack == finish  # the server's acknowledgement is the same empty STREAM/OK
    client2, server2 = pair(Direction.DOWNLOAD)
    eof = b"".join(server2.send(EndOfData()))
    assert eof.hex().startswith("0000001c")
    assert eof.hex().endswith("00000003" "00000009" "00000002")  # STREAM / CONTINUE, empty
    abort = b"".join(client2.send(Abort()))
    assert abort.hex().endswith("00000003" "00000009" "00000001")  # STREAM / ERROR, empty


def test_download_eof_then_finish():
    client, server = pair(Direction.DOWNLOAD)
    assert deliver(server.send(Data(b"abc")), client) == [Data(b"abc")]
    assert deliver(server.send(EndOfData()), client) == [EndOfData()]
    with pytest.raises(LocalStreamError, match="no \\(more\\) data"):
        server.send(Data(b"late"))
    deliver(client.send(Finish()), server)
    deliver(server.send(Ack()), client)
    assert client.state is StreamState.CLOSED


def test_wrong_direction_is_refused():
    client, server = pair(Direction.UPLOAD)
    with pytest.raises(LocalStreamError):
        server.send(Data(b"x"))
    # ... and a peer doing it is a remote error
    rogue = Stream(PROG, PROC, SERIAL, role=Role.SERVER, direction=Direction.DOWNLOAD)
    with pytest.raises(RemoteStreamError):
        deliver(rogue.send(Data(b"x")), client)


def test_console_carries_data_both_ways():
    client, server = pair(Direction.BOTH)
    assert deliver(client.send(Data(b"ls\n")), server) == [Data(b"ls\n")]
    assert deliver(server.send(Data(b"file\n")), client) == [Data(b"file\n")]


def test_abort_and_server_data_in_flight():
    client, server = pair(Direction.DOWNLOAD)
    in_flight = server.send(Data(b"late"))
    deliver(client.send(Abort()), server)
    assert client.state is StreamState.ABORTING
    assert deliver(in_flight, client) == [Data(b"late")]  # tolerated, caller discards it
    deliver(server.send(Ack()), client)
    assert client.state is StreamState.CLOSED


def test_server_failure_as_stream_error_and_as_reply_error():
    err = error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "migration failed")
    client, server = pair(Direction.UPLOAD)
    (event,) = deliver(server.send(Failed(err)), client)
    assert isinstance(event, Failed) and event.error.err == err.err
    assert client.state is StreamState.FAILED and client.error.err == err.err
    with pytest.raises(LocalStreamError):
        client.send(Data(b"x"))

    client, _ = pair(Direction.UPLOAD)
    reply = wire.encode_error_reply(wire.Header(PROG, 1, PROC, 0, SERIAL, 0), err)
    (msg,) = list(feed(reply))
    assert isinstance(client.receive(msg), Failed)


def feed(data: bytes) -> wire.Framer:
    framer = wire.Framer()
    framer.receive_data(data)
    return framer


def test_holes_only_on_sparse_streams():
    client, server = pair(Direction.UPLOAD)
    with pytest.raises(LocalStreamError, match="sparse"):
        client.send(Hole(4096))
    client, server = pair(Direction.UPLOAD, sparse=True)
    parts = client.send(Hole(1 << 33, 0))
    assert bytes(parts[1]).hex() == "0000000200000000" "00000000"
    assert deliver(parts, server) == [Hole(1 << 33, 0)]
    plain = Stream(PROG, PROC, SERIAL, role=Role.SERVER, direction=Direction.UPLOAD)
    with pytest.raises(RemoteStreamError, match="sparse"):
        deliver(client.send(Hole(1)), plain)


def test_nothing_after_close():
    client, server = pair(Direction.UPLOAD)
    deliver(client.send(Finish()), server)
    deliver(server.send(Ack()), client)
    for event in (Data(b"x"), Finish(), Abort(), EndOfData()):
        with pytest.raises(LocalStreamError):
            client.send(event)
    with pytest.raises(LocalStreamError):
        server.send(Ack())


def test_ack_without_finish_is_illegal():
    client, server = pair(Direction.UPLOAD)
    with pytest.raises(LocalStreamError):
        server.send(Ack())


def test_foreign_packets_are_rejected():
    client, server = pair(Direction.UPLOAD)
    other = Stream(PROG, PROC, SERIAL + 1, role=Role.CLIENT, direction=Direction.UPLOAD)
    with pytest.raises(RemoteStreamError, match="does not belong"):
        deliver(other.send(Data(b"x")), server)
    call = wire.encode_call(PROG, PROC, SERIAL)
    (msg,) = list(feed(call))
    with pytest.raises(RemoteStreamError, match="unexpected packet"):
        server.receive(msg)


def test_empty_data_is_not_eof():
    client, _ = pair(Direction.UPLOAD)
    with pytest.raises(LocalStreamError, match="EndOfData"):
        client.send(Data(b""))


def test_large_data_is_split_without_copies():
    client, server = pair(Direction.UPLOAD)
    blob = bytes(range(256)) * 2048  # 512 KiB
    parts = client.send(Data(blob))
    assert len(parts) == 6  # three packets of <= 262120 bytes
    assert all(len(p) <= wire.LEGACY_PAYLOAD_MAX for p in parts[1::2])
    assert isinstance(parts[1], memoryview)
    got = b"".join(e.data for e in deliver(parts, server))
    assert got == blob
