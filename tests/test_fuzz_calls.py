"""Fuzzing past CONNECT_OPEN: calls typed from the procedure tables reach the drivers.

Each example opens a connection to the test driver or to the QEMU driver of a
pyvirtd that runs a guest, then sends a few calls chosen from the REMOTE and
QEMU tables with arguments generated per XDR type, straight as wire bytes (so
they can be what pyvirt's own encoder would refuse): strings with NULs, huge or
not UTF-8, integers at their boundaries, arrays over their limits, optional
flags that are neither 0 nor 1, domains that exist, do not exist or carry a
mutated UUID; then some calls are cut short or have bytes flipped.

Every call must get exactly one well-formed REPLY (an error is a libvirt error
with a code) — the connection may only end after CONNECT_CLOSE —, the daemon
must live on with a bounded RSS, and the running guest must be untouched:
same QEMU, running (booted), CPUs running by QMP ``query-status``.  Calls that
may legitimately stop, pause, save, migrate or undefine a guest are only ever
aimed at other domains.

``PYVIRT_FUZZ_CALLS=N`` runs N calls instead of the bounded default, drawn by the
seeded generator of fuzzgen (same values per XDR type, no shrinking) over
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

from pyvirt.errors import ErrorNumber
from pyvirt.rpc import xdr
from pyvirt.rpc.protocol import QEMU, REMOTE, Kind, Procedure
from pyvirt.rpc.wire import Framer, MessageType, Program, decode_error_payload

from daemons import Bystander, Pyvirtd
from guests import TINY

LONG_RUN = int(os.environ.get("PYVIRT_FUZZ_CALLS", "0"))
CALLS_PER_EXAMPLE = 6
EXAMPLES = max(LONG_RUN // 4, 1) if LONG_RUN else 600   # about 3.5 calls per example
ROUND = 1000
REPLY_TIMEOUT = 60.0
RSS_GROWTH_MAX_KIB = 160 * 1024
"""Largest growth of the daemon's RSS over the run: a few 4 MiB strings in flight
are fine, a leak per call is not."""

TEST_DOMAIN = ("test", uuidlib.UUID("6695eb01-f6a4-8304-79aa-97f2502e193f").bytes, 1)

# Calls that may legitimately stop, pause, reset, save, migrate, undefine the guest
# or start a job on it: never aimed at the bystander.
AIMED_ELSEWHERE = {
    "DOMAIN_DESTROY", "DOMAIN_DESTROY_FLAGS", "DOMAIN_SUSPEND", "DOMAIN_SHUTDOWN",
    "DOMAIN_SHUTDOWN_FLAGS", "DOMAIN_REBOOT", "DOMAIN_UNDEFINE", "DOMAIN_UNDEFINE_FLAGS",
    "DOMAIN_SAVE", "DOMAIN_SAVE_FLAGS", "DOMAIN_SAVE_PARAMS", "DOMAIN_MANAGED_SAVE",
    "DOMAIN_MIGRATE_PERFORM", "DOMAIN_MIGRATE_PERFORM3", "DOMAIN_MIGRATE_PERFORM3_PARAMS",
    "DOMAIN_MIGRATE_BEGIN3", "DOMAIN_MIGRATE_BEGIN3_PARAMS", "DOMAIN_MIGRATE_CONFIRM3",
    "DOMAIN_MIGRATE_CONFIRM3_PARAMS", "DOMAIN_MIGRATE_START_POST_COPY", "DOMAIN_ABORT_JOB",
    "DOMAIN_ABORT_JOB_FLAGS",
}
# The bystander may be asked only what cannot change it.
SAFE_MONITOR_COMMANDS = ['{"execute":"query-status"}', '{"execute":"query-version"}',
                         '{"execute":"no-such-command"}', '{"execute": 5}', "[]", "not json", "{"]
PROCEDURES: list[tuple[int, Procedure]] = [
    (Program.REMOTE, p) for p in REMOTE if p.kind is not Kind.MESSAGE] + [
    (Program.QEMU, p) for p in QEMU if p.kind is not Kind.MESSAGE]
HUGE_ECHOABLE = xdr.STRING_MAX // 2 - 1024
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


# --- wire values, per XDR type ----------------------------------------------------------

def choice(*options: st.SearchStrategy) -> st.SearchStrategy:
    """One of the options with equal odds (``st.one_of`` leans hard on the first ones;
    repeat an option to weight it)."""
    return st.sampled_from(range(len(options))).flatmap(lambda i: options[i])


def u32(n: int) -> bytes:
    return struct.pack(">I", n & 0xFFFFFFFF)


def opaque(data: bytes) -> bytes:
    return u32(len(data)) + data + b"\0" * (-len(data) & 3)


@dataclass(frozen=True)
class Context:
    """What the generator may aim at: the scratch directory, the guest to leave alone."""

    scratch: str
    guest: tuple[str, bytes, int]
    aim_at_guest: bool
    closed_port: int


SAFE_NAME = st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1, max_size=24)


def text_bytes(ctx: Context, plain: st.SearchStrategy[str] = SAFE_NAME) -> st.SearchStrategy[bytes]:
    """String payloads: plain, with a NUL, not UTF-8, empty, huge."""
    utf8 = plain.map(lambda t: t.encode())
    return choice(
        utf8, utf8,
        st.tuples(utf8, utf8).map(lambda t: t[0] + b"\0" + t[1]),
        st.binary(min_size=1, max_size=12).map(lambda b: b"\xff" + b),      # never valid UTF-8
        st.just(b""),
        st.sampled_from([b"\n", b"a\nb", b"\x7f", b"\t"]),
        st.integers(1, 4).map(lambda n: b"n" * (n << 18)),                   # up to 1 MiB
    )


def string_wire(data: st.SearchStrategy[bytes], maximum: int) -> st.SearchStrategy[bytes]:
    """A counted string/opaque, or a length word beyond its limit or its data."""
    return choice(
        data.map(opaque), data.map(opaque), data.map(opaque), data.map(opaque), data.map(opaque),
        st.just(u32(maximum + 1)),
        st.just(u32(0xFFFFFFFF) + b"abcd"),
        # near the limit, yet short enough that an error message quoting it twice
        # still fits in one (test_an_error_quoting_a_huge_argument_is_answered has the rest)
        st.just(opaque(b"n" * min(maximum, HUGE_ECHOABLE))),
    )


def name_bytes(ctx: Context) -> st.SearchStrategy[bytes]:
    return choice(text_bytes(ctx), st.sampled_from([ctx.guest[0].encode(), b"test", b"nosuch"]))


def path_bytes(ctx: Context) -> st.SearchStrategy[bytes]:
    """Paths only inside the scratch directory (the daemon runs as root)."""
    component = st.text(st.characters(blacklist_characters="/,", blacklist_categories=("Cs",)),
                        min_size=1, max_size=20).filter(lambda c: c.strip("."))
    inside = component.map(lambda c: f"{ctx.scratch}/{c}".encode())
    return choice(
        inside, inside,
        st.just(f"{ctx.scratch}/victim".encode()),
        st.just(f"{ctx.scratch}/link".encode()),
        st.just(f"{ctx.scratch}/dir/".encode()),
        st.just(f"{ctx.scratch}/".encode() + b"x" * 5000),
        component.map(lambda c: f"{ctx.scratch}/{c}\0/etc/passwd".encode()),
        st.just(f"{ctx.scratch}/".encode() + b"\xff\xfe"),
        st.just(b""),
    )


def uri_bytes(ctx: Context) -> st.SearchStrategy[bytes]:
    """Migration and peer URIs that reach nothing but closed ports on loopback."""
    port = ctx.closed_port
    return st.sampled_from([
        f"tcp:127.0.0.1:{port}", f"tcp://127.0.0.1:{port}", f"tcp:[::1]:{port}", f"rdma:127.0.0.1:{port}",
        f"qemu+tcp://127.0.0.1:{port}/system", f"test+tcp://127.0.0.1:{port}/default",
        f"unix://{ctx.scratch}/nosock", "tcp:", "tcp:127.0.0.1", "tcp:127.0.0.1:99999", "", ":", "qemu://",
        "tcp:127.0.0.1:0\0x", "tcp:127.0.0.1:-1",
    ]).map(str.encode)


def address_bytes(ctx: Context) -> st.SearchStrategy[bytes]:
    """Listen addresses: loopback only (a random name would be a DNS query off the host)."""
    return st.sampled_from([b"127.0.0.1", b"::1", b"[::1]", b"127.0.0.1\0x", b"", b"\xff", b"256.1.1.1", b"::"[:1]])


def xml_bytes(ctx: Context) -> st.SearchStrategy[bytes]:
    """Domain XML: junk, or a template whose values are fuzzed (no comma reaches QEMU
    options from here: the QEMU command line tests own that)."""
    value = st.sampled_from(["0", "1", "16", "64", "-1", "18446744073709551615", "9" * 30, "", "x"])
    name = SAFE_NAME.filter(lambda n: "," not in n)
    template = st.builds(
        lambda virt, nm, mem, unit, vcpu, kernel, uid, machine: (
            f"<domain type='{virt}'><name>{_xml_text(nm)}</name>{uid}"
            f"<memory unit='{unit}'>{mem}</memory><vcpu>{vcpu}</vcpu>"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type><kernel>{kernel}</kernel></os>"
            f"<devices><serial type='file'><source path='{ctx.scratch}/serial.log'/></serial></devices>"
            f"</domain>").encode(),
        st.sampled_from(["qemu", "qemu", "kvm", "lxc", "xen", ""]), name, value,
        st.sampled_from(["MiB", "KiB", "GiB", "EiB", "bogus"]), value,
        st.sampled_from([str(TINY), f"{ctx.scratch}/nokernel", ""]),
        st.sampled_from(["", f"<uuid>{uuidlib.UUID(bytes=ctx.guest[1])}</uuid>",
                         f"<uuid>{uuidlib.uuid4()}</uuid>", "<uuid>zzz</uuid>"]),
        st.sampled_from(["pc", "q35", "none", "bogus"]),
    )
    return choice(template, template, text_bytes(ctx, st.text(max_size=60)), st.just(b"<domain"))


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cookie_bytes(ctx: Context) -> st.SearchStrategy[bytes]:
    junk = st.binary(max_size=64)
    xmlish = st.sampled_from([
        b"<qemu-migration><name>x</name><uuid>00000000-0000-0000-0000-000000000000</uuid>"
        b"<hostname>h</hostname><hostuuid>00000000-0000-0000-0000-000000000001</hostuuid></qemu-migration>\0",
        b"<qemu-migration><feature name='teleport'/></qemu-migration>", b"<qemu-migration", b"\0",
    ])
    return choice(junk, xmlish)


FIELD_KIND = {
    "name": name_bytes, "dname": name_bytes, "dev_name": name_bytes, "mech": name_bytes,
    "event": name_bytes, "to": path_bytes, "from": path_bytes, "file": path_bytes, "path": path_bytes,
    "xml": xml_bytes, "xml_desc": xml_bytes, "dxml": xml_bytes, "dom_xml": xml_bytes, "xmlin": xml_bytes,
    "uri": uri_bytes, "uri_in": uri_bytes, "dconnuri": uri_bytes,
}
TYPED_PARAM_KIND = {
    "migrate_uri": uri_bytes, "destination_name": name_bytes, "destination_xml": xml_bytes,
    "persistent_xml": xml_bytes, "graphics_uri": uri_bytes, "listen_address": address_bytes,
    "file": path_bytes, "dxml": xml_bytes, "migrate_disks": name_bytes,
}
TYPED_PARAM_FIELDS = list(TYPED_PARAM_KIND) + [
    "bandwidth", "bandwidth.postcopy", "auto_converge.initial", "auto_converge.increment",
    "parallel.connections", "compression", "compression.mt.level", "disks_port", "tls.destination",
    "downtime", "image_format", "",
]


MOSTLY_ZERO = ("flags", "need_results", "cancelled", "retcode", "autostart", "maxids", "maxnames")


def int_wire(fmt: str, name: str) -> st.SearchStrategy[bytes]:
    size = struct.calcsize(">" + fmt)
    bits = 8 * size
    signed = fmt.islower()
    lo, hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
    edges = st.sampled_from(sorted(v for v in {0, 1, 2, lo, hi, lo + 1, hi - 1, 255, 256, 65535, 65536,
                                               (1 << 31) - 1, 1 << 31, 1 << 32} if lo <= v <= hi))
    values = choice(st.just(0), edges, st.integers(lo, hi))
    if name in MOSTLY_ZERO:
        values = choice(st.just(0), st.just(0), st.just(0), edges, st.integers(lo, hi))
    return values.map(lambda v: struct.pack(">" + fmt, v))


def domain_wire(ctx: Context) -> st.SearchStrategy[bytes]:
    """A remote_nonnull_domain: the guest (when allowed), the test driver's domain,
    the guest's name with a mutated UUID, strangers; names as fuzzed strings."""
    def encode(ref: tuple[bytes, bytes, int]) -> bytes:
        return opaque(ref[0]) + ref[1] + struct.pack(">i", ref[2])
    guest_name, guest_uuid, guest_id = ctx.guest
    mutated = st.tuples(st.integers(0, 15), st.integers(1, 255)).map(
        lambda t: guest_uuid[:t[0]] + bytes([guest_uuid[t[0]] ^ t[1]]) + guest_uuid[t[0] + 1:])
    # Names stay below 64 KiB here: bigger ones pile up in the decoder's domain cache
    # (test_huge_domain_names_do_not_pile_up_in_memory), which would blur the RSS bound.
    names = name_bytes(ctx).map(lambda b: b[:65536])
    refs = [
        st.just((TEST_DOMAIN[0].encode(), TEST_DOMAIN[1], TEST_DOMAIN[2])),
        st.tuples(st.just(guest_name.encode()), mutated, st.just(guest_id)),
        st.tuples(names, st.binary(min_size=16, max_size=16), st.integers(-2**31, 2**31 - 1)),
    ]
    if ctx.aim_at_guest:
        refs += [st.just((guest_name.encode(), guest_uuid, guest_id))] * 3
    return choice(*refs).map(encode)


