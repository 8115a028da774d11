"""pyvirtd against hostile or careless clients: read-only rules for every
mutating procedure, malformed frames, oversized lengths, random bytes,
clients that vanish mid-call.  After each attack a well-behaved client
must still be served."""

from __future__ import annotations

import asyncio
import enum
import os
import re
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pyvirt.driver import DomainRef
from pyvirt.enums import EventID, EventType
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError
from pyvirt.rpc import xdr
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import PROGRAMS, REMOTE, Kind
from pyvirt.rpc.protocol.remote_cpu_files import NULL_WHEN_EMPTY
from pyvirt.rpc.wire import Framer, MessageType, Program, decode_error_payload

from daemons import Bystander
from guests import REPO
from test_rpc_protocol import strategy_for

OPEN = REMOTE.by_name["CONNECT_OPEN"]
GET_STATE = REMOTE.by_name["DOMAIN_GET_STATE"]
LOOKUP = REMOTE.by_name["DOMAIN_LOOKUP_BY_NAME"]


def minimal_value(t: xdr.Type):
    """The simplest value of an XDR type (what hypothesis would shrink to), built directly."""
    if t is xdr.NonnullDomain:
        return DomainRef("", bytes(16), 0)
    if isinstance(t, xdr.Struct):
        values = tuple(minimal_value(ft) for _, ft in t.fields)
        return values if t.cls is None else t.cls(*values)   # handles: pools, volumes, networks, snapshots
    if isinstance(t, xdr.Scalar):
        return False if t is xdr.Bool else (t.lo if t.lo is not None and t.lo > 0 else 0)
    if isinstance(t, xdr.CharString) or isinstance(t, xdr.String):
        return ""
    if isinstance(t, (xdr.Opaque, xdr.CharArray)):
        return b"" if not getattr(t, "fixed", False) else bytes(t.max)
    if isinstance(t, xdr.FixedOpaque):
        return bytes(t.size)
    if isinstance(t, (xdr.Array, xdr.Optional)):
        return [] if isinstance(t, xdr.Array) else None
    raise AssertionError(f"no minimal value for {t!r}")


def minimal_args(proc):
    return () if proc.args is None else minimal_value(proc.args)


async def open_client(path: str | None = None, port: int | None = None, uri: str = "test:///default"):
    client = await (RPCClient.connect_unix(path) if path else RPCClient.connect_tcp("127.0.0.1", port))
    await client.call(Program.REMOTE, OPEN, (uri, 0))
    return client


def still_serves(daemon) -> None:
    async def check():
        client = await open_client(port=daemon.tcp_port)
        dom = await client.call(Program.REMOTE, LOOKUP, ("test",))
        assert await client.call(Program.REMOTE, GET_STATE, (dom, 0)) == (1, 0)   # running (unknown), as libvirt's test host
        client.close()
    asyncio.run(check())


def test_read_only_socket_refuses_every_mutating_procedure(pyvirtd):
    mutating = [p for p in REMOTE if p.kind is Kind.DRIVER and p.mutates]
    assert len(mutating) > 40

    async def walk():
        client = await open_client(str(pyvirtd.sock_dir / "libvirt-sock-ro"))
        refused = []
        for proc in mutating:
            args = minimal_args(proc)
            if proc.method in NULL_WHEN_EMPTY:   # an empty list is refused as NULL first, as libvirtd does
                index = NULL_WHEN_EMPTY[proc.method][0]
                args = (*args[:index], ["<cpu/>"], *args[index + 1:])
            with pytest.raises(libvirtError) as info:
                await client.call(Program.REMOTE, proc, args)
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


