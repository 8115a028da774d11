"""Both I/O ends of an upload stream over a real loopback connection.

The client's :class:`OutgoingStream` sends a pipe's contents; the server's
:class:`IncomingStream` writes them into another pipe that a reader drains
and hashes — the path of tunnelled migration without QEMU or drivers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import pytest

from pyvirt.errors import ErrorNumber, libvirtError
from pyvirt.rpc import wire
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import REMOTE
from pyvirt.rpc.server import RPCServer, ServerClient
from pyvirt.rpc.stream.incoming import IncomingStream
from pyvirt.rpc.wire import MessageType, Program

PREPARE_TUNNEL3 = REMOTE[215]
AUTH_LIST = REMOTE.by_name["AUTH_LIST"]
ARGS = (b"cookie-in", 0, None, 0, "<domain/>")


class Reader(threading.Thread):
    """Drains a pipe like QEMU's migrate-incoming; ``stop_after`` closes it early."""

    def __init__(self, fd: int, stop_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.fd, self.stop_after = fd, stop_after
        self.digest, self.count = hashlib.sha256(), 0

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, 1 << 20):
                self.digest.update(chunk)
                self.count += len(chunk)
                if self.stop_after is not None and self.count >= self.stop_after:
                    return
        finally:
            os.close(self.fd)


class StreamServer:
    """A CallHandler whose only call opens a stream into a pipe, as the daemon wires it."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.streams: dict[tuple[int, int], IncomingStream] = {}
        self.ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.reader: Reader | None = None

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
        assert PREPARE_TUNNEL3.decode_args(msg.payload) == ARGS
        r, w = os.pipe2(os.O_CLOEXEC)
        self.reader = Reader(r, self.stop_after)
        self.reader.start()
        key = (h.proc, h.serial)
        stream = IncomingStream(client, w, self._done, h, PREPARE_TUNNEL3.stream,
                                on_closed=lambda: self.streams.pop(key, None))
        self.streams[key] = stream
        client.send(wire.encode_reply(h, PREPARE_TUNNEL3.encode_ret(b"cookie-out")))
        stream.start()

    def _done(self, err: BaseException | None) -> None:
        if not self.ended.done():
            self.ended.set_result(err)


def writer(fd: int, data: bytes) -> threading.Thread:
    def run() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:1 << 16]):]
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


async def connected(handler: StreamServer) -> tuple[RPCServer, RPCClient]:
    server = RPCServer(handler)
    port = await server.listen_tcp("127.0.0.1", 0)
    return server, await RPCClient.connect_tcp("127.0.0.1", port)


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


def test_every_byte_arrives_and_finish_is_acknowledged():
    data = os.urandom(5 << 20) + b"tail"

    async def main() -> None:
        handler = StreamServer()
        server, client = await connected(handler)
        try:
            cookie, stream = await client.call_upload(Program.REMOTE, PREPARE_TUNNEL3, ARGS)
            assert cookie == b"cookie-out"
            r, w = os.pipe2(os.O_CLOEXEC)
            writer(w, data)
            try:
                assert await stream.send_from_fd(r) == len(data)
            finally:
                os.close(r)
            await stream.finish()
            assert await handler.ended is None          # the driver's callback: success
            await asyncio.to_thread(handler.reader.join)
            assert handler.reader.count == len(data)
            assert handler.reader.digest.digest() == hashlib.sha256(data).digest()
            assert handler.streams == {} and client.streams == {}
            # the connection carries calls again after the stream
            assert await client.call(Program.REMOTE, AUTH_LIST) == [0]
        finally:
            client.close()
            await server.close()
    run(main())


def test_client_abort_reaches_the_driver_and_is_acknowledged():
    async def main() -> None:
        handler = StreamServer()
        server, client = await connected(handler)
        try:
            _, stream = await client.call_upload(Program.REMOTE, PREPARE_TUNNEL3, ARGS)
            r, w = os.pipe2(os.O_CLOEXEC)
            os.write(w, b"x" * 4096)
            os.close(w)
            try:
                await stream.send_from_fd(r)
            finally:
                os.close(r)
            await stream.abort()
            err = await handler.ended
            assert isinstance(err, libvirtError) and err.get_error_code() == ErrorNumber.OPERATION_ABORTED
            await asyncio.to_thread(handler.reader.join)   # the pipe was closed: the reader saw EOF
            assert handler.streams == {} and client.streams == {}
        finally:
            client.close()
            await server.close()
    run(main())


def test_target_gone_fails_the_stream_for_the_client():
    """The reader closes its end early (QEMU died): the server reports the stream
    failed, the client's pump stops and finish raises that error."""
    async def main() -> None:
        handler = StreamServer(stop_after=1 << 20)
        server, client = await connected(handler)
        try:
            _, stream = await client.call_upload(Program.REMOTE, PREPARE_TUNNEL3, ARGS)
            failures: list[BaseException] = []
            stream.on_failure = failures.append
            r, w = os.pipe2(os.O_CLOEXEC)
            writer(w, os.urandom(16 << 20))
            pump = asyncio.ensure_future(stream.send_from_fd(r))
            err = await handler.ended
            assert isinstance(err, libvirtError) and err.get_error_code() == ErrorNumber.SYSTEM_ERROR
            await asyncio.wait([pump])
            assert pump.exception() is not None     # stopped mid-way, never "done"
            os.close(r)
            with pytest.raises(libvirtError) as exc:
                await stream.finish()
            assert failures and exc.value is failures[0]
            assert "stream receive failed" in str(exc.value)
        finally:
            client.close()
            await server.close()
    run(main())


def test_a_hole_on_a_plain_stream_fails_it():
    async def main() -> None:
        handler = StreamServer()
        server, client = await connected(handler)
        try:
            _, stream = await client.call_upload(Program.REMOTE, PREPARE_TUNNEL3, ARGS)
            failures: list[BaseException] = []
            stream.on_failure = failures.append
            h = (Program.REMOTE, 1, PREPARE_TUNNEL3.number, MessageType.STREAM_HOLE, stream.state.serial,
                 wire.Status.CONTINUE)
            client._send(wire.encode_message(h, bytes(12)))
            err = await handler.ended
            assert isinstance(err, libvirtError) and err.get_error_code() == ErrorNumber.INVALID_STREAM
            with pytest.raises(libvirtError, match="sparse"):
                await stream.finish()
            assert failures
        finally:
            client.close()
            await server.close()
    run(main())