def typed_params_wire(ctx: Context, maximum: int) -> st.SearchStrategy[bytes]:
    def param(name: str) -> st.SearchStrategy[bytes]:
        kind = TYPED_PARAM_KIND.get(name)
        string = string_wire(kind(ctx) if kind else text_bytes(ctx), xdr.STRING_MAX)
        value = choice(
            st.tuples(st.just(1), int_wire("i", name)), st.tuples(st.just(2), int_wire("I", name)),
            st.tuples(st.just(3), int_wire("q", name)), st.tuples(st.just(4), int_wire("Q", name)),
            st.tuples(st.just(5), st.floats(allow_nan=True).map(lambda f: struct.pack(">d", f))),
            st.tuples(st.just(6), int_wire("i", name)), st.tuples(st.just(7), string),
            st.tuples(st.just(8), st.just(b"")),                 # no such type
        )
        return value.map(lambda t: opaque(name.encode()) + struct.pack(">i", t[0]) + t[1])
    one = choice(st.sampled_from(TYPED_PARAM_FIELDS).flatmap(param), text_bytes(ctx).map(opaque).map(
        lambda n: n + struct.pack(">i", 1) + b"\0\0\0\1"))
    return choice(
        st.lists(one, max_size=4).map(lambda ps: u32(len(ps)) + b"".join(ps)),
        st.lists(one, max_size=4).map(lambda ps: u32(len(ps)) + b"".join(ps)),
        st.just(u32(maximum + 1)),
    )


