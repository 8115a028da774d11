"""The call generator of the fuzz tests: wire values per XDR type, drawn from a
``random.Random``-like source.

test_fuzz_calls hands it hypothesis's ``st.randoms()`` for the bounded run (so failures
shrink) and a seeded ``random.Random`` for long runs (no shrinking, no example
database: a million calls take minutes).  Values are built straight as wire bytes, so
they can be what pyvirt's own encoder would refuse: strings with NULs, huge or not
UTF-8, integers at their boundaries, arrays over their limits, optional flags that are
neither 0 nor 1, domains that exist, do not exist or carry a mutated UUID; then some
calls are cut short or have bytes flipped.  Each ``k = r.randrange(n)`` picks one of
n options with equal odds (an option listed twice weighs double).
"""

from __future__ import annotations

import random
import struct
import uuid as uuidlib
from dataclasses import dataclass

from pyvirt.rpc import xdr
from pyvirt.rpc.protocol import QEMU, REMOTE, Kind
from pyvirt.rpc.wire import Program

from guests import TINY

TEST_DOMAIN = ("test", uuidlib.UUID("6695eb01-f6a4-8304-79aa-97f2502e193f").bytes, 1)

# Calls that may legitimately stop, pause, reset, save, migrate, undefine the guest
# or start a job on it: never aimed at the bystander.
AIMED_ELSEWHERE = {
    "DOMAIN_DESTROY", "DOMAIN_DESTROY_FLAGS", "DOMAIN_SUSPEND", "DOMAIN_SHUTDOWN",
    "DOMAIN_SHUTDOWN_FLAGS", "DOMAIN_REBOOT", "DOMAIN_RESET", "DOMAIN_UNDEFINE", "DOMAIN_UNDEFINE_FLAGS",
    "DOMAIN_SAVE", "DOMAIN_SAVE_FLAGS", "DOMAIN_SAVE_PARAMS", "DOMAIN_MANAGED_SAVE",
    "DOMAIN_MIGRATE_PERFORM", "DOMAIN_MIGRATE_PERFORM3", "DOMAIN_MIGRATE_PERFORM3_PARAMS",
    "DOMAIN_MIGRATE_BEGIN3", "DOMAIN_MIGRATE_BEGIN3_PARAMS", "DOMAIN_MIGRATE_CONFIRM3",
    "DOMAIN_MIGRATE_CONFIRM3_PARAMS", "DOMAIN_MIGRATE_START_POST_COPY", "DOMAIN_ABORT_JOB",
    "DOMAIN_ABORT_JOB_FLAGS",
}
# The bystander may be asked only what cannot change it.
SAFE_MONITOR_COMMANDS = ['{"execute":"query-status"}', '{"execute":"query-version"}',
                         '{"execute":"no-such-command"}', '{"execute": 5}', "[]", "not json", "{"]
PROCEDURES: list = [
    (Program.REMOTE, p) for p in REMOTE if p.kind is not Kind.MESSAGE] + [
    (Program.QEMU, p) for p in QEMU if p.kind is not Kind.MESSAGE]
HUGE_ECHOABLE = xdr.STRING_MAX // 2 - 1024
"""Near the 4 MiB limit, yet short enough that an error message quoting it twice still fits."""


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


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _text(r: random.Random, alphabet_excl: str = "/", max_size: int = 24, min_size: int = 1) -> str:
    n = r.randint(min_size, max_size)
    out = []
    for _ in range(n):
        k = r.random()
        if k < 0.6:
            c = chr(r.randint(0x20, 0x7e))
        elif k < 0.8:
            c = chr(r.randint(0, 0x1f))
        else:
            c = chr(r.randint(0x80, 0x10FFFF))
            if 0xD800 <= ord(c) <= 0xDFFF:
                c = "x"
        out.append("x" if c in alphabet_excl else c)
    return "".join(out)


def _binary(r: random.Random, lo: int, hi: int) -> bytes:
    return r.randbytes(r.randint(lo, hi))


def gen_text_bytes(r: random.Random, ctx, plain=None) -> bytes:
    plain = plain or (lambda: _text(r))
    k = r.randrange(7)
    if k < 2:
        return plain().encode()
    if k == 2:
        return plain().encode() + b"\0" + plain().encode()
    if k == 3:
        return b"\xff" + _binary(r, 1, 12)
    if k == 4:
        return b""
    if k == 5:
        return r.choice([b"\n", b"a\nb", b"\x7f", b"\t"])
    return b"n" * (r.randint(1, 4) << 18)