# --- frames, and what libvirtd 9.0 answers to each --------------------------------------
#
# libvirtd (virnetserverclient.c, virnetmessage.c, virnetserver.c, virnetserverprogram.c)
# drops a client only for framing errors: a length word below the header or above
# 32 MiB + 4, a header it cannot read, a CALL_WITH_FDS without a valid fd count or with
# fds over TCP, a connection closed inside a packet.  Everything else that frames is
# answered or ignored: a CALL (to any program, with any status) gets exactly one REPLY
# (an error for an unknown program, a status other than OK, an unknown procedure or
# undecodable arguments); any other message type is dropped without a word, except a
# keepalive PING, answered with PONG.  test_libvirtd_answers_as_modelled checks this
# model against a real libvirtd.

KEEPALIVE_PROG, PING, PONG = 0x6B656570, 1, 2
PROGRAMS_LIBVIRTD = {Program.REMOTE, Program.QEMU, Program.LXC}   # its programs on the main socket
PROBE_SERIAL = 0x7FFF0000
ANSWER_TIMEOUT = 30.0


class Answer(enum.Enum):
    CLOSE = "connection dropped without a reply"
    REPLY = "exactly one REPLY"
    PONG = "a keepalive PONG"
    SILENT = "nothing, connection kept"


@dataclass(frozen=True)
class Frame:
    prog: int = Program.REMOTE
    vers: int = 1
    proc: int = 66                   # AUTH_LIST: answered before CONNECT_OPEN
    mtype: int = 0
    serial: int = 1
    status: int = 0
    payload: bytes = b""
    length: int | None = None        # the length word when it lies; None: the true length
    truncated: bool = False          # the sender stops inside the packet and closes

    def encode(self) -> bytes:
        true_length = 28 + len(self.payload)
        head = struct.pack(">IIIiiIi", self.length if self.length is not None else true_length,
                           self.prog, self.vers, self.proc, self.mtype, self.serial, self.status)
        return head + self.payload


def libvirtd_answer(f: Frame) -> Answer:
    length = f.length if f.length is not None else 28 + len(f.payload)
    if f.truncated or length < 28 or length > 33554432 + 4:
        return Answer.CLOSE
    if f.mtype == MessageType.CALL_WITH_FDS:
        if len(f.payload) < 4 or struct.unpack_from(">I", f.payload)[0] != 0:
            return Answer.CLOSE      # no fd count, or fds announced on a TCP connection
    if f.prog == KEEPALIVE_PROG and f.vers == 1 and f.mtype == MessageType.MESSAGE and f.proc in (PING, PONG):
        return Answer.PONG if f.proc == PING else Answer.SILENT
    if f.mtype in (MessageType.CALL, MessageType.CALL_WITH_FDS):
        return Answer.REPLY
    return Answer.SILENT


def libvirtd_error(f: Frame) -> tuple[int, int] | None:
    """(code, domain) of the error REPLY libvirtd sends before looking at the
    arguments, where the header alone decides it: VIR_ERR_RPC from VIR_FROM_RPC
    for an unknown program or version, a status other than OK, an unknown procedure."""
    if libvirtd_answer(f) is not Answer.REPLY:
        return None
    if f.prog not in PROGRAMS_LIBVIRTD or f.vers != 1 or f.status != 0:
        return (ErrorNumber.RPC, ErrorDomain.RPC)
    if f.prog == Program.REMOTE and not 1 <= f.proc <= 450:   # beyond every libvirt 9.0 procedure
        return (ErrorNumber.RPC, ErrorDomain.RPC)
    return None


@dataclass
class Observed:
    closed: bool = False
    replies: list = field(default_factory=list)     # (header, payload) answering the frame
    pongs: int = 0

    def answer(self) -> Answer:
        if self.pongs:
            return Answer.PONG
        if self.replies:
            return Answer.REPLY
        return Answer.CLOSE if self.closed else Answer.SILENT


