"""The tunnel's two pumps on their own: fd → STREAM packets (splice) and
STREAM packets → pipe (splice), with another packet interleaved, an abort,
and every byte checked."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import struct
import threading

from pyvirt.rpc.stream.pump import FdUploader, PumpStopped, SpliceReceiver
from pyvirt.rpc.wire import Framer, MessageType, Status, encode_message

PROC, SERIAL = 215, 9


def connected_pair():
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    srv.close()
    cli.setblocking(False)
    conn.setblocking(False)
    return cli, conn


def test_upload_then_receive_every_byte_in_order():
    data = os.urandom(3 << 20) + b"tail"
    cli, conn = connected_pair()
    src_r, src_w = os.pipe2(os.O_CLOEXEC)
    dst_r, dst_w = os.pipe2(os.O_CLOEXEC)
    fcntl.fcntl(src_w, fcntl.F_SETPIPE_SZ, 1 << 20)   # as the tunnel's pipes
    others: list[bytes] = []
    up = FdUploader(src_r, cli.fileno(), 0x20008086, PROC, SERIAL, chunk=100_000)
    rx = SpliceReceiver(conn.fileno(), dst_w, PROC, SERIAL, b"", others.append, 1 << 26)
    out = bytearray()
    result = {}

    def produce():
        view = memoryview(data)
        while view:
            view = view[os.write(src_w, view[:65536]):]
        os.close(src_w)

    def consume():
        while chunk := os.read(dst_r, 1 << 20):
            out.extend(chunk)

    def upload():
        result["sent"] = up.run()
        # a keepalive-like packet from the same client, then the end of the stream
        os.set_blocking(cli.fileno(), True)
        cli.sendall(encode_message((0x6B656570, 1, 1, MessageType.MESSAGE, 0, Status.OK)))
        cli.sendall(encode_message((0x20008086, 1, PROC, MessageType.STREAM, SERIAL, Status.OK)))

    def receive():
        result["end"] = rx.run()
        os.close(dst_w)
    threads = [threading.Thread(target=f) for f in (produce, consume, upload, receive)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert result["sent"] == len(data)
    assert result["end"].status == Status.OK and result["end"].received == len(data)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert len(others) == 1 and struct.unpack(">I", others[0][:4])[0] == 28
    up.close()
    rx.close()


def test_framer_hands_over_its_buffered_bytes():
    f = Framer()
    packet = encode_message((1, 1, PROC, MessageType.STREAM, SERIAL, Status.CONTINUE), b"abc")
    f.receive_data(packet + packet[:10])
    assert f.next_message().payload == b"abc"
    assert f.take_buffered() == packet[:10]
    assert f.buffered == 0


def test_stopped_uploader_returns_at_once():
    src_r, src_w = os.pipe2(os.O_CLOEXEC)
    cli, conn = connected_pair()
    up = FdUploader(src_r, cli.fileno(), 1, PROC, SERIAL)
    box = {}
    t = threading.Thread(target=lambda: box.update(err=_run(up)))
    t.start()
    up.stop()
    t.join(5)
    assert not t.is_alive() and box["err"] == "stopped"
    up.close()
    for fd in (src_r, src_w):
        os.close(fd)


def _run(up):
    try:
        up.run()
    except PumpStopped:
        return "stopped"
    return "ended"


def test_client_keepalive_drops_a_silent_server():
    """A peer that accepts and then says nothing (power loss, partition): pending
    calls fail instead of waiting for ever."""
    import asyncio
    import pytest
    from pyvirt.errors import libvirtError
    from pyvirt.rpc.client import RPCClient
    from pyvirt.rpc.protocol import REMOTE
    from pyvirt.rpc.wire import Program

    async def main():
        silent = socket.create_server(("127.0.0.1", 0))
        try:
            client = await RPCClient.connect_tcp("127.0.0.1", silent.getsockname()[1])
            client.start_keepalive(interval=0.2, count=1)
            with pytest.raises(libvirtError, match="End of file"):
                await asyncio.wait_for(client.call(Program.REMOTE, REMOTE.by_name["AUTH_LIST"]), 10)
        finally:
            silent.close()
    asyncio.run(main())
