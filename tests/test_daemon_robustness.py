"""pyvirtd against hostile or careless clients: read-only rules for every
mutating procedure, malformed frames, oversized lengths, random bytes,
clients that vanish mid-call.  After each attack a well-behaved client
must still be served."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from hypothesis import HealthCheck, find, given, settings, strategies as st

from pyvirt.errors import ErrorNumber, libvirtError
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import REMOTE, Kind
from pyvirt.rpc.wire import Program

from test_rpc_protocol import strategy_for

OPEN = REMOTE.by_name["CONNECT_OPEN"]
GET_STATE = REMOTE.by_name["DOMAIN_GET_STATE"]
LOOKUP = REMOTE.by_name["DOMAIN_LOOKUP_BY_NAME"]


def minimal_args(proc):
    if proc.args is None:
        return ()
    return find(strategy_for(proc.args), lambda _: True)


async def open_client(path: str | None = None, port: int | None = None, uri: str = "test:///default"):
    client = await (RPCClient.connect_unix(path) if path else RPCClient.connect_tcp("127.0.0.1", port))
    await client.call(Program.REMOTE, OPEN, (uri, 0))
    return client


def still_serves(daemon) -> None:
    async def check():
        client = await open_client(port=daemon.tcp_port)
        dom = await client.call(Program.REMOTE, LOOKUP, ("test",))
        assert await client.call(Program.REMOTE, GET_STATE, (dom, 0)) == (1, 1)
        client.close()
    asyncio.run(check())


def test_read_only_socket_refuses_every_mutating_procedure(pyvirtd):
    mutating = [p for p in REMOTE if p.kind is Kind.DRIVER and p.mutates]
    assert len(mutating) > 40

    async def walk():
        client = await open_client(str(pyvirtd.sock_dir / "libvirt-sock-ro"))
        refused = []
        for proc in mutating:
            with pytest.raises(libvirtError) as info:
                await client.call(Program.REMOTE, proc, minimal_args(proc))
            assert info.value.get_error_code() == ErrorNumber.OPERATION_DENIED, (proc, info.value)
            refused.append(proc.name)
        # and reads still work on the same connection
        dom = await client.call(Program.REMOTE, LOOKUP, ("test",))
        assert (await client.call(Program.REMOTE, GET_STATE, (dom, 0)))[0] == 1
        client.close()
        return refused
    refused = asyncio.run(walk())
    assert "DOMAIN_DESTROY" in refused and "DOMAIN_MIGRATE_PERFORM3_PARAMS" in refused


def test_read_only_flag_on_open_is_honoured(pyvirtd):
    async def check():
        client = await RPCClient.connect_tcp("127.0.0.1", pyvirtd.tcp_port)
        await client.call(Program.REMOTE, OPEN, ("test:///default", 1))
        dom = await client.call(Program.REMOTE, LOOKUP, ("test",))
        with pytest.raises(libvirtError) as info:
            await client.call(Program.REMOTE, REMOTE.by_name["DOMAIN_DESTROY"], (dom,))
        assert info.value.get_error_code() == ErrorNumber.OPERATION_DENIED
        assert "read only access prevents" in info.value.get_error_message()
        client.close()
    asyncio.run(check())


def test_unknown_procedure_gets_libvirts_error(pyvirtd):
    async def check():
        client = await open_client(port=pyvirtd.tcp_port)
        status, payload = await client.call_raw(Program.REMOTE, 9999, b"")
        from pyvirt.rpc.wire import decode_error_payload
        err = decode_error_payload(payload)
        assert (err.get_error_code(), err.get_error_domain()) == (39, 7)
        assert err.get_error_message() == "unknown procedure: 9999"
        status, payload = await client.call_raw(0x12345678, 1, b"")
        assert status == 1
        client.close()
    asyncio.run(check())


def test_call_before_open_is_refused(pyvirtd):
    async def check():
        client = await RPCClient.connect_tcp("127.0.0.1", pyvirtd.tcp_port)
        with pytest.raises(libvirtError, match="connection not open"):
            await client.call(Program.REMOTE, LOOKUP, ("test",))
        client.close()
    asyncio.run(check())


def raw_send(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        if not read:
            return b""
        try:
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError:
            return b""


def header(length: int, prog: int = Program.REMOTE, vers: int = 1, proc: int = 1, mtype: int = 0,
           serial: int = 0, status: int = 0) -> bytes:
    return struct.pack(">IIIiiIi", length, prog, vers, proc, mtype, serial, status)


@pytest.mark.parametrize("name,data", [
    ("length below the header", struct.pack(">I", 8) + b"\0" * 8),
    ("length above 32 MiB", struct.pack(">I", 33554432 + 100) + b"\0" * 24),
    ("truncated frame then close", header(200) + b"\0" * 10),
    ("wrong version", header(28, vers=7)),
    ("wrong type (REPLY from a client)", header(28, mtype=1)),
    ("stream for no stream", header(28, mtype=3, status=2)),
    ("garbage args", header(28 + 8, proc=23) + b"\xff" * 8),
    ("huge string length in args", header(28 + 8, proc=1) + struct.pack(">II", 1, 0x7FFFFFFF)),
    ("random bytes", bytes(range(256)) * 4),
])
def test_malformed_frames_do_not_hurt_the_daemon(pyvirtd, name, data):
    raw_send(pyvirtd.tcp_port, data)
    assert pyvirtd.alive
    still_serves(pyvirtd)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=0, max_size=200), st.integers(0, 400), st.integers(0, 7), st.integers(0, 500))
def test_fuzzed_frames(pyvirtd_module, payload, proc, mtype, length_delta):
    data = header(28 + len(payload) + (length_delta if length_delta > 450 else 0),
                  proc=proc, mtype=mtype) + payload
    raw_send(pyvirtd_module.tcp_port, data, read=False)


def test_daemon_survived_the_fuzzer(pyvirtd_module):
    assert pyvirtd_module.alive
    still_serves(pyvirtd_module)


def test_client_vanishing_mid_call(pyvirtd, guests_built):
    """A client that starts a guest and drops the connection before the reply."""
    from guests import tiny_xml
    xml = tiny_xml("vanish", pyvirtd.workdir / "vanish.log")
    payload = REMOTE.by_name["DOMAIN_CREATE_XML"].encode_args((xml, 0))
    with socket.create_connection(("127.0.0.1", pyvirtd.tcp_port)) as s:
        open_payload = OPEN.encode_args(("qemu:///system", 0))
        s.sendall(header(28 + len(open_payload), proc=1, serial=0) + open_payload)
        s.recv(100)
        s.sendall(header(28 + len(payload), proc=10, serial=1) + payload)
    assert pyvirtd.alive

    async def check():
        client = await open_client(port=pyvirtd.tcp_port, uri="qemu:///system")
        state = None
        for _ in range(200):   # the create finishes without its client
            try:
                dom = await client.call(Program.REMOTE, LOOKUP, ("vanish",))
                state = await client.call(Program.REMOTE, GET_STATE, (dom, 0))
                if state == (1, 1):
                    break
            except libvirtError:
                pass
            await asyncio.sleep(0.05)
        assert state == (1, 1)   # running (booted): the start completed without its caller
        await client.call(Program.REMOTE, REMOTE.by_name["DOMAIN_DESTROY"], (dom,))
        client.close()
    asyncio.run(check())


def test_max_clients_is_enforced(tmp_path):
    from daemons import Pyvirtd
    daemon = Pyvirtd(tmp_path / "small", extra_config="max_clients = 2")
    try:
        daemon.start()

        async def check():
            a = await open_client(port=daemon.tcp_port)
            b = await open_client(port=daemon.tcp_port)
            with pytest.raises(libvirtError):
                await open_client(port=daemon.tcp_port)
            a.close()
            await asyncio.sleep(0.1)
            c = await open_client(port=daemon.tcp_port)
            for client in (b, c):
                client.close()
        asyncio.run(check())
    finally:
        daemon.cleanup()


def test_keepalive_ping_pong_and_idle_pings(tmp_path):
    """PING is always answered; after a client asks for keepalive (feature 10) an
    idle client is pinged every keepalive_interval, as libvirtd does."""
    from daemons import Pyvirtd
    from pyvirt.rpc.wire import Framer, MessageType, Status, encode_message
    daemon = Pyvirtd(tmp_path / "ka", extra_config="keepalive_interval = 1\nkeepalive_count = 3")
    try:
        daemon.start()
        with socket.create_connection(("127.0.0.1", daemon.tcp_port), timeout=10) as s:
            ping = encode_message((0x6B656570, 1, 1, MessageType.MESSAGE, 0, Status.OK))
            s.sendall(ping)
            framer = Framer()
            framer.receive_data(s.recv(1024))
            pong = framer.next_message()
            assert (pong.header.prog, pong.header.proc) == (0x6B656570, 2)
            feature = REMOTE.by_name["CONNECT_SUPPORTS_FEATURE"]
            s.sendall(header(28 + 4, proc=60, serial=1) + feature.encode_args((10,)))
            framer.receive_data(s.recv(1024))
            assert feature.decode_ret(framer.next_message().payload) == 1
            s.settimeout(5)
            framer.receive_data(s.recv(1024))      # silence from us: the daemon pings
            msg = framer.next_message()
            assert (msg.header.prog, msg.header.proc) == (0x6B656570, 1)
    finally:
        daemon.cleanup()
