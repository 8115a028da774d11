"""Unexpected exceptions never leak: every procedure a driver implements,
driven over raw RPC with hostile but well-formed arguments (NUL bytes,
traversing and over-long paths, newlines, bad UUIDs, typed parameters of the
wrong type, strings that are not UTF-8), answers a libvirt error that names
no Python exception and carries no traceback, with a real error code rather
than INTERNAL_ERROR; the daemon keeps serving throughout."""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import re
import uuid as uuidlib

import pytest

from pyvirt.daemon.unexpected import as_libvirt_error
from pyvirt.drivers.qemu.connection import QemuConnection
from pyvirt.drivers.test import driver as test_driver
from pyvirt.errors import ErrorNumber, libvirtError
from pyvirt.refs import DomainRef
from pyvirt.rpc import xdr
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import REMOTE, Kind
from pyvirt.rpc.wire import Program, decode_error_payload

OPEN = REMOTE.by_name["CONNECT_OPEN"]
DEFINE = REMOTE.by_name["DOMAIN_DEFINE_XML"]
LOOKUP = REMOTE.by_name["DOMAIN_LOOKUP_BY_NAME"]
GET_STATE = REMOTE.by_name["DOMAIN_GET_STATE"]

# Python's insides that must never reach a client.
LEAK = re.compile(r"Traceback|File \"|\b[A-Z][A-Za-z]*(Error|Exception)\b|\[Errno|\bNone\b")

HOSTILE_STRINGS = ["bad\0path", "../../../pyvirt-nonexistent/x", "a" * 300, "two\nlines", "<domain><name>",
                   "", "\x01\x7f", "h\u00e9\U0001F600", "/" + "d/" * 2100]
HOSTILE_INTS = [-1, 0, 2**31 - 1, -2**31, 1]
HOSTILE_UUIDS = [b"\0" * 16, b"\xff" * 16, uuidlib.uuid4().bytes]
PARAM_NAMES = ["file", "dxml", "bandwidth", "migrate_uri", "destination_name", "destination_xml",
               "compression", "parallel.connections", "x\0y", "a" * 79, ""]
# Procedures that would start a guest from a well-formed defined domain: not what this test is about.
STARTS_A_GUEST = {"DOMAIN_CREATE", "DOMAIN_CREATE_WITH_FLAGS"}