def wire_for(t: xdr.Type, name: str, ctx: Context) -> st.SearchStrategy[bytes]:
    if t is xdr.NonnullDomain:
        return domain_wire(ctx)
    if isinstance(t, xdr.Struct):
        parts = [wire_for(ft, fname, ctx) for fname, ft in t.fields]
        return st.tuples(*parts).map(b"".join) if parts else st.just(b"")
    if isinstance(t, xdr.Scalar):
        if t is xdr.Double:
            return st.floats(allow_nan=True).map(lambda f: struct.pack(">d", f))
        return int_wire(t.fmt, name)
    if isinstance(t, xdr.String):
        kind = FIELD_KIND.get(name)
        return string_wire(kind(ctx) if kind else text_bytes(ctx), t.max)
    if isinstance(t, xdr.Opaque):
        return string_wire(cookie_bytes(ctx), t.max)
    if isinstance(t, xdr.FixedOpaque):
        if ctx.aim_at_guest:
            return choice(st.just(ctx.guest[1]), st.just(bytes(t.size)), st.binary(min_size=t.size, max_size=t.size))
        return st.binary(min_size=t.size, max_size=t.size)
    if isinstance(t, xdr.CharArray):         # each char a 4-byte int on the wire
        def chars(data: bytes) -> bytes:
            return b"".join(struct.pack(">i", c - 256 if c > 127 else c) for c in data)
        if t.fixed:
            return st.binary(min_size=t.max, max_size=t.max).map(chars)
        return choice(st.binary(max_size=16).map(lambda b: u32(len(b)) + chars(b)), st.just(u32(t.max + 1)))
    if isinstance(t, xdr.Optional):
        return choice(st.just(u32(0)), wire_for(t.elem, name, ctx).map(lambda b: u32(1) + b),
                         wire_for(t.elem, name, ctx).map(lambda b: u32(1) + b), st.just(u32(2)))
    if isinstance(t, xdr.Array) and t.elem is xdr.TypedParam:
        return typed_params_wire(ctx, t.max)
    if isinstance(t, xdr.Array):
        elems = st.lists(wire_for(t.elem, name, ctx), max_size=3)
        return choice(elems.map(lambda es: u32(len(es)) + b"".join(es)),
                         st.just(u32(t.max + 1)), st.just(u32(0xFFFFFFFF)))
    raise AssertionError(f"no wire strategy for {t!r}")


