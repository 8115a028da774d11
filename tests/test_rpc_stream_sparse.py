"""A volume's upload and download streams, holes included, over a real loopback connection.

The server's :class:`VolumeStream` reads or writes a sparse file as the
daemon wires it for STORAGE_VOL_DOWNLOAD/UPLOAD; the client's
:class:`ReceivingStream` / :class:`OutgoingStream` are the remote driver's
ends.  Holes travel as STREAM_HOLE packets only on streams opened sparse,
and the files' allocated blocks show that they were skipped.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from pyvirt import sparsefile
from pyvirt.errors import ErrorNumber, libvirtError
from pyvirt.rpc import wire
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import REMOTE
from pyvirt.rpc.server import RPCServer, ServerClient
from pyvirt.rpc.stream.incoming import VolumeStream
from pyvirt.rpc.wire import MessageType, Program
from pyvirt.refs import StorageVolRef

UPLOAD = REMOTE.by_name["STORAGE_VOL_UPLOAD"]
DOWNLOAD = REMOTE.by_name["STORAGE_VOL_DOWNLOAD"]
AUTH_LIST = REMOTE.by_name["AUTH_LIST"]
VOL = StorageVolRef("pool", "vol", "/pool/vol")
MiB = 1 << 20


class VolumeServer:
    """A CallHandler whose calls open a volume stream on ``path`` as the daemon does."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.streams: dict[tuple[int, int], VolumeStream] = {}
        self.ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def client_connected(self, client: ServerClient) -> None:
        client.session = self

    async def client_disconnected(self, client: ServerClient) -> None:
        for stream in list(self.streams.values()):
            stream.abort(RuntimeError("client disconnected"))

    def handle_message(self, client: ServerClient, msg: wire.Message) -> None:
        h = msg.header
        if h.type in (MessageType.STREAM, MessageType.STREAM_HOLE):
            self.streams[(h.proc, h.serial)].receive(msg)
            return
        if h.proc == AUTH_LIST.number:
            client.send(wire.encode_reply(h, AUTH_LIST.encode_ret([0])))
            return
        proc = REMOTE[h.proc]
        _vol, offset, length, flags = proc.decode_args(msg.payload)
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        os.lseek(fd, offset, os.SEEK_SET)
        key = (h.proc, h.serial)
        stream = VolumeStream(client, fd, self._done, h, proc.stream, on_closed=lambda: self.streams.pop(key, None),
                              length=length, sparse=bool(flags & 1))
        self.streams[key] = stream
        client.send(wire.encode_reply(h, proc.encode_ret(None)))
        stream.start()

    def _done(self, err: BaseException | None) -> None:
        if not self.ended.done():
            self.ended.set_result(err)


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


async def connected(path: str) -> tuple[VolumeServer, RPCServer, RPCClient]:
    handler = VolumeServer(path)
    server = RPCServer(handler)
    port = await server.listen_tcp("127.0.0.1", 0)
    return handler, server, await RPCClient.connect_tcp("127.0.0.1", port)


def sparse_file(path, layout: list[tuple[int, bytes]], size: int) -> bytes:
    """A file of ``size`` bytes with ``data`` at each offset and holes elsewhere; its content."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in layout:
            f.seek(offset)
            f.write(data)
    return path.read_bytes()


LAYOUT = [(0, os.urandom(64 << 10)), (10 * MiB, os.urandom(4096)), (12 * MiB + 8192, b"x" * 100)]


async def download_all(client: RPCClient, offset: int, length: int, flags: int) -> tuple[bytes, list[int]]:
    """Everything the volume stream sends: the content (holes as zeros) and the holes' lengths."""
    _ret, stream = await client.call_stream(Program.REMOTE, DOWNLOAD, (VOL, offset, length, flags),
                                            sparse=bool(flags & 1))
    out, holes = bytearray(), []
    while True:
        got = await stream.recv(1 << 20, True)
        if got == -3:
            hole = await stream.recv_hole()
            holes.append(hole)
            out += bytes(hole)
            continue
        if not got:
            break
        out += got
    await stream.finish()
    return bytes(out), holes