def hostile(t: xdr.Type, n: int, dom: DomainRef) -> object:
    """The n-th hostile value of type ``t`` (every variant is well-formed XDR)."""
    if t is xdr.Bool:
        return bool(n % 2)
    if t is xdr.Double:
        return [float("inf"), -1.0, 1e308, 0.0][n % 4]
    if isinstance(t, xdr.Scalar):
        lo, hi = (t.lo, t.hi) if t.lo is not None else (None, None)
        value = HOSTILE_INTS[n % len(HOSTILE_INTS)]
        if t.fmt in ("I", "Q") and value < 0:
            value = {"I": 2**32 - 1, "Q": 2**64 - 1}[t.fmt]
        if t.fmt in ("q", "Q") and value == 2**31 - 1:
            value = 2**63 - 1 if t.fmt == "q" else 2**64 - 1
        if lo is not None:
            value = min(max(value, lo), hi)
        return value
    if isinstance(t, (xdr.String, xdr.CharString)):
        limit = t.max if isinstance(t, xdr.String) else t.max - 1
        text = HOSTILE_STRINGS[n % len(HOSTILE_STRINGS)]
        if isinstance(t, xdr.CharString):
            text = text.replace("\0", "")
        while len(text.encode()) > limit:
            text = text[: len(text) // 2]
        return text
    if isinstance(t, xdr.FixedOpaque):
        return HOSTILE_UUIDS[n % len(HOSTILE_UUIDS)] if t.size == 16 else b"\xff" * t.size
    if isinstance(t, xdr.CharArray):
        return b"\xff" * t.max if t.fixed else b"\xff\0"
    if isinstance(t, xdr.Opaque):
        return [b"", b"\0" * 8, b"\xff" * 64][n % 3]
    if t is xdr.TypedParam:
        arms = list(t.value_type.arms.items())
        kind, arm = arms[n % len(arms)]
        return (PARAM_NAMES[n % len(PARAM_NAMES)], kind, hostile(arm, n + 1, dom))
    if isinstance(t, xdr.Array):
        return [] if n % 3 == 0 else [hostile(t.elem, n + i, dom) for i in range(min(t.max, 3))]
    if isinstance(t, xdr.FixedArray):
        return [hostile(t.elem, n + i, dom) for i in range(t.size)]
    if t is xdr.NonnullDomain:
        return dom
    if isinstance(t, xdr.Optional):
        return None if n % 4 == 3 else hostile(t.elem, n, dom)
    if isinstance(t, xdr.Union):
        arms = list(t.arms.items())
        kind, arm = arms[n % len(arms)]
        return (kind, None if arm is None else hostile(arm, n, dom))
    if isinstance(t, xdr.Struct):
        # flags other than 0 stop most calls at the flags check: only one variant in nine has them
        values = tuple(0 if name == "flags" and n % 9 != 8 else hostile(ft, n + i, dom)
                       for i, (name, ft) in enumerate(t.fields))
        return t.cls(*values) if t.cls is not None else values   # a handle: snapshot, pool, volume
    raise AssertionError(f"no hostile value for {t!r}")


def implemented(conn_class: type) -> list:
    base = [p for p in REMOTE if p.kind is Kind.DRIVER and p.args is not None]
    return [p for p in base if p.method and p.method in vars_of(conn_class)]


def vars_of(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__name__ == "HypervisorConnection":
            break     # the base class answers "not supported" for everything else
        names.update(vars(klass))
    return names


# Bad input libvirt itself answers with INTERNAL_ERROR (qemuDomainOpenConsole,
# qemuDomainSendKey, qemuDomainOpenGraphicsFD, virDomainDefFindDevice for
# detachDeviceAlias): the same code and text here.
LIBVIRT_INTERNAL = re.compile(r"internal error: (cannot find character device |character device .* is not "
                              r"using a PTY|cannot translate keycode \d+ of \w+ codeset to qnum keycode|"
                              r"No graphics backend with index |no device found with alias |"
                              # libvirt's test driver's own words (pyvirt's test driver answers as it does)
                              r"Domain '.*' is already running|domain '.*' not (running|paused)|"
                              r"Not enough free space in pool for volume |network '.*' does not have a bridge|"
                              r"mismatched header magic|length of metadata out of range|"
                              r"Device is not a fibre channel HBA|Could not find parent device for |"
                              r"Parent device .* is not capable of vport operations)", re.S)


def check_reply(proc, err: libvirtError, findings: list[str]) -> None:
    msg = err.get_error_message()
    if LEAK.search(msg):
        findings.append(f"{proc.name}: leaks Python: {msg!r}")
    if err.get_error_code() == ErrorNumber.INTERNAL_ERROR and not LIBVIRT_INTERNAL.match(msg):
        findings.append(f"{proc.name}: INTERNAL_ERROR: {msg!r}")


async def drive(client: RPCClient, procs, doms: list[DomainRef], variants: int, findings: list[str],
                before=None, first_variant: int = 0) -> int:
    calls = 0
    for proc, n, dom in itertools.product(procs, range(first_variant, first_variant + variants), doms):
        if before is not None:
            await before()
        args = hostile(proc.args, n, dom)
        try:
            await asyncio.wait_for(client.call(Program.REMOTE, proc, args), 60)
        except libvirtError as err:
            check_reply(proc, err, findings)
        calls += 1
    return calls


async def open_client(port: int, uri: str) -> RPCClient:
    client = await RPCClient.connect_tcp("127.0.0.1", port)
    await client.call(Program.REMOTE, OPEN, (uri, 0))
    return client


def assert_serves(port: int) -> None:
    """A new client is served (the fuzzing may have renamed or undefined the test domain)."""
    async def check():
        client = await open_client(port, "qemu:///system")
        assert await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_GET_TYPE"], ()) == "QEMU"
        client.close()
    asyncio.run(check())


def test_test_driver_answers_hostile_arguments_with_real_errors(pyvirtd):
    procs = implemented(test_driver.TestConnection)
    assert len(procs) >= 25
    findings: list[str] = []

    async def run():
        client = await open_client(pyvirtd.tcp_port, "test:///default")
        test_dom = await client.call(Program.REMOTE, LOOKUP, ("test",))
        missing = DomainRef("no\nsuch", uuidlib.uuid4().bytes, 7)
        calls = await drive(client, procs, [test_dom, missing], 9, findings)
        client.close()
        return calls
    calls = asyncio.run(run())
    assert calls >= len(procs) * 18
    assert findings == []
    assert pyvirtd.alive
    assert_serves(pyvirtd.tcp_port)


def test_qemu_driver_answers_hostile_arguments_with_real_errors(pyvirtd, guests_built, tmp_path):
    """Against a defined domain, a missing one, then the same domain running (a
    real QEMU); the running pass leaves migration out, which could reach for
    the hostile strings as host names."""
    from guests import tiny_xml
    procs = [p for p in implemented(QemuConnection) if p.name not in STARTS_A_GUEST]
    assert len(procs) > 50
    running_procs = [p for p in procs if "MIGRATE" not in p.name]
    findings: list[str] = []
    xml = tiny_xml("victim", tmp_path / "victim.log", uuid=str(uuidlib.uuid4()))
    create, destroy = REMOTE.by_name["DOMAIN_CREATE"], REMOTE.by_name["DOMAIN_DESTROY"]
    resume = REMOTE.by_name["DOMAIN_RESUME"]

    async def run():
        client = await open_client(pyvirtd.tcp_port, "qemu:///system")
        defined = await client.call(Program.REMOTE, DEFINE, (xml,))

        async def redefine():      # what an earlier call undefined or renamed comes back
            await client.call(Program.REMOTE, DEFINE, (xml,))
        missing = DomainRef("gone", uuidlib.uuid4().bytes, -1)
        calls = await drive(client, procs, [defined, missing], 9, findings, before=redefine)

        async def running() -> None:   # what an earlier call stopped, paused or undefined comes back
            await redefine()
            dom = await client.call(Program.REMOTE, LOOKUP, ("victim",))
            state = (await client.call(Program.REMOTE, GET_STATE, (dom, 0)))[0]
            if state == 3:
                await client.call(Program.REMOTE, resume, (dom,))
            elif state != 1:
                if state != 5:
                    await client.call(Program.REMOTE, destroy, (dom,))
                await client.call(Program.REMOTE, create, (dom,))
            live[0] = await client.call(Program.REMOTE, LOOKUP, ("victim",))
        live = [defined]
        await running()
        for proc in running_procs:
            for n in range(9):
                await running()
                await drive(client, [proc], [live[0]], 1, findings, first_variant=n)
                calls += 1
        await client.call(Program.REMOTE, destroy, (live[0],))
        client.close()
        return calls
    calls = asyncio.run(run())
    assert calls >= len(procs) * 18 + len(running_procs) * 9
    assert findings == []
    assert pyvirtd.alive
    assert_serves(pyvirtd.tcp_port)
    log = pyvirtd.log_path.read_text()
    assert "Traceback" not in log, log[-4000:]


BAD_VALUES = [("<name>victim</name>", "<name>victim</name><uuid>not-a-uuid</uuid>"),
              ("<name>victim</name>", "<name>victim</name><uuid>00000000-0000-0000-0000-00000000000g</uuid>"),
              ("<memory unit='MiB'>128</memory>", "<memory unit='MiB'>-5</memory>"),
              ("<memory unit='MiB'>128</memory>", "<memory unit='PiB'>99999999999999999999</memory>"),
              ("<memory unit='MiB'>128</memory>", "<memory unit='parsecs'>1</memory>"),
              ("<vcpu>1</vcpu>", "<vcpu>0</vcpu>"),
              ("<vcpu>1</vcpu>", "<vcpu>99999999999999999999999</vcpu>"),
              ("<vcpu>1</vcpu>", "<vcpu>4294967296</vcpu>"),   # QEMU took it as 0: one vCPU
              ("<vcpu>1</vcpu>", "<vcpu>70000</vcpu>"),        # virDomainGetInfo could not encode it
              ("<vcpu>1</vcpu>", "<vcpu>1.5</vcpu>"),
              ("<target port='0'/>", "<target port='-1'/>"),
              ("<target port='0'/>", "<target port='4294967296'/>"),
              ("<target port='0'/>", "<target port='x\u0000'/>"),
              ("<domain type='qemu'>", "<domain type='qemu\u0001'>")]


@pytest.mark.parametrize("before,after", BAD_VALUES)
def test_bad_values_in_domain_xml_are_real_errors(pyvirtd, tmp_path, before, after):
    from guests import tiny_xml
    xml = tiny_xml("victim", tmp_path / "victim.log").replace(before, after)
    assert xml.count(after) == 1
    findings: list[str] = []

    async def run():
        client = await open_client(pyvirtd.tcp_port, "qemu:///system")
        for proc, args in ((DEFINE, (xml,)), (REMOTE.by_name["DOMAIN_CREATE_XML"], (xml, 0))):
            with pytest.raises(libvirtError) as info:
                await client.call(Program.REMOTE, proc, args)
            check_reply(proc, info.value, findings)
        client.close()
    asyncio.run(run())
    assert findings == []
    assert "Traceback" not in pyvirtd.log_path.read_text()


@pytest.mark.parametrize("uri", ["test:///default", "qemu:///system"])
def test_strings_that_are_not_utf8_are_invalid_arguments(pyvirtd, uri):
    """A name of raw bytes 0xff...: libvirt's strings are bytes, ours UTF-8; the
    client learns which argument is wrong, and the connection stays usable."""
    async def run():
        client = await open_client(pyvirtd.tcp_port, uri)
        payload = LOOKUP.encode_args(("\x01" * 4,)).replace(b"\x01" * 4, b"\xff\xfe\xfd\xfc")
        status, reply = await client.call_raw(Program.REMOTE, LOOKUP.number, payload)
        assert status == 1
        err = decode_error_payload(reply)
        assert err.get_error_code() == ErrorNumber.INVALID_ARG, err
        assert "virDomainLookupByName: a string argument is not valid UTF-8" in err.get_error_message()
        assert not LEAK.search(err.get_error_message())
        assert await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_GET_TYPE"], ()) is not None
        client.close()
    asyncio.run(run())
    assert_serves(pyvirtd.tcp_port)


# -- the mapping itself ----------------------------------------------------------------
@pytest.mark.parametrize("exc,code,words", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/srv/x.save"), ErrorNumber.SYSTEM_ERROR,
     "virDomainRestore: '/srv/x.save': No such file or directory"),
    (PermissionError(errno.EACCES, "Permission denied"), ErrorNumber.SYSTEM_ERROR,
     "virDomainRestore: Permission denied"),
    (OSError("AF_UNIX path too long"), ErrorNumber.SYSTEM_ERROR, "virDomainRestore: AF_UNIX path too long"),
    (ValueError("embedded null byte"), ErrorNumber.INVALID_ARG,
     "invalid argument: virDomainRestore: embedded null byte"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ErrorNumber.INVALID_ARG, "virDomainRestore: text is not valid UTF-8 (invalid start byte)"),
    (asyncio.TimeoutError(), ErrorNumber.OPERATION_TIMEOUT,
     "Timed out during operation: virDomainRestore: no answer in time"),
    (TimeoutError("QEMU did not answer"), ErrorNumber.OPERATION_TIMEOUT, "virDomainRestore: QEMU did not answer"),
    (NotImplementedError(), ErrorNumber.NO_SUPPORT, "virDomainRestore"),
    (KeyError("disk"), ErrorNumber.INTERNAL_ERROR, "internal error: virDomainRestore: 'disk'"),
    (AssertionError(), ErrorNumber.INTERNAL_ERROR, "virDomainRestore: no detail (see the daemon log)"),
])
def test_unexpected_exception_maps_to_a_libvirt_error(exc, code, words):
    err = as_libvirt_error(exc, "virDomainRestore")
    assert err.get_error_code() == code
    assert words in err.get_error_message()
    assert not LEAK.search(err.get_error_message()), err.get_error_message()