def observe(port: int, f: Frame) -> Observed:
    """Send one frame on a fresh connection and see what comes back.

    Unless the frame was cut short, three AUTH_LIST probes follow it, each sent when
    the previous one is answered: a daemon that ignored the frame answers them and
    nothing else, one that dropped us answers nothing.  Replies may come out of order
    (libvirtd runs calls on worker threads), hence more than one probe.
    """
    seen = Observed()
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as s:
        try:
            s.sendall(f.encode())
            if f.truncated:
                s.shutdown(socket.SHUT_WR)
            else:
                s.sendall(header(28, proc=66, serial=PROBE_SERIAL))
        except (BrokenPipeError, ConnectionResetError):
            seen.closed = True
            return seen
        framer, probes = Framer(), 0
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except socket.timeout:
                pytest.fail(f"no answer within {ANSWER_TIMEOUT:.0f} s to {f} (the daemon hung)")
            if not chunk:
                seen.closed = True
                return seen
            framer.receive_data(chunk)
            for msg in framer:
                h = msg.header
                if h.prog == KEEPALIVE_PROG and h.type == MessageType.MESSAGE:
                    seen.pongs += h.proc == PONG            # (a PING is the daemon's own keepalive)
                elif h.serial >= PROBE_SERIAL and h.type == MessageType.REPLY:
                    probes += 1
                    if probes == 3:
                        return seen
                    try:
                        s.sendall(header(28, proc=66, serial=PROBE_SERIAL + probes))
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                else:
                    seen.replies.append((h, msg.payload))


PYTHON_EXCEPTION = re.compile(r"\b(Traceback|[A-Z]\w*(Error|Exception)\b:|unpack_from requires)")


def check_reply(f: Frame, h, payload: bytes) -> libvirtError | None:
    """The REPLY answers this very call; an error is a real libvirt error."""
    assert (h.prog, h.vers, h.proc, h.serial, h.type) == (f.prog, f.vers, f.proc, f.serial, MessageType.REPLY), (f, h)
    assert h.status in (0, 1), h
    if h.status == 0:
        return None
    err = decode_error_payload(payload)
    assert err.get_error_code() > 0 and 0 <= err.get_error_domain() <= 100, err
    assert err.get_error_message(), err
    return err


FRAME_CASES = [
    ("length word below the header", Frame(length=8, payload=b"\0" * 8)),
    ("length word 27", Frame(length=27)),
    ("length word above 32 MiB + 4", Frame(length=33554432 + 5)),
    ("closed inside the packet", Frame(length=200, payload=b"\0" * 10, truncated=True)),
    ("call", Frame()),
    ("call, unknown procedure", Frame(proc=9999)),
    ("call, negative procedure", Frame(proc=-1)),
    ("call before open", Frame(proc=23, payload=struct.pack(">I", 1) + b"a\0\0\0")),
    ("call, undecodable arguments", Frame(proc=1, payload=b"\xff" * 8)),
    ("call, trailing bytes after the arguments", Frame(payload=b"\0" * 12)),
    ("call, program version 2", Frame(vers=2)),
    ("call, unknown program", Frame(prog=0x12345678, proc=1)),
    ("call, QEMU program before open", Frame(prog=Program.QEMU, proc=1)),
    ("stream packet for no stream", Frame(mtype=MessageType.STREAM, status=2)),
    ("stream hole for no stream", Frame(mtype=MessageType.STREAM_HOLE)),
    ("keepalive PING", Frame(prog=KEEPALIVE_PROG, proc=PING, mtype=MessageType.MESSAGE, serial=0)),
    ("keepalive PONG", Frame(prog=KEEPALIVE_PROG, proc=PONG, mtype=MessageType.MESSAGE, serial=0)),
    ("CALL_WITH_FDS without an fd count", Frame(mtype=MessageType.CALL_WITH_FDS)),
    ("CALL_WITH_FDS announcing an fd over TCP", Frame(mtype=MessageType.CALL_WITH_FDS, payload=b"\0\0\0\1")),
    # where pyvirtd used to differ: a status other than OK, messages nobody answers,
    # keepalive messages that are not PING/PONG, CALL_WITH_FDS without fds
    ("call with status ERROR", Frame(status=1)),
    ("call with status CONTINUE", Frame(status=2)),
    ("REPLY from a client", Frame(mtype=MessageType.REPLY)),
    ("MESSAGE from a client", Frame(mtype=MessageType.MESSAGE)),
    ("REPLY_WITH_FDS from a client", Frame(mtype=MessageType.REPLY_WITH_FDS)),
    ("message type 7", Frame(mtype=7)),
    ("message type -1", Frame(mtype=-1)),
    ("MESSAGE to an unknown program", Frame(prog=0x12345678, mtype=MessageType.MESSAGE)),
    ("CALL_WITH_FDS with no fds", Frame(mtype=MessageType.CALL_WITH_FDS, payload=b"\0\0\0\0")),
    ("keepalive procedure 3", Frame(prog=KEEPALIVE_PROG, proc=3, mtype=MessageType.MESSAGE)),
    ("keepalive CALL", Frame(prog=KEEPALIVE_PROG, proc=PING)),
    ("keepalive version 2", Frame(prog=KEEPALIVE_PROG, vers=2, proc=PING, mtype=MessageType.MESSAGE)),
]


