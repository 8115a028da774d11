"""Client limits, as libvirtd's where it has them: partial frames, slow and silent
clients, clients that do not read, max_clients / max_anonymous_clients and the
listen queue.  Real pyvirtd on loopback, raw sockets for the misbehaving
clients and python clients for the healthy ones.
"""

from __future__ import annotations

import asyncio
import errno
import selectors
import socket
import struct
import time
from pathlib import Path

import pytest

from daemons import Pyvirtd
from guests import wait_for, wait_for_text

import pyvirt
from pyvirt.rpc import wire
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import REMOTE
from pyvirt.rpc.server import RPCServer, ServerClient
from pyvirt.rpc.wire import Framer, MessageType, Program, Status

KEEPALIVE, PING, PONG = 0x6B656570, 1, 2
OPEN = REMOTE.by_name["CONNECT_OPEN"]
AUTH_LIST = REMOTE.by_name["AUTH_LIST"]
SUPPORTS_FEATURE = REMOTE.by_name["CONNECT_SUPPORTS_FEATURE"]
CALLBACK_REGISTER = REMOTE.by_name["CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY"]
DECLARED = 32 * 1024 * 1024                # a frame of the largest size libvirt allows
RSS_BOUND_MIB = 200
DROP_TIMEOUT = 60.0                        # s; bounds the waits for a drop, never asserted on


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def call_header(length: int, proc: int, serial: int, prog: int = Program.REMOTE) -> bytes:
    return struct.pack(">IIIiiIi", length, prog, 1, proc, MessageType.CALL, serial, Status.OK)


def call(proc, serial: int, args: tuple = ()) -> bytes:
    payload = proc.encode_args(args) if proc.args else b""
    return call_header(28 + len(payload), proc.number, serial) + payload


def healthy(daemon: Pyvirtd) -> None:
    """A well-behaved python3-libvirt-style client is served on a fresh connection."""
    conn = pyvirt.open(daemon.test_uri)
    try:
        assert conn.getVersion() > 0
        assert conn.lookupByName("test").info()[0] == pyvirt.VIR_DOMAIN_RUNNING
    finally:
        conn.close()


def wait_dropped(sock: socket.socket, what: str, on_message=None) -> None:
    """Read until the daemon closes the connection (bounded; data before that is fine)."""
    sock.settimeout(DROP_TIMEOUT)
    framer = Framer()
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return
        except socket.timeout:
            pytest.fail(f"{what} was not dropped within {DROP_TIMEOUT:.0f} s")
        if not data:
            return
        if on_message is not None:
            framer.receive_data(data)
            for msg in framer:
                on_message(sock, msg)


@pytest.fixture
def daemon(tmp_path, request):
    """A pyvirtd with the extra configuration the test is parametrized with."""
    d = Pyvirtd(tmp_path / "host", extra_config=getattr(request, "param", ""))
    try:
        d.start()
        yield d
    finally:
        leaked = d.cleanup()
    assert not leaked


# --- memory: 100 clients each in the middle of a 32 MiB frame ---------------------------