def test_sparse_download_sends_holes_and_the_content_comes_back(tmp_path):
    path = tmp_path / "vol.raw"
    content = sparse_file(path, LAYOUT, 20 * MiB)

    async def main() -> None:
        handler, server, client = await connected(str(path))
        try:
            got, holes = await download_all(client, 0, 0, 1)
            assert got == content
            # the file's holes travelled as holes: most of its 20 MiB never crossed as data
            assert sum(holes) >= 19 * MiB and len(holes) == 3
            assert await handler.ended is None
            assert client.streams == {} and handler.streams == {}
            assert await client.call(Program.REMOTE, AUTH_LIST) == [0]    # the connection carries on
        finally:
            client.close()
            await server.close()
    run(main())


def test_plain_download_sends_zeros_and_honours_offset_and_length(tmp_path):
    path = tmp_path / "vol.raw"
    content = sparse_file(path, LAYOUT, 20 * MiB)

    async def main() -> None:
        handler, server, client = await connected(str(path))
        try:
            got, holes = await download_all(client, 10 * MiB - 5, 3 * MiB, 0)
            assert holes == [] and got == content[10 * MiB - 5:13 * MiB - 5]
            assert await handler.ended is None
        finally:
            client.close()
            await server.close()
    run(main())


def test_sparse_download_with_a_length_stops_inside_a_hole(tmp_path):
    path = tmp_path / "vol.raw"
    content = sparse_file(path, LAYOUT, 20 * MiB)

    async def main() -> None:
        handler, server, client = await connected(str(path))
        try:
            got, holes = await download_all(client, 32 << 10, 5 * MiB, 1)
            assert got == content[32 << 10:(32 << 10) + 5 * MiB]
            assert holes and sum(holes) + (32 << 10) == 5 * MiB
        finally:
            client.close()
            await server.close()
    run(main())


def test_a_call_during_an_unread_download_is_answered(tmp_path):
    """The client stops reading while a download's unread data is over its mark, but
    never while a reply is awaited: a call made before reading the data returns."""
    path = tmp_path / "vol.raw"
    content = os.urandom(24 * MiB)
    path.write_bytes(content)

    async def main() -> None:
        handler, server, client = await connected(str(path))
        try:
            paused = asyncio.Event()
            transport = client.transport
            real_pause = transport.pause_reading

            def pause() -> None:
                real_pause()
                paused.set()
            transport.pause_reading = pause
            _ret, stream = await client.call_stream(Program.REMOTE, DOWNLOAD, (VOL, 0, 0, 0))
            await paused.wait()                     # the data piled up unread: reading stopped ...
            assert stream.queued > stream.QUEUED_HIGH and not stream.eof
            assert await client.call(Program.REMOTE, AUTH_LIST) == [0]     # ... and a call still gets through
            out = bytearray()
            while chunk := await stream.recv(1 << 20):
                out += chunk
            await stream.finish()
            assert bytes(out) == content
        finally:
            client.close()
            await server.close()
    run(main())


def test_sparse_upload_turns_holes_into_holes(tmp_path):
    path = tmp_path / "vol.raw"
    path.write_bytes(b"old" * 100_000)        # existing data under a hole must read as zeros afterwards
    head, mid = os.urandom(100_000), os.urandom(5000)

    async def main() -> None:
        handler, server, client = await connected(str(path))
        try:
            _ret, stream = await client.call_upload(Program.REMOTE, UPLOAD, (VOL, 0, 0, 1), sparse=True)
            await stream.send(head)
            await stream.send_hole(8 * MiB)
            await stream.send(mid)
            await stream.send_hole(32 * MiB)        # a trailing hole: the file grows to include it
            await stream.finish()
            assert await handler.ended is None
        finally:
            client.close()
            await server.close()
    run(main())
    size = len(head) + 8 * MiB + len(mid) + 32 * MiB
    assert path.stat().st_size == size
    with open(path, "rb") as f:
        assert f.read(len(head)) == head
        assert f.read(8 * MiB) == bytes(8 * MiB)
        assert f.read(len(mid)) == mid
    assert path.stat().st_blocks * 512 < 1 * MiB    # 40 MiB long, the holes never written