def gen_string_wire(r: random.Random, data, maximum: int) -> bytes:
    k = r.randrange(8)
    if k < 5:
        return opaque(data())
    if k == 5:
        return u32(maximum + 1)
    if k == 6:
        return u32(0xFFFFFFFF) + b"abcd"
    return opaque(b"n" * min(maximum, HUGE_ECHOABLE))


def gen_name_bytes(r: random.Random, ctx) -> bytes:
    if r.randrange(2):
        return gen_text_bytes(r, ctx)
    return r.choice([ctx.guest[0].encode(), b"test", b"nosuch"])


def gen_path_bytes(r: random.Random, ctx) -> bytes:
    def component() -> str:
        c = _text(r, "/,", 20)
        return c if c.strip(".") else "c"
    k = r.randrange(9)
    if k < 2:
        return f"{ctx.scratch}/{component()}".encode()
    return [
        None, None,
        lambda: f"{ctx.scratch}/victim".encode(),
        lambda: f"{ctx.scratch}/link".encode(),
        lambda: f"{ctx.scratch}/dir/".encode(),
        lambda: f"{ctx.scratch}/".encode() + b"x" * 5000,
        lambda: f"{ctx.scratch}/{component()}\0/etc/passwd".encode(),
        lambda: f"{ctx.scratch}/".encode() + b"\xff\xfe",
        lambda: b"",
    ][k]()


def gen_uri_bytes(r: random.Random, ctx) -> bytes:
    port = ctx.closed_port
    return r.choice([
        f"tcp:127.0.0.1:{port}", f"tcp://127.0.0.1:{port}", f"tcp:[::1]:{port}", f"rdma:127.0.0.1:{port}",
        f"qemu+tcp://127.0.0.1:{port}/system", f"test+tcp://127.0.0.1:{port}/default",
        f"unix://{ctx.scratch}/nosock", "tcp:", "tcp:127.0.0.1", "tcp:127.0.0.1:99999", "", ":", "qemu://",
        "tcp:127.0.0.1:0\0x", "tcp:127.0.0.1:-1",
    ]).encode()


def gen_address_bytes(r: random.Random, ctx) -> bytes:
    return r.choice([b"127.0.0.1", b"::1", b"[::1]", b"127.0.0.1\0x", b"", b"\xff", b"256.1.1.1", b"::"[:1]])


def gen_xml_bytes(r: random.Random, ctx) -> bytes:
    k = r.randrange(4)
    if k == 2:
        return gen_text_bytes(r, ctx, lambda: _text(r, "", 60, 0))
    if k == 3:
        return b"<domain"
    values = ["0", "1", "16", "64", "-1", "18446744073709551615", "9" * 30, "", "x"]
    virt = r.choice(["qemu", "qemu", "kvm", "lxc", "xen", ""])
    nm = _text(r, "/,")
    mem, unit, vcpu = r.choice(values), r.choice(["MiB", "KiB", "GiB", "EiB", "bogus"]), r.choice(values)
    kernel = r.choice([str(TINY), f"{ctx.scratch}/nokernel", ""])
    uid = r.choice(["", f"<uuid>{uuidlib.UUID(bytes=ctx.guest[1])}</uuid>",
                    f"<uuid>{uuidlib.UUID(bytes=r.randbytes(16))}</uuid>", "<uuid>zzz</uuid>"])
    machine = r.choice(["pc", "q35", "none", "bogus"])
    return (f"<domain type='{virt}'><name>{_xml_text(nm)}</name>{uid}"
            f"<memory unit='{unit}'>{mem}</memory><vcpu>{vcpu}</vcpu>"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type><kernel>{kernel}</kernel></os>"
            f"<devices><serial type='file'><source path='{ctx.scratch}/serial.log'/></serial></devices>"
            f"</domain>").encode()


def gen_cookie_bytes(r: random.Random, ctx) -> bytes:
    if r.randrange(2):
        return _binary(r, 0, 64)
    return r.choice([
        b"<qemu-migration><name>x</name><uuid>00000000-0000-0000-0000-000000000000</uuid>"
        b"<hostname>h</hostname><hostuuid>00000000-0000-0000-0000-000000000001</hostuuid></qemu-migration>\0",
        b"<qemu-migration><feature name='teleport'/></qemu-migration>", b"<qemu-migration", b"\0",
    ])