class Attacker:
    def __init__(self, port: int, serial: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.serial = serial
        self.sent = 0
        self.head = call_header(DECLARED, OPEN.number, serial)

    def push(self, chunk: memoryview, upto: int) -> None:
        """Send as much of the frame (up to byte ``upto``) as the socket takes now."""
        while self.sent < upto:
            if self.sent < len(self.head):
                data = memoryview(self.head)[self.sent:]
            else:
                data = chunk[:min(len(chunk), upto - self.sent)]
            try:
                self.sent += self.sock.send(data)
            except BlockingIOError:
                return


def push_all(attackers: list[Attacker], upto: int, daemon_pid: int, quiet: float) -> float:
    """Push every frame towards byte ``upto`` as fast as the daemon reads; stop when all
    are there or when no socket could take a byte for ``quiet`` seconds (the daemon
    holds the rest back).  Returns the daemon's peak RSS meanwhile (MiB)."""
    chunk = memoryview(bytes(1 << 20))
    peak = rss_mib(daemon_pid)
    with selectors.DefaultSelector() as sel:
        for a in attackers:
            if a.sent < upto:
                sel.register(a.sock, selectors.EVENT_WRITE, a)
        while sel.get_map():
            ready = sel.select(quiet)
            if not ready:
                break
            for key, _ in ready:
                a = key.data
                a.push(chunk, upto)
                if a.sent >= upto:
                    sel.unregister(a.sock)
            peak = max(peak, rss_mib(daemon_pid))
    return peak


@pytest.mark.parametrize("daemon", ["frame_timeout = 0"], indirect=True)   # memory alone bounds them
def test_hundred_partial_32mib_frames_keep_rss_bounded(daemon):
    attackers = [Attacker(daemon.tcp_port, n) for n in range(100)]
    try:
        # Each announces 32 MiB and sends all of it but the last byte, as fast as it can.
        peak = push_all(attackers, DECLARED - 1, daemon.pid, quiet=2.0)
        healthy(daemon)
        read_whole = [a for a in attackers if a.sent == DECLARED - 1]
        assert read_whole, "the daemon read no large frame at all"
        assert peak < RSS_BOUND_MIB, f"pyvirtd's RSS reached {peak:.0f} MiB"

        # Every frame completes in turn and gets its REPLY (zeros decode as CONNECT_OPEN
        # of the default URI); memory stays bounded all along.
        peak = max(peak, push_all(attackers, DECLARED, daemon.pid, quiet=DROP_TIMEOUT))
        assert all(a.sent == DECLARED for a in attackers), "the daemon stopped reading some frames"
        for a in attackers:
            a.sock.setblocking(True)
            a.sock.settimeout(DROP_TIMEOUT)
            framer = Framer()
            while (msg := framer.next_message()) is wire.NEED_DATA:
                framer.receive_data(a.sock.recv(4096))
            assert (msg.header.serial, msg.header.type) == (a.serial, MessageType.REPLY)
        peak = max(peak, rss_mib(daemon.pid))
        print(f"pyvirtd's peak RSS with 100 clients sending 32 MiB frames: {peak:.0f} MiB")
        assert peak < RSS_BOUND_MIB, f"pyvirtd's RSS reached {peak:.0f} MiB"
        healthy(daemon)
    finally:
        for a in attackers:
            a.sock.close()


# --- time: a frame that never completes ------------------------------------------------

@pytest.mark.parametrize("daemon", ["frame_timeout = 2"], indirect=True)
def test_slow_byte_client_is_dropped(daemon):
    with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
        s.sendall(call_header(DECLARED, OPEN.number, 1))
        s.settimeout(1.0)
        sent = 0
        deadline = time.monotonic() + DROP_TIMEOUT
        while True:                        # a byte a second until the daemon hangs up
            try:
                s.sendall(b"x")
                sent += 1
                if s.recv(1) == b"":
                    break
            except socket.timeout:
                if time.monotonic() > deadline:
                    pytest.fail(f"the slow client was not dropped within {DROP_TIMEOUT:.0f} s")
            except (ConnectionResetError, BrokenPipeError):
                break
        assert sent >= 1
    wait_for_text(daemon.log_path, "still incomplete after 2 s")
    healthy(daemon)


# --- keepalive ------------------------------------------------------------------------------

def keepalive_client(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=DROP_TIMEOUT)
    s.sendall(call(SUPPORTS_FEATURE, 1, (10,)))          # VIR_DRV_FEATURE_PROGRAM_KEEPALIVE
    framer = Framer()
    while (msg := framer.next_message()) is wire.NEED_DATA:
        framer.receive_data(s.recv(4096))
    assert SUPPORTS_FEATURE.decode_ret(msg.payload) == 1
    return s


def is_ping(msg) -> bool:
    return (msg.header.prog, msg.header.proc, msg.header.type) == (KEEPALIVE, PING, MessageType.MESSAGE)


@pytest.mark.parametrize("daemon", ["keepalive_interval = 1\nkeepalive_count = 2"], indirect=True)
def test_keepalive_drops_a_client_that_stops_answering(daemon):
    pings = []
    with keepalive_client(daemon.tcp_port) as silent:
        wait_dropped(silent, "a client not answering PINGs", lambda s, m: pings.append(m) if is_ping(m) else None)
    assert len(pings) == 2            # keepalive_count pings, unanswered, then the drop
    wait_for_text(daemon.log_path, "keepalive timeout")

    # One that answers stays, however many pings it gets.
    with keepalive_client(daemon.tcp_port) as alive:
        framer, answered = Framer(), 0
        while answered < 4:
            data = alive.recv(4096)
            assert data, "a client answering every PING was dropped"
            framer.receive_data(data)
            for msg in framer:
                if is_ping(msg):
                    alive.sendall(wire.encode_message((KEEPALIVE, 1, PONG, MessageType.MESSAGE, 0, Status.OK)))
                    answered += 1
        alive.sendall(call(AUTH_LIST, 7))
        while (msg := framer.next_message()) is wire.NEED_DATA or msg.header.serial != 7:
            if msg is wire.NEED_DATA:
                framer.receive_data(alive.recv(4096))
    healthy(daemon)


@pytest.mark.parametrize("daemon", ["keepalive_interval = 1\nkeepalive_count = 1\nframe_timeout = 0"], indirect=True)
def test_bytes_of_an_unfinished_frame_do_not_answer_keepalive(daemon):
    """As in libvirt, only complete messages show a client alive: one that trickles a
    frame and never answers PINGs is dropped by keepalive alone."""
    with keepalive_client(daemon.tcp_port) as s:
        s.sendall(call_header(DECLARED, OPEN.number, 2))
        s.settimeout(0.5)
        deadline = time.monotonic() + DROP_TIMEOUT
        while True:
            try:
                s.sendall(b"x")
                if s.recv(4096) == b"":
                    break
            except socket.timeout:
                if time.monotonic() > deadline:
                    pytest.fail("the trickling client was not dropped by keepalive")
            except (ConnectionResetError, BrokenPipeError):
                break
    wait_for_text(daemon.log_path, "keepalive timeout")
    healthy(daemon)


# --- output a client does not read ------------------------------------------------------------

@pytest.mark.parametrize("daemon", ["max_client_output_bytes = 65536"], indirect=True)
def test_client_that_never_reads_its_events_is_dropped(daemon):
    # On a UNIX socket the kernel holds at most the daemon's send buffer (~200 KiB)
    # for a reader; past that, what is not read waits in the daemon.
    reader_less = socket.socket(socket.AF_UNIX)
    reader_less.connect(str(daemon.sock_dir / "libvirt-sock"))
    try:
        reader_less.sendall(call(OPEN, 1, ("test:///default", 0)) +
                            call(CALLBACK_REGISTER, 2, (0, None)))     # lifecycle events, any domain
        conn = pyvirt.open(daemon.test_uri)
        try:
            dom = conn.lookupByName("test")
            for _ in range(200):          # each round: SUSPENDED + RESUMED for the reader-less client
                for _ in range(50):
                    dom.suspend()
                    dom.resume()
                if "left more than 65536 bytes unread" in daemon.log_path.read_text(errors="replace"):
                    break
            else:
                pytest.fail("20,000 events queued for a client that reads nothing, and it was not dropped")
            assert dom.info()[0] == pyvirt.VIR_DOMAIN_RUNNING       # the event source is served on
        finally:
            conn.close()
        wait_dropped(reader_less, "the client that reads nothing")
    finally:
        reader_less.close()
    healthy(daemon)


# --- how many clients -----------------------------------------------------------------------

@pytest.mark.parametrize("daemon", ["max_clients = 2\nmax_queued_clients = 1"], indirect=True)
def test_max_clients_queues_then_refuses_and_serves_the_queue_when_a_slot_frees(daemon):
    path = str(daemon.sock_dir / "libvirt-sock")

    def client() -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(DROP_TIMEOUT)
        s.connect(path)
        s.sendall(call(AUTH_LIST, 1))
        assert s.recv(4096), "an accepted client got no answer"
        return s

    a, b = client(), client()
    queued: list[socket.socket] = []
    refused = None
    for _ in range(5):      # Linux queues backlog + 1 connections on a UNIX socket, then refuses
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        try:
            s.connect(path)
        except (BlockingIOError, ConnectionRefusedError) as exc:   # EAGAIN: the queue is full
            refused = exc
            s.close()
            break
        s.sendall(call(AUTH_LIST, 9))
        queued.append(s)
    try:
        assert refused is not None and isinstance(refused, OSError) and refused.errno in (
            errno.EAGAIN, errno.ECONNREFUSED), "the listen queue never filled"
        assert 1 <= len(queued) <= 2
        b.sendall(call(AUTH_LIST, 2))                 # the accepted ones are served meanwhile
        assert b.recv(4096)
        for s in queued:
            with pytest.raises(BlockingIOError):      # ... the queued ones not
                s.recv(4096)
        a.close()
        first = queued[0]
        first.setblocking(True)
        first.settimeout(DROP_TIMEOUT)
        assert first.recv(4096), "the queued client was not served once a slot freed"
    finally:
        for s in [a, b] + queued:
            s.close()
    healthy(daemon)


@pytest.mark.parametrize("daemon", ["max_clients = 10\nmax_anonymous_clients = 1"], indirect=True)
def test_auth_none_clients_count_as_authenticated(daemon):
    """With auth "none" a client is authenticated the moment it connects (libvirt's
    virNetServerClientAuthMethodImpliesAuthenticated): max_anonymous_clients = 1 does
    not keep a third client out."""
    conns = [pyvirt.open(daemon.test_uri) for _ in range(3)]
    try:
        assert all(c.getVersion() > 0 for c in conns)
    finally:
        for c in conns:
            c.close()


def test_max_anonymous_clients_at_the_server(tmp_path):
    """The RPC server with a listener that requires authentication (what SASL/TLS will
    use): at max_anonymous_clients unauthenticated clients it stops accepting; a client
    authenticating frees a place, and the waiting connection is served."""

    class Handler:
        def client_connected(self, client: ServerClient) -> None:
            client.session = object()

        def handle_message(self, client: ServerClient, msg: wire.Message) -> None:
            if msg.header.proc == REMOTE.by_name["AUTH_SASL_INIT"].number:
                client.mark_authenticated()
            client.send(wire.encode_reply(msg.header, AUTH_LIST.encode_ret([0])))

        async def client_disconnected(self, client: ServerClient) -> None:
            pass

    async def ask(client: RPCClient, proc) -> None:
        await client.call(Program.REMOTE, proc, ())

    async def run() -> None:
        server = RPCServer(Handler(), max_clients=10, max_anonymous_clients=2)
        path = str(tmp_path / "sock")
        await server.listen_unix(path, auth_required=True)
        try:
            a = await RPCClient.connect_unix(path)
            b = await RPCClient.connect_unix(path)
            await ask(a, AUTH_LIST)
            await ask(b, AUTH_LIST)
            assert server.anonymous == 2
            c = await RPCClient.connect_unix(path)          # waits in the listen queue
            waiting = asyncio.ensure_future(ask(c, AUTH_LIST))
            await ask(b, AUTH_LIST)
            assert not waiting.done() and len(server.clients) == 2
            await ask(a, REMOTE.by_name["AUTH_SASL_INIT"])    # a authenticates: c gets in
            await asyncio.wait_for(waiting, 30)
            assert len(server.clients) == 3 and server.anonymous == 2
            for client in (a, b, c):
                client.close()
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_framer_holds_what_arrived_not_what_was_announced():
    """The sans-I/O Framer: a packet announcing 32 MiB costs what was received of it."""
    import tracemalloc
    tracemalloc.start()
    try:
        framers = []
        for n in range(20):
            f = Framer()
            f.receive_data(call_header(DECLARED, OPEN.number, n) + b"x" * 100)
            f.receive_data(b"y" * 100)
            assert f.next_message() is wire.NEED_DATA
            assert f.pending_length == DECLARED and f.buffered == 228
            framers.append(f)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 1 << 20, f"20 announced 32 MiB frames of 228 bytes hold {current} bytes"


def test_framer_lets_go_of_a_consumed_buffer():
    """A large packet received in pieces: once it is returned, the Framer keeps nothing
    of it, even if no byte follows (an idle client would otherwise pin 32 MiB)."""
    import tracemalloc
    packet = wire.encode_message((Program.REMOTE, 1, 1, MessageType.CALL, 5, Status.OK), bytes(8 << 20))
    f = Framer()
    tracemalloc.start()
    try:
        for i in range(0, len(packet), 1 << 18):
            f.receive_data(packet[i:i + (1 << 18)])
        msg = f.next_message()
        assert msg.header.serial == 5 and f.next_message() is wire.NEED_DATA
        del msg
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 1 << 20, f"the Framer still holds {current} bytes of a consumed 8 MiB packet"


def test_client_limit_settings_load_with_libvirts_defaults_and_checks():
    from pyvirt.daemon.config import DaemonConfig, load
    cfg = DaemonConfig()
    assert (cfg.max_clients, cfg.max_queued_clients, cfg.max_anonymous_clients, cfg.max_client_requests,
            cfg.keepalive_interval, cfg.keepalive_count) == (5000, 1000, 20, 5, 5, 5)     # libvirtd.conf 9.0
    cfg = load("max_queued_clients = 7\nmax_anonymous_clients = 3\nframe_timeout = 9\n")
    assert (cfg.max_queued_clients, cfg.max_anonymous_clients, cfg.frame_timeout, cfg.ignored) == (7, 3, 9, [])
    assert load("max_clients = 2\n").max_anonymous_clients == 2      # the default gives way
    with pytest.raises(pyvirt.libvirtError, match=r"<config>:2: The overall maximum number of clients must "
                                                  r"not be less than the number of clients waiting"):
        load("max_clients = 2\nmax_anonymous_clients = 3\n")