def test_upload_past_the_length_fails_with_enospc(tmp_path):
    path = tmp_path / "vol.raw"
    path.write_bytes(bytes(4096))

    async def main() -> None:
        handler, server, client = await connected(str(path))
        try:
            _ret, stream = await client.call_upload(Program.REMOTE, UPLOAD, (VOL, 1000, 2000, 0))
            await stream.send(b"a" * 1500)
            await stream.send(b"b" * 1500)          # 500 fit, then the length is reached
            err = await handler.ended
            assert isinstance(err, libvirtError) and err.get_error_code() == ErrorNumber.SYSTEM_ERROR
            assert "No space left on device" in str(err)
            with pytest.raises(libvirtError, match="No space left on device"):
                await stream.finish()
        finally:
            client.close()
            await server.close()
    run(main())
    data = path.read_bytes()
    assert data[1000:3000] == b"a" * 1500 + b"b" * 500 and data[3000:] == bytes(1096)


def test_a_hole_on_a_plain_volume_upload_fails_it(tmp_path):
    path = tmp_path / "vol.raw"
    path.write_bytes(bytes(4096))

    async def main() -> None:
        handler, server, client = await connected(str(path))
        try:
            _ret, stream = await client.call_upload(Program.REMOTE, UPLOAD, (VOL, 0, 0, 0))
            with pytest.raises(Exception, match="sparse"):
                await stream.send_hole(100)             # refused on our side already
            h = (Program.REMOTE, 1, UPLOAD.number, MessageType.STREAM_HOLE, stream.state.serial, wire.Status.CONTINUE)
            client._send(wire.encode_message(h, bytes(12)))
            err = await handler.ended
            assert isinstance(err, libvirtError) and err.get_error_code() == ErrorNumber.INVALID_STREAM
        finally:
            client.close()
            await server.close()
    run(main())


def test_sections_of_a_sparse_file(tmp_path):
    path = tmp_path / "f"
    sparse_file(path, [(1 * MiB, b"d" * 4096)], 3 * MiB)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert sparsefile.section(fd, 0, 3 * MiB) == (False, 1 * MiB)
        assert sparsefile.section(fd, 1 * MiB, 3 * MiB) == (True, 4096)
        assert sparsefile.section(fd, 1 * MiB + 4096, 3 * MiB) == (False, 2 * MiB - 4096)
        assert sparsefile.section(fd, 0, 512 << 10) == (False, 512 << 10)      # cut at the end
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0                              # offset untouched
    finally:
        os.close(fd)


@pytest.fixture
def loop_device(tmp_path):
    """A 16 MiB loop device over a file of the test's (a logical volume's stand-in), detached afterwards."""
    import shutil
    import subprocess
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("needs root and losetup")
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(16 * MiB)
    out = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"no loop device: {out.stderr.strip()}")
    device = out.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def test_a_block_device_volume_streams_both_ways(loop_device):
    """A logical volume is a block device: read on loop turns (epoll takes no block devices),
    its holes come out as data (it cannot tell them), a received hole becomes zeros."""
    head, tail = os.urandom(1 * MiB), os.urandom(4096)

    async def main() -> None:
        handler, server, client = await connected(loop_device)
        try:
            _ret, stream = await client.call_upload(Program.REMOTE, UPLOAD, (VOL, 0, 0, 1), sparse=True)
            await stream.send(head)
            await stream.send_hole(8 * MiB)
            await stream.send(tail)
            await stream.finish()
            assert await handler.ended is None
            handler.ended = asyncio.get_running_loop().create_future()
            got, holes = await download_all(client, 0, 0, 1)
            assert holes == [] and len(got) == 16 * MiB
            assert got[:MiB] == head and got[MiB:9 * MiB] == bytes(8 * MiB) and got[9 * MiB:9 * MiB + 4096] == tail
            assert await handler.ended is None
        finally:
            client.close()
            await server.close()
    run(main())