@pytest.fixture(scope="module")
def libvirtd_host(tmp_path_factory):
    sys.path.insert(0, str(REPO / "bench"))
    import libvirt_ref
    available, why = libvirt_ref.libvirt_available()
    if not available:
        pytest.skip(f"libvirtd not available: {why}")
    base = tmp_path_factory.mktemp("libvirtd-frames")
    host = libvirt_ref.LibvirtHost(base / "host", libvirt_ref.pick_free_ports(1)[0], cache_dir=base / "cache")
    host.start()
    try:
        yield host
    finally:
        leaked = host.stop()
    assert not leaked


@pytest.mark.libvirtd
@pytest.mark.parametrize("name,frame", FRAME_CASES, ids=[n for n, _ in FRAME_CASES])
def test_libvirtd_answers_as_modelled(libvirtd_host, name, frame):
    """The model the fuzzer holds pyvirtd to is libvirtd 9.0's actual behaviour."""
    seen = observe(libvirtd_host.tcp_port, frame)
    assert seen.answer() is libvirtd_answer(frame), seen
    assert_answer_matches(frame, seen)


def assert_answer_matches(frame: Frame, seen: Observed) -> None:
    assert len(seen.replies) <= 1, seen
    for h, payload in seen.replies:
        err = check_reply(frame, h, payload)
        expected = libvirtd_error(frame)
        if expected is not None:
            assert err is not None and (err.get_error_code(), err.get_error_domain()) == expected, err


@pytest.mark.parametrize("name,frame", FRAME_CASES, ids=[n for n, _ in FRAME_CASES])
def test_pyvirtd_answers_frames_as_libvirtd(pyvirtd_module, name, frame):
    seen = observe(pyvirtd_module.tcp_port, frame)
    assert seen.answer() is libvirtd_answer(frame), seen
    assert_answer_matches(frame, seen)


@pytest.mark.parametrize("frame,words", [
    (Frame(status=1), "Unexpected message status 1"),
    (Frame(status=-1), "Unexpected message status 4294967295"),          # libvirt prints it unsigned
    (Frame(prog=0x12345678, status=1), "Cannot find program 305419896 version 1"),   # the program first
    (Frame(prog=KEEPALIVE_PROG, proc=PING), "Cannot find program 1801807216 version 1"),
    (Frame(proc=1, payload=b"\xff" * 8), "Unable to decode message payload"),            # CONNECT_OPEN
    (Frame(proc=REMOTE.by_name["DOMAIN_GET_STATE"].number), "Unable to decode message payload"),
], ids=["status ERROR", "status -1", "unknown program, status ERROR", "keepalive CALL", "bad optional flag",
        "no arguments at all"])