def mutate(payload: bytes) -> st.SearchStrategy[bytes]:
    """Mostly as generated; sometimes cut short, bytes flipped, or garbage appended."""
    n = len(payload)
    return choice(
        st.just(payload), st.just(payload), st.just(payload), st.just(payload),
        st.integers(0, max(n - 1, 0)).map(lambda k: payload[:k]),
        st.tuples(st.integers(0, max(n - 1, 0)), st.integers(1, 255)).map(
            lambda t: payload[:t[0]] + bytes([(payload[t[0]] if n else 0) ^ t[1]]) + payload[t[0] + 1:]),
        st.binary(min_size=1, max_size=16).map(lambda b: payload + b),
    )


@st.composite
def calls(draw, ctx_for) -> list[tuple[int, Procedure, bytes]]:
    out = []
    for _ in range(draw(st.integers(1, CALLS_PER_EXAMPLE))):
        prog, proc = draw(st.sampled_from(PROCEDURES))
        ctx = ctx_for(proc.name not in AIMED_ELSEWHERE and proc.name != "DOMAIN_MONITOR_COMMAND")
        if proc.args is None:
            payload = b""
        elif proc.name == "DOMAIN_MONITOR_COMMAND":
            guest = draw(st.booleans())
            dom = draw(domain_wire(ctx_for(guest) if guest else ctx))
            if guest:        # QMP or HMP queries only: the guest must not change
                cmd = draw(st.sampled_from(SAFE_MONITOR_COMMANDS))
                flags = 0 if cmd.startswith(("{", "[", "n")) else 1
                if draw(st.booleans()):
                    cmd, flags = "info status", 1
            else:
                cmd = draw(st.sampled_from(SAFE_MONITOR_COMMANDS + ['{"execute":"quit"}', "info registers"]))
                flags = draw(st.sampled_from([0, 1, 2, 0xFFFFFFFF]))
            payload = dom + opaque(cmd.encode()) + u32(flags)
        else:
            payload = draw(wire_for(proc.args, proc.args.name, ctx))
        out.append((prog, proc, draw(mutate(payload))))
    return out


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
    import fuzzgen
    seed = int(os.environ.get("PYVIRT_FUZZ_SEED", "0")) or random.SystemRandom().randrange(1, 2**32)
    conns = int(os.environ.get("PYVIRT_FUZZ_CONNECTIONS", "4"))
    window = int(os.environ.get("PYVIRT_FUZZ_WINDOW", "4"))
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