FIELD_KIND = {
    "name": gen_name_bytes, "dname": gen_name_bytes, "dev_name": gen_name_bytes, "mech": gen_name_bytes,
    "event": gen_name_bytes, "to": gen_path_bytes, "from": gen_path_bytes, "file": gen_path_bytes,
    "path": gen_path_bytes, "xml": gen_xml_bytes, "xml_desc": gen_xml_bytes, "dxml": gen_xml_bytes,
    "dom_xml": gen_xml_bytes, "xmlin": gen_xml_bytes, "uri": gen_uri_bytes, "uri_in": gen_uri_bytes,
    "dconnuri": gen_uri_bytes,
}
"""String fields whose values have a meaning: names, paths (kept in the scratch
directory), XML, URIs (closed loopback ports only)."""
TYPED_PARAM_KIND = {
    "migrate_uri": gen_uri_bytes, "destination_name": gen_name_bytes, "destination_xml": gen_xml_bytes,
    "persistent_xml": gen_xml_bytes, "graphics_uri": gen_uri_bytes, "listen_address": gen_address_bytes,
    "file": gen_path_bytes, "dxml": gen_xml_bytes, "migrate_disks": gen_name_bytes,
}
TYPED_PARAM_FIELDS = list(TYPED_PARAM_KIND) + [
    "bandwidth", "bandwidth.postcopy", "auto_converge.initial", "auto_converge.increment",
    "parallel.connections", "compression", "compression.mt.level", "disks_port", "tls.destination",
    "downtime", "image_format", "",
]
MOSTLY_ZERO = ("flags", "need_results", "cancelled", "retcode", "autostart", "maxids", "maxnames")
"""Integers most calls leave 0: drawn 0 more often so that calls get past their flag checks."""
_INT_CACHE: dict[tuple[str, bool], tuple[int, int, list[int], str]] = {}


def gen_int_wire(r: random.Random, fmt: str, name: str) -> bytes:
    key = (fmt, name in MOSTLY_ZERO)
    if key not in _INT_CACHE:
        bits = 8 * struct.calcsize(">" + fmt)
        lo, hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if fmt.islower() else (0, (1 << bits) - 1)
        edges = sorted(v for v in {0, 1, 2, lo, hi, lo + 1, hi - 1, 255, 256, 65535, 65536,
                                   (1 << 31) - 1, 1 << 31, 1 << 32} if lo <= v <= hi)
        _INT_CACHE[key] = (lo, hi, edges, ">" + fmt)
    lo, hi, edges, pfmt = _INT_CACHE[key]
    k = r.randrange(5 if key[1] else 3)
    zeros = 3 if key[1] else 1
    v = 0 if k < zeros else r.choice(edges) if k == zeros else r.randint(lo, hi)
    return struct.pack(pfmt, v)


def _double(r: random.Random) -> bytes:
    k = r.randrange(4)
    if k == 0:
        return struct.pack(">d", r.choice([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e308, 5e-324]))
    if k == 1:
        return r.randbytes(8)                 # any bit pattern, NaNs with payloads included
    return struct.pack(">d", r.uniform(-1e12, 1e12))


def gen_domain_wire(r: random.Random, ctx) -> bytes:
    guest_name, guest_uuid, guest_id = ctx.guest
    n = 6 if ctx.aim_at_guest else 3
    k = r.randrange(n)
    if k == 0:
        ref = (TEST_DOMAIN[0].encode(), TEST_DOMAIN[1], TEST_DOMAIN[2])
    elif k == 1:
        i, x = r.randrange(16), r.randint(1, 255)
        ref = (guest_name.encode(), guest_uuid[:i] + bytes([guest_uuid[i] ^ x]) + guest_uuid[i + 1:], guest_id)
    elif k == 2:
        # names stay below 64 KiB: bigger ones pile up in the decoder's domain cache
        # (test_huge_domain_names_do_not_pile_up_in_memory), which would blur the RSS bound
        ref = (gen_name_bytes(r, ctx)[:65536], r.randbytes(16), r.randint(-2**31, 2**31 - 1))
    else:
        ref = (guest_name.encode(), guest_uuid, guest_id)
    return opaque(ref[0]) + ref[1] + struct.pack(">i", ref[2])


def gen_typed_params_wire(r: random.Random, ctx, maximum: int) -> bytes:
    def param(name: str) -> bytes:
        kind = TYPED_PARAM_KIND.get(name)
        t = r.randrange(1, 9)
        if t in (1, 6):
            value = gen_int_wire(r, "i", name)
        elif t == 2:
            value = gen_int_wire(r, "I", name)
        elif t == 3:
            value = gen_int_wire(r, "q", name)
        elif t == 4:
            value = gen_int_wire(r, "Q", name)
        elif t == 5:
            value = _double(r)
        elif t == 7:
            data = (lambda: kind(r, ctx)) if kind else (lambda: gen_text_bytes(r, ctx))
            value = gen_string_wire(r, data, xdr.STRING_MAX)
        else:
            value = b""
        return opaque(name.encode()) + struct.pack(">i", t) + value

    def one() -> bytes:
        if r.randrange(2):
            return param(r.choice(TYPED_PARAM_FIELDS))
        return opaque(gen_text_bytes(r, ctx)) + struct.pack(">i", 1) + b"\0\0\0\1"
    if r.randrange(3) == 2:
        return u32(maximum + 1)
    ps = [one() for _ in range(r.randint(0, 4))]
    return u32(len(ps)) + b"".join(ps)