def test_dispatcher_boundary_logs_the_traceback_once(tmp_path, caplog):
    """A driver method that raises something other than libvirtError, before or
    after its first await: the client gets the mapped error, the log the traceback."""
    from pyvirt.daemon.dispatch import Dispatcher
    from pyvirt.driver import HypervisorConnection
    from pyvirt.rpc.server import RPCServer

    class Broken(HypervisorConnection):
        read_only = False

        def __init__(self) -> None:
            pass

        def domain_lookup_by_name(self, name):             # fails before any coroutine exists
            raise ValueError(f"cannot look up {name!r}")

        async def domain_lookup_by_id(self, ident):          # fails after waiting
            await asyncio.sleep(0)
            raise OSError(errno.EIO, "Input/output error", "/dev/sdz")

        async def connect_get_hostname(self):
            raise RuntimeError("the state went missing")

    async def open_broken(name, info):
        return Broken()

    async def run():
        server = RPCServer(Dispatcher(open_broken))
        sock = str(tmp_path / "sock")
        await server.listen_unix(sock)
        client = await RPCClient.connect_unix(sock)
        await client.call(Program.REMOTE, OPEN, ("broken:///", 0))
        answers = []
        for proc, args in ((LOOKUP, ("x",)), (REMOTE.by_name["DOMAIN_LOOKUP_BY_ID"], (3,)),
                           (REMOTE.by_name["CONNECT_GET_HOSTNAME"], ())):
            with pytest.raises(libvirtError) as info:
                await client.call(Program.REMOTE, proc, args)
            answers.append((info.value.get_error_code(), info.value.get_error_message()))
        client.close()
        await server.close()
        return answers

    with caplog.at_level(logging.ERROR, logger="pyvirt.daemon.dispatch"):
        answers = asyncio.run(run())
    assert answers == [
        (ErrorNumber.INVALID_ARG, "invalid argument: virDomainLookupByName: cannot look up 'x'"),
        (ErrorNumber.SYSTEM_ERROR, "virDomainLookupByID: '/dev/sdz': Input/output error"),
        (ErrorNumber.INTERNAL_ERROR, "internal error: virConnectGetHostname: the state went missing"),
    ]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 3
    assert {r.exc_info[0] for r in tracebacks} == {ValueError, OSError, RuntimeError}
