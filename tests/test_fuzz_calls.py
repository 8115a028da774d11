"""Fuzzing past CONNECT_OPEN: calls typed from the procedure tables reach the drivers.

Each example opens a connection to the test driver or to the QEMU driver of a
pyvirtd that runs a guest, then sends a few calls chosen from the REMOTE and
QEMU tables with arguments generated per XDR type by fuzzgen, straight as wire
bytes (so they can be what pyvirt's own encoder would refuse); hypothesis drives
the generator through ``st.randoms()``, so a failing example shrinks.

Every call must get exactly one well-formed REPLY (an error is a libvirt error
with a code) — the connection may only end after CONNECT_CLOSE —, the daemon
must live on with a bounded RSS, and the running guest must be untouched:
same QEMU, running (booted), CPUs running by QMP ``query-status``.  Calls that
may legitimately stop, pause, save, migrate or undefine a guest are only ever
aimed at other domains.

``PYVIRT_FUZZ_CALLS=N`` runs N calls instead of the bounded default, from the same
generator driven by a seeded ``random.Random`` (no shrinking) over
``PYVIRT_FUZZ_CONNECTIONS`` (4) connections with ``PYVIRT_FUZZ_WINDOW`` (4) calls in
flight each, replies matched by serial; every reply is checked as above, the guest,
a fresh client and the clean-up run every ``PYVIRT_FUZZ_CHECK_EVERY`` (2000) calls
and at the end.  The seed is printed; ``PYVIRT_FUZZ_SEED`` replays a run.  The
run's figures (calls, replies, peak RSS) are printed at the end.  Replies of
INTERNAL_ERROR carrying a Python exception's text are collected and fail
``test_no_reply_leaks_a_python_exception``.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import uuid as uuidlib
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fuzzgen
from fuzzgen import TEST_DOMAIN, Context

from pyvirt.errors import ErrorNumber
from pyvirt.rpc import xdr
from pyvirt.rpc.protocol import REMOTE, Procedure
from pyvirt.rpc.wire import Framer, MessageType, Program, decode_error_payload

from daemons import Bystander, Pyvirtd

LONG_RUN = int(os.environ.get("PYVIRT_FUZZ_CALLS", "0"))
CALLS_PER_EXAMPLE = 6
EXAMPLES = max(LONG_RUN // 4, 1) if LONG_RUN else 600   # about 3.5 calls per example
ROUND = 1000
REPLY_TIMEOUT = 60.0
RSS_GROWTH_MAX_KIB = 160 * 1024
"""Largest growth of the daemon's RSS over the run: a few 4 MiB strings in flight
are fine, a leak per call is not."""
RSS_PER_CALL_IN_FLIGHT_KIB = 10 * 1024
"""What one more call in flight may add (long runs pipeline several): a call can carry
a few strings near the 2 MiB echoable size, held as frame, decoded text and error."""
IN_FLIGHT = (int(os.environ.get("PYVIRT_FUZZ_CONNECTIONS", "4")) * int(os.environ.get("PYVIRT_FUZZ_WINDOW", "4"))
             if LONG_RUN else 1)

PYTHON_EXCEPTION = re.compile(r"\b(Traceback|[A-Z]\w*(Error|Exception)\b:)")


@dataclass
class Stats:
    calls: int = 0
    ok: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    rss_kib: list[int] = field(default_factory=list)
    findings: dict[str, str] = field(default_factory=dict)   # message -> the call that got it
    internal: dict[str, int] = field(default_factory=dict)   # INTERNAL_ERROR messages seen
    reached: set[str] = field(default_factory=set)           # procedures that answered OK
    after_close: int = 0      # calls pipelined behind an answered CONNECT_CLOSE (no reply due)


STATS = Stats()


# --- the daemon under fire --------------------------------------------------------------

@pytest.fixture(scope="module")
def target(tmp_path_factory, guests_built):
    """A pyvirtd running a guest, a scratch directory for every path the fuzzer names,
    and a loopback port that nothing listens on."""
    base = tmp_path_factory.mktemp("fuzzcalls")
    daemon = Pyvirtd(base / "host")
    scratch = base / "scratch"
    (scratch / "dir").mkdir(parents=True)
    (scratch / "victim").write_text("victim\n")
    (scratch / "link").symlink_to(scratch / "victim")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    try:
        daemon.start()
        guest = Bystander.start(daemon, "fuzzee")
        yield daemon, guest, str(scratch), closed_port
    finally:
        leaked = daemon.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"
    assert (scratch / "victim").read_text() == "victim\n"


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_calls(port: int, uri: str, batch: list[tuple[int, Procedure, bytes]]) -> None:
    """Open, then each call in turn: one well-formed REPLY each, no disconnect but after CLOSE."""
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT) as s:
        framer = Framer()

        def reply_to(serial: int, what: str):
            while True:
                for msg in framer:
                    h = msg.header
                    if h.type == MessageType.REPLY and h.serial == serial:
                        return msg
                try:
                    chunk = s.recv(1 << 20)
                except socket.timeout:
                    pytest.fail(f"no reply within {REPLY_TIMEOUT:.0f} s to {what} (the daemon hung)")
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return None
                framer.receive_data(chunk)

        def send(prog: int, proc: int, serial: int, payload: bytes) -> None:
            s.sendall(struct.pack(">IIIiiIi", 28 + len(payload), prog, 1, proc, 0, serial, 0) + payload)

        open_proc = REMOTE.by_name["CONNECT_OPEN"]
        send(Program.REMOTE, open_proc.number, 0, open_proc.encode_args((uri, 0)))
        msg = reply_to(0, "CONNECT_OPEN")
        assert msg is not None and msg.header.status == 0, f"CONNECT_OPEN {uri} failed"
        closed = False
        for serial, (prog, proc, payload) in enumerate(batch, start=1):
            what = f"{proc.name}({payload[:200]!r}{'...' if len(payload) > 200 else ''})"
            try:
                send(prog, proc.number, serial, payload)
            except (BrokenPipeError, ConnectionResetError):
                msg = None
            else:
                msg = reply_to(serial, what)
            if msg is None:
                STATS.calls += 1
                assert closed, f"the daemon dropped the connection on a well-formed call: {what}"
                continue
            closed = check_reply(msg, prog, proc, what, uri) or closed


def remove_strangers(daemon: Pyvirtd, keep: str) -> None:
    """Destroy and undefine the guests fuzzed calls created on either driver (valid XML
    happens), so that what the daemon holds does not grow with the run."""
    import pyvirt
    for uri in (daemon.uri, daemon.test_uri):
        conn = pyvirt.open(uri)
        try:
            for dom in conn.listAllDomains(0):
                if dom.UUIDString() in (keep, str(uuidlib.UUID(bytes=TEST_DOMAIN[1]))):
                    continue
                for step in (dom.destroy, dom.undefine):
                    try:
                        step()
                    except pyvirt.libvirtError:
                        pass
        finally:
            conn.close()


def check_reply(msg, prog: int, proc: Procedure, what: str, uri: str) -> bool:
    """Counts one reply in STATS after checking it is well formed; True if it closed the connection."""
    STATS.calls += 1
    h = msg.header
    assert (h.prog, h.vers, h.proc) == (prog, 1, proc.number), (h, what)
    assert h.status in (0, 1), (h, what)
    if h.status == 0:
        STATS.ok += 1
        STATS.reached.add(f"{uri.split(':')[0]}:{proc.name}")
        proc.decode_ret(msg.payload)          # a valid reply, by the same table
        return proc.name == "CONNECT_CLOSE"
    err = decode_error_payload(msg.payload)
    code = err.get_error_code()
    assert code > 0 and err.get_error_message(), (err, what)
    STATS.errors[code] = STATS.errors.get(code, 0) + 1
    if code == ErrorNumber.INTERNAL_ERROR:
        key = f"{proc.name}: {err.get_error_message()[:120]}"
        STATS.internal[key] = STATS.internal.get(key, 0) + 1
        if PYTHON_EXCEPTION.search(err.get_error_message()):
            STATS.findings.setdefault(err.get_error_message()[:400], what[:400])
    return False


class Pipe:
    """One fuzzing connection with up to ``window`` calls in flight, replies matched by serial."""

    def __init__(self, port: int, uri: str) -> None:
        self.uri = uri
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
        self.framer = Framer()
        self.pending: dict[int, tuple[int, Procedure, str]] = {}
        self.out = bytearray()
        self.serial = 0
        self.closing = False      # a CONNECT_CLOSE is queued: nothing more is sent
        self.closed = False       # it was answered OK: the daemon may now drop the connection
        self.held: tuple[int, Procedure, bytes] | None = None    # a CONNECT_CLOSE waiting its turn
        self.finished = False     # the connection ended
        open_proc = REMOTE.by_name["CONNECT_OPEN"]
        self.sock.sendall(self.frame(Program.REMOTE, open_proc.number, 0, open_proc.encode_args((uri, 0))))
        while True:
            chunk = self.sock.recv(1 << 16)
            assert chunk, f"CONNECT_OPEN {uri}: connection dropped"
            self.framer.receive_data(chunk)
            msgs = list(self.framer)
            if msgs:
                assert msgs[0].header.status == 0, f"CONNECT_OPEN {uri} failed"
                break
        self.sock.setblocking(False)

    @staticmethod
    def frame(prog: int, proc: int, serial: int, payload: bytes) -> bytes:
        return struct.pack(">IIIiiIi", 28 + len(payload), prog, 1, proc, 0, serial, 0) + payload

    def queue(self, prog: int, proc: Procedure, payload: bytes) -> None:
        self.serial += 1
        what = f"{self.uri} {proc.name}({payload[:200]!r}{'...' if len(payload) > 200 else ''})"
        self.pending[self.serial] = (prog, proc, what)
        self.out += self.frame(prog, proc.number, self.serial, payload)
        if proc.name == "CONNECT_CLOSE":
            self.closing = True

    def flush(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            self.lost()
            return
        del self.out[:sent]

    def read(self) -> None:
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.lost()
            return
        self.framer.receive_data(chunk)
        for msg in self.framer:
            if msg.header.type != MessageType.REPLY:
                continue
            assert msg.header.serial in self.pending, f"a reply to no call: {msg.header}"
            prog, proc, what = self.pending.pop(msg.header.serial)
            if check_reply(msg, prog, proc, what, self.uri):
                self.closed = True

    def lost(self) -> None:
        self.finished = True
        unanswered = [what for _, _, what in self.pending.values()]
        assert self.closed or not unanswered, \
            f"the daemon dropped the connection with calls unanswered: {unanswered[:5]}"
        # calls sent after an answered CONNECT_CLOSE may go unanswered: they were never a call
        STATS.after_close += len(unanswered)
        self.pending.clear()
        self.out.clear()


def long_run(daemon: Pyvirtd, guest: Bystander, scratch: str, closed_port: int, total: int) -> None:
    """PYVIRT_FUZZ_CALLS mode: seeded generator, several pipelined connections, and the
    expensive checks (guest via QMP, a fresh client, strangers removed) every CHECK_EVERY calls."""
    import random
    import selectors
    import time
    seed = int(os.environ.get("PYVIRT_FUZZ_SEED", "0")) or random.SystemRandom().randrange(1, 2**32)
    conns = int(os.environ.get("PYVIRT_FUZZ_CONNECTIONS", "4"))
    window = int(os.environ.get("PYVIRT_FUZZ_WINDOW", "4"))      # IN_FLIGHT = conns * window
    check_every = int(os.environ.get("PYVIRT_FUZZ_CHECK_EVERY", "2000"))
    print(f"\nfuzz seed {seed} (PYVIRT_FUZZ_SEED={seed} replays the calls), {conns} connections, "
          f"{window} calls in flight each, full checks every {check_every} calls", flush=True)
    r = random.Random(seed)
    name, raw_uuid, dom_id = guest.name, uuidlib.UUID(guest.uuid).bytes, guest.id

    def ctx_for(aim_at_guest: bool) -> Context:
        return Context(scratch, (name, raw_uuid, dom_id), aim_at_guest, closed_port)
    uris = ["qemu:///system", "qemu:///system", "test:///default"]
    sel = selectors.DefaultSelector()
    pipes: list[Pipe] = []

    def new_pipe() -> Pipe:
        p = Pipe(daemon.tcp_port, r.choice(uris))
        sel.register(p.sock, selectors.EVENT_READ, p)
        return p
    pipes = [new_pipe() for _ in range(conns)]
    generated = 0
    checks = 0
    started = time.monotonic()
    next_check = check_every
    STATS.rss_kib.append(rss_kib(daemon.pid))
    while generated < total or any(p.pending or p.held for p in pipes):
        for i, p in enumerate(pipes):
            if p.finished or (p.closing and not p.pending and not p.held):
                sel.unregister(p.sock)
                p.sock.close()
                pipes[i] = p = new_pipe()
            while generated < total and not p.closing and len(p.pending) < window:
                call = fuzzgen.gen_call(r, ctx_for)
                generated += 1
                if call[1].name == "CONNECT_CLOSE":
                    # sent alone, once the calls before it are answered: the daemon may
                    # drop what is still in flight when it closes (libvirtd does)
                    p.held, p.closing = call, True
                else:
                    p.queue(*call)
            if p.held and not p.pending:
                p.queue(*p.held)
                p.held = None
            if p.out:
                p.flush()
            sel.modify(p.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if p.out else 0), p)
        events = sel.select(REPLY_TIMEOUT)
        if not events:
            stuck = [what for p in pipes for _, _, what in p.pending.values()]
            pytest.fail(f"no reply within {REPLY_TIMEOUT:.0f} s to {stuck[:5]} (the daemon hung)")
        for key, mask in events:
            p = key.data
            if mask & selectors.EVENT_READ and not p.finished:
                p.read()
            if mask & selectors.EVENT_WRITE and p.out and not p.finished:
                p.flush()
        if STATS.calls // 200 > len(STATS.rss_kib):
            STATS.rss_kib.append(rss_kib(daemon.pid))
        if STATS.calls >= next_check or (generated >= total and not any(p.pending or p.held for p in pipes)):
            next_check += check_every
            guest.assert_unchanged()
            remove_strangers(daemon, guest.uuid)
            checks += 1
            if checks % 25 == 0:
                rss = STATS.rss_kib
                print(f"{STATS.calls} calls in {time.monotonic() - started:.0f} s, {STATS.ok} OK, "
                      f"RSS now {rss[-1] / 1024:.1f} MiB (peak {max(rss) / 1024:.1f}), {checks} checks passed",
                      flush=True)
    for p in pipes:
        p.sock.close()
    STATS.rss_kib.append(rss_kib(daemon.pid))
    guest.assert_unchanged()
    checks += 1
    print(f"long run: {STATS.calls} calls in {time.monotonic() - started:.0f} s, seed {seed}, "
          f"{checks} full checks (guest via QMP, fresh client) passed", flush=True)


@pytest.fixture(scope="module")
def fuzzed(target):
    """The fuzzing itself, once per module: the tests below read what it recorded, whatever
    order they run in (pytest -n need not keep a file's order)."""
    daemon, guest, scratch, closed_port = target
    if LONG_RUN:
        long_run(daemon, guest, scratch, closed_port, LONG_RUN)
        return STATS

    rounds = -(-EXAMPLES // ROUND)

    @settings(max_examples=-(-EXAMPLES // rounds), deadline=None, suppress_health_check=list(HealthCheck),
              database=None if LONG_RUN else settings.default.database)
    @given(data=st.data(), uri=st.sampled_from(["qemu:///system", "qemu:///system", "test:///default"]))
    def fuzz(data, uri):
        guest.ensure_running()
        name, raw_uuid, dom_id = guest.name, uuidlib.UUID(guest.uuid).bytes, guest.id

        def ctx_for(aim_at_guest: bool) -> Context:
            return Context(scratch, (name, raw_uuid, dom_id), aim_at_guest, closed_port)
        batch = fuzzgen.gen_calls(data.draw(st.randoms(use_true_random=False)), ctx_for, CALLS_PER_EXAMPLE)
        run_calls(daemon.tcp_port, uri, batch)
        STATS.rss_kib.append(rss_kib(daemon.pid))
        guest.assert_unchanged()
        remove_strangers(daemon, guest.uuid)

    # Long runs go in rounds: hypothesis keeps what it explored for the length of a
    # run, which would otherwise grow without bound in the test process.
    for _ in range(rounds):
        fuzz()
    return STATS


def test_fuzzed_calls_after_open(fuzzed, target):
    """Every batch left the guest as it was (checked inside each example) and calls were made."""
    assert fuzzed.calls > 0
    target[1].assert_unchanged()


def test_the_daemon_stayed_small_and_the_guest_ran_throughout(fuzzed, target):
    daemon, guest, _, _ = target
    guest.assert_unchanged()
    rss = STATS.rss_kib
    if LONG_RUN:
        assert STATS.calls >= LONG_RUN and not STATS.after_close, (STATS.calls, STATS.after_close)
    else:
        assert STATS.calls >= EXAMPLES and len(STATS.rss_kib) >= EXAMPLES, STATS.calls
    print(f"\nfuzzed calls: {STATS.calls} ({STATS.ok} OK, errors by code {dict(sorted(STATS.errors.items()))}); "
          f"daemon RSS first {rss[0] / 1024:.1f} MiB, peak {max(rss) / 1024:.1f} MiB, last {rss[-1] / 1024:.1f} MiB; "
          f"{len(STATS.reached)} procedures answered OK; {STATS.after_close} calls sent behind an answered "
          f"CONNECT_CLOSE")
    if os.environ.get("PYVIRT_FUZZ_VERBOSE"):
        print("answered OK:", " ".join(sorted(STATS.reached)))
        for msg, n in sorted(STATS.internal.items()):
            print(f"  INTERNAL_ERROR x{n}: {msg}")
    bound = RSS_GROWTH_MAX_KIB + (IN_FLIGHT - 1) * RSS_PER_CALL_IN_FLIGHT_KIB
    assert max(rss) - rss[0] < bound, f"RSS grew from {rss[0]} to {max(rss)} KiB ({IN_FLIGHT} calls in flight)"
    if len(rss) >= 400:    # a long run: the second half may not keep growing
        half = len(rss) // 2
        print(f"RSS peak over the first half {max(rss[:half]) / 1024:.1f} MiB, over the second "
              f"{max(rss[half:]) / 1024:.1f} MiB ({len(rss)} samples)")
        assert rss[-1] - max(rss[:half]) < 32 * 1024, f"RSS still growing: first half's peak {max(rss[:half])}, last {rss[-1]} KiB"


def test_no_reply_leaks_a_python_exception(fuzzed):
    assert not STATS.findings, "INTERNAL_ERROR replies carrying a Python exception's text:\n" + "\n".join(
        f"- {msg}\n    in reply to {what}" for msg, what in sorted(STATS.findings.items()))


@pytest.mark.parametrize("proc_name", [
    "DOMAIN_LOOKUP_BY_NAME",     # answered at once, on the event loop
    "DOMAIN_SAVE_IMAGE_GET_XML_DESC",   # answered from a task
])
def test_an_error_quoting_a_huge_argument_is_answered(target, proc_name):
    """An argument at the 4 MiB string limit that the error message quotes makes the
    error too long for the wire.  libvirtd then drops the client (it cannot serialize
    the error); pyvirtd answers with the error cut to fit (ending in an ellipsis), never
    leaves the call hanging, and the connection stays usable."""
    import asyncio
    from pyvirt.errors import libvirtError
    from pyvirt.rpc.client import RPCClient
    daemon, guest, scratch, _ = target
    huge = f"{scratch}/" + "n" * (xdr.STRING_MAX - len(scratch) - 1)
    proc = REMOTE.by_name[proc_name]
    args = (huge,) if proc_name == "DOMAIN_LOOKUP_BY_NAME" else (huge, 0)

    async def call() -> None:
        client = await RPCClient.connect_tcp("127.0.0.1", daemon.tcp_port)
        try:
            await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"], ("qemu:///system", 0))
            try:
                await asyncio.wait_for(client.call(Program.REMOTE, proc, args), 10)
            except libvirtError as exc:
                assert exc.get_error_code() > 0
                message = exc.get_error_message()
                assert message.endswith(xdr.ELLIPSIS) and len(message.encode()) == xdr.STRING_MAX, message[:200]
                assert "n" * 1000 in message                  # the start of what it quoted
            except asyncio.TimeoutError:
                pytest.fail(f"{proc_name} with a 4 MiB argument: no reply and no disconnect within 10 s")
            else:
                pytest.fail(f"{proc_name} with a 4 MiB argument succeeded")
            assert await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_GET_TYPE"], ()) == "QEMU"
        finally:
            client.close()
    asyncio.run(call())
    guest.assert_unchanged()


def test_huge_domain_names_do_not_pile_up_in_memory(pyvirtd):
    """Calls naming domains with 1 MiB names (refused: no such domain) leave nothing behind."""
    import asyncio
    from pyvirt.driver import DomainRef
    from pyvirt.errors import libvirtError
    from pyvirt.rpc.client import RPCClient
    get_state = REMOTE.by_name["DOMAIN_GET_STATE"]

    async def calls(n: int) -> None:
        client = await RPCClient.connect_unix(str(pyvirtd.sock_dir / "libvirt-sock-ro"))
        try:
            await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"], ("qemu:///system", 1))
            for i in range(n):
                with pytest.raises(libvirtError):
                    await client.call(Program.REMOTE, get_state,
                                      (DomainRef(f"{i}" + "n" * (1 << 20), uuidlib.uuid4().bytes, 1), 0))
        finally:
            client.close()
    asyncio.run(calls(4))
    before = rss_kib(pyvirtd.pid)
    asyncio.run(calls(64))
    grown = rss_kib(pyvirtd.pid) - before
    assert grown < 32 * 1024, f"64 calls with 1 MiB domain names grew the daemon by {grown // 1024} MiB"