def test_refused_calls_get_libvirtds_words(pyvirtd_module, frame, words):
    """libvirtd's messages (virnetserverprogram.c, virnetmessage.c), never a Python exception's text."""
    seen = observe(pyvirtd_module.tcp_port, frame)
    assert seen.answer() is Answer.REPLY and not seen.closed, seen
    err = check_reply(frame, *seen.replies[0])
    assert err is not None
    assert (err.get_error_code(), err.get_error_domain(), err.get_error_message()) == \
        (ErrorNumber.RPC, ErrorDomain.RPC, words)


# --- the frame fuzzer -----------------------------------------------------------------

FUZZ_FRAMES = int(os.environ.get("PYVIRT_FUZZ_FRAMES", "400"))
FINDINGS: dict[str, str] = {}          # error text -> the frame that got it


@pytest.fixture(scope="module")
def bystander(pyvirtd_module, guests_built):
    """A running guest on the fuzzed daemon: no frame may touch it."""
    guest = Bystander.start(pyvirtd_module)
    yield guest
    pyvirtd_module.destroy_all()


def _payloads(proc_number: int, prog: int) -> st.SearchStrategy[bytes]:
    table = PROGRAMS.get(prog)
    proc = table.get(proc_number) if table is not None else None
    raw = st.binary(max_size=200) | st.binary(min_size=60000, max_size=70000)
    if proc is None or proc.args is None:
        return raw
    valid = strategy_for(proc.args).map(proc.args.encode)
    mutated = st.tuples(valid, st.integers(0, 400), st.binary(min_size=1, max_size=8)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):])
    return raw | valid | valid.map(lambda b: b[: len(b) // 2]) | mutated


@st.composite
def frames(draw) -> Frame:
    prog = draw(st.sampled_from([Program.REMOTE, Program.REMOTE, Program.QEMU, KEEPALIVE_PROG])
                | st.integers(0, 2**32 - 1))
    table = PROGRAMS.get(prog)
    numbers = [p.number for p in table] if table is not None else [1, 2]
    proc = draw(st.sampled_from(numbers) | st.integers(-2**31, 2**31 - 1))
    mtype = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]) | st.integers(-2**31, 2**31 - 1))
    status = draw(st.sampled_from([0, 0, 0, 1, 2]) | st.integers(-2**31, 2**31 - 1))
    payload = draw(_payloads(proc, prog))
    framing = draw(st.sampled_from(["exact"] * 6 + ["short", "huge", "truncated"]))
    length, truncated = None, False
    if framing == "short":
        length = draw(st.integers(0, 27))
    elif framing == "huge":
        length = draw(st.integers(33554432 + 5, 2**32 - 1))
    elif framing == "truncated":
        length, truncated = 28 + len(payload) + draw(st.integers(1, 1 << 20)), True
    return Frame(prog=prog, vers=draw(st.sampled_from([1, 1, 1, 0, 2])), proc=proc, mtype=mtype,
                 serial=draw(st.integers(0, PROBE_SERIAL - 1)), status=status, payload=payload,
                 length=length, truncated=truncated)


@settings(max_examples=FUZZ_FRAMES, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=frames())
def test_fuzzed_frames(pyvirtd_module, bystander, frame):
    """Each fuzzed frame gets libvirtd's answer (a REPLY to a call, a dropped connection
    for a framing error, silence otherwise), and the daemon and its guest carry on."""
    seen = observe(pyvirtd_module.tcp_port, frame)
    expected = libvirtd_answer(frame)
    assert seen.answer() is expected, (seen, expected)
    assert len(seen.replies) <= 1, seen
    for h, payload in seen.replies:
        err = check_reply(frame, h, payload)
        expected_error = libvirtd_error(frame)
        if expected_error is not None:
            assert err is not None and (err.get_error_code(), err.get_error_domain()) == expected_error, err
        if err is not None and err.get_error_code() == ErrorNumber.INTERNAL_ERROR \
                and PYTHON_EXCEPTION.search(err.get_error_message()):
            FINDINGS.setdefault(err.get_error_message(), repr(frame)[:300])
    bystander.assert_unchanged()