def test_fuzzed_calls_after_open(target):
    daemon, guest, scratch, closed_port = target
    if LONG_RUN:
        long_run(daemon, guest, scratch, closed_port, LONG_RUN)
        return

    rounds = -(-EXAMPLES // ROUND)

    @settings(max_examples=-(-EXAMPLES // rounds), deadline=None, suppress_health_check=list(HealthCheck),
              database=None if LONG_RUN else settings.default.database)
    @given(data=st.data(), uri=st.sampled_from(["qemu:///system", "qemu:///system", "test:///default"]))
    def fuzz(data, uri):
        guest.ensure_running()
        name, raw_uuid, dom_id = guest.name, uuidlib.UUID(guest.uuid).bytes, guest.id

        def ctx_for(aim_at_guest: bool) -> Context:
            return Context(scratch, (name, raw_uuid, dom_id), aim_at_guest, closed_port)
        batch = data.draw(calls(ctx_for))
        run_calls(daemon.tcp_port, uri, batch)
        STATS.rss_kib.append(rss_kib(daemon.pid))
        guest.assert_unchanged()
        remove_strangers(daemon, guest.uuid)

    # Long runs go in rounds: hypothesis keeps what it explored for the length of a
    # run, which would otherwise grow without bound in the test process.
    for _ in range(rounds):
        fuzz()


def test_the_daemon_stayed_small_and_the_guest_ran_throughout(target):
    daemon, guest, _, _ = target
    if not STATS.calls:
        pytest.skip("runs after test_fuzzed_calls_after_open")
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
    assert max(rss) - rss[0] < RSS_GROWTH_MAX_KIB, f"RSS grew from {rss[0]} to {max(rss)} KiB"
    if len(rss) >= 400:    # a long run: the second half may not keep growing
        half = len(rss) // 2
        assert rss[-1] - max(rss[:half]) < 32 * 1024, f"RSS still growing: {rss[half]} -> {rss[-1]} KiB"


def test_no_reply_leaks_a_python_exception(target):
    if not STATS.calls:
        pytest.skip("runs after test_fuzzed_calls_after_open")
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