def gen_wire(r: random.Random, t: xdr.Type, name: str, ctx) -> bytes:
    if t is xdr.NonnullDomain:
        return gen_domain_wire(r, ctx)
    if isinstance(t, xdr.Struct):
        return b"".join(gen_wire(r, ft, fname, ctx) for fname, ft in t.fields)
    if isinstance(t, xdr.Scalar):
        if t is xdr.Double:
            return _double(r)
        return gen_int_wire(r, t.fmt, name)
    if isinstance(t, xdr.String):
        kind = FIELD_KIND.get(name)
        data = (lambda: kind(r, ctx)) if kind else (lambda: gen_text_bytes(r, ctx))
        return gen_string_wire(r, data, t.max)
    if isinstance(t, xdr.Opaque):
        return gen_string_wire(r, lambda: gen_cookie_bytes(r, ctx), t.max)
    if isinstance(t, xdr.FixedOpaque):
        if ctx.aim_at_guest:
            k = r.randrange(3)
            if k == 0:
                return ctx.guest[1]
            if k == 1:
                return bytes(t.size)
        return r.randbytes(t.size)
    if isinstance(t, xdr.CharArray):
        def chars(data: bytes) -> bytes:
            return b"".join(struct.pack(">i", c - 256 if c > 127 else c) for c in data)
        if t.fixed:
            return chars(r.randbytes(t.max))
        if r.randrange(2):
            b = _binary(r, 0, 16)
            return u32(len(b)) + chars(b)
        return u32(t.max + 1)
    if isinstance(t, xdr.Optional):
        k = r.randrange(4)
        if k == 0:
            return u32(0)
        if k == 3:
            return u32(2)
        return u32(1) + gen_wire(r, t.elem, name, ctx)
    if isinstance(t, xdr.Array) and t.elem is xdr.TypedParam:
        return gen_typed_params_wire(r, ctx, t.max)
    if isinstance(t, xdr.Array):
        k = r.randrange(3)
        if k == 1:
            return u32(t.max + 1)
        if k == 2:
            return u32(0xFFFFFFFF)
        es = [gen_wire(r, t.elem, name, ctx) for _ in range(r.randint(0, 3))]
        return u32(len(es)) + b"".join(es)
    raise AssertionError(f"no wire generator for {t!r}")


def gen_mutate(r: random.Random, payload: bytes) -> bytes:
    n = len(payload)
    k = r.randrange(7)
    if k < 4:
        return payload
    if k == 4:
        return payload[:r.randint(0, max(n - 1, 0))]
    if k == 5:
        i = r.randint(0, max(n - 1, 0))
        return payload[:i] + bytes([(payload[i] if n else 0) ^ r.randint(1, 255)]) + payload[i + 1:]
    return payload + _binary(r, 1, 16)


def gen_call(r: random.Random, ctx_for):
    """One (program, procedure, payload); calls that could change the guest are aimed elsewhere."""
    prog, proc = r.choice(PROCEDURES)
    ctx = ctx_for(proc.name not in AIMED_ELSEWHERE and proc.name != "DOMAIN_MONITOR_COMMAND")
    if proc.args is None:
        payload = b""
    elif proc.name == "DOMAIN_MONITOR_COMMAND":
        guest = bool(r.randrange(2))
        dom = gen_domain_wire(r, ctx_for(guest) if guest else ctx)
        if guest:
            cmd = r.choice(SAFE_MONITOR_COMMANDS)
            flags = 0 if cmd.startswith(("{", "[", "n")) else 1
            if r.randrange(2):
                cmd, flags = "info status", 1
        else:
            cmd = r.choice(SAFE_MONITOR_COMMANDS + ['{"execute":"quit"}', "info registers"])
            flags = r.choice([0, 1, 2, 0xFFFFFFFF])
        payload = dom + opaque(cmd.encode()) + u32(flags)
    else:
        payload = gen_wire(r, proc.args, proc.args.name, ctx)
    return prog, proc, gen_mutate(r, payload)


def gen_calls(r: random.Random, ctx_for, most: int) -> list:
    return [gen_call(r, ctx_for) for _ in range(r.randint(1, most))]