def test_daemon_survived_the_fuzzer(pyvirtd_module, bystander):
    """After the fuzzer: alive, the guest untouched, stock python3-libvirt served on a
    fresh connection, and no frame answered with a Python exception's text."""
    bystander.assert_unchanged()
    still_serves(pyvirtd_module)
    if subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    code = (f"import libvirt; c = libvirt.open({pyvirtd_module.uri!r}); "
            f"print(c.getVersion() > 0, c.lookupByUUIDString({bystander.uuid!r}).state())")
    out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "True [1, 1]"
    assert not FINDINGS, "replies carrying a Python exception's text:\n" + "\n".join(
        f"{msg}\n    to {frame}" for msg, frame in FINDINGS.items())


def test_client_vanishing_mid_call(pyvirtd, guests_built):
    """A client that starts a guest and drops the connection before the reply:
    the start completes without its caller (a watcher sees the guest's STARTED event)."""
    from guests import tiny_xml
    xml = tiny_xml("vanish", pyvirtd.workdir / "vanish.log")
    payload = REMOTE.by_name["DOMAIN_CREATE_XML"].encode_args((xml, 0))
    lifecycle = REMOTE.by_name["DOMAIN_EVENT_CALLBACK_LIFECYCLE"]

    async def check():
        events: asyncio.Queue = asyncio.Queue()
        watcher = await RPCClient.connect_tcp("127.0.0.1", pyvirtd.tcp_port, on_message=events.put_nowait)
        await watcher.call(Program.REMOTE, OPEN, ("qemu:///system", 0))
        await watcher.call(Program.REMOTE, REMOTE.by_name["CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY"],
                           (EventID.LIFECYCLE, None))
        with socket.create_connection(("127.0.0.1", pyvirtd.tcp_port)) as s:
            open_payload = OPEN.encode_args(("qemu:///system", 0))
            s.sendall(header(28 + len(open_payload), proc=1, serial=0) + open_payload)
            s.recv(100)
            s.sendall(header(28 + len(payload), proc=10, serial=1) + payload)
        assert pyvirtd.alive

        async def started():
            while True:
                msg = await events.get()
                if msg.header.proc == lifecycle.number:
                    _, (dom, event, _detail) = lifecycle.decode_args(msg.payload)
                    if dom.name == "vanish" and event == EventType.STARTED:
                        return dom
        try:
            dom = await asyncio.wait_for(started(), 30)
        except asyncio.TimeoutError:
            pytest.fail("no STARTED event for the guest whose creator vanished within 30 s")
        assert await watcher.call(Program.REMOTE, GET_STATE, (dom, 0)) == (1, 1)   # running (booted)
        await watcher.call(Program.REMOTE, REMOTE.by_name["DOMAIN_DESTROY"], (dom,))
        watcher.close()
    asyncio.run(check())


def test_max_clients_is_enforced(tmp_path):
    """At max_clients the daemon stops accepting, as libvirtd 9.0 does (checked against
    it): a further client waits in the listen queue, unanswered, and is served as soon
    as a slot frees.  tests/test_client_limits.py covers the queue's own limit."""
    from daemons import Pyvirtd
    daemon = Pyvirtd(tmp_path / "small", extra_config="max_clients = 2")
    try:
        daemon.start()

        async def check():
            a = await open_client(port=daemon.tcp_port)
            b = await open_client(port=daemon.tcp_port)
            waiting = asyncio.ensure_future(open_client(port=daemon.tcp_port))
            assert await b.call(Program.REMOTE, LOOKUP, ("test",))     # the others are served meanwhile
            assert not waiting.done()
            a.close()
            try:
                c = await asyncio.wait_for(waiting, 30)
            except asyncio.TimeoutError:
                pytest.fail("the queued client was not served within 30 s of a slot freeing")
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
