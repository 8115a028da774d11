"""The procedure tables: coverage of the wire doc, driver names, flags, and a
round trip of every args/ret struct with generated values."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyvirt.driver import DRIVER_METHODS, SECONDARY_METHODS
from pyvirt.refs import DomainRef
from pyvirt.enums import EventID
from pyvirt.rpc import xdr
from pyvirt.rpc.protocol import DAEMON_METHODS, KEEPALIVE, PROGRAMS, QEMU, REMOTE, Kind, Procedure
from pyvirt.rpc.protocol.remote import EVENT_CALLBACK_PROCEDURES
from pyvirt.rpc.stream import Direction
from pyvirt.rpc.wire import Program

# Driver methods the tables name that pyvirt.driver.DRIVER_METHODS does not list
# yet.  Each should move into DRIVER_METHODS when a driver implements it.
NOT_YET_DRIVER_METHODS: frozenset[str] = frozenset()

# Every procedure in libvirt-wire.md section 3, plus the extras the daemon needs.
DOC_PROCEDURES = {
    1, 2, 3, 4, 157, 59, 110, 7, 203, 6, 60, 66, 149, 122, 360, 361, 362, 273, 51, 37, 25, 21,
    22, 23, 24, 11, 350, 35, 231, 10, 9, 196, 12, 234, 34, 28, 33, 258, 27, 16, 212, 14, 19,
    150, 151, 15, 29, 183, 121, 426, 187, 163, 298, 164, 442, 207, 242, 166, 387, 364, 55, 232,
    54, 233, 440, 441, 182, 184, 235, 201, 105, 106, 167, 168, 316, 317, 107, 318, 359, 363,
    61, 62, 63, 108, 109, 148, 213, 214, 215, 216, 217, 218, 302, 303, 304, 305, 306, 307,
    67, 68, 69, 70,
}
EXTRA_PROCEDURES = {17, 200, 194, 64}
# Devices and tuning (attach/detach/update, memory, vCPUs).
DEVICE_PROCEDURES = {8, 13, 160, 161, 174, 392, 30, 31, 204, 32, 199}

# "prio H" in the doc (and @priority: high in remote_protocol.x).
HIGH_PRIORITY = {
    1, 2, 3, 4, 157, 59, 110, 203, 6, 60, 66, 67, 68, 69, 70, 149, 122, 273, 51, 37, 25, 21,
    22, 23, 24, 11, 350, 35, 231, 12, 234, 212, 19, 150, 151, 15, 29, 121, 187, 235, 236, 105, 106,
    167, 168, 316, 317, 360, 361, 17,
}

READ_ONLY_OK = {
    1, 2, 3, 4, 157, 59, 110, 7, 203, 6, 60, 66, 67, 68, 69, 70, 149, 122, 360, 361, 273, 51,
    37, 25, 21, 22, 23, 24, 16, 212, 14, 19, 150, 151, 15, 17, 200, 183, 121, 426, 187, 64, 194,
    163, 298, 242, 387, 299, 105, 106, 167, 168, 316, 317, 388,
    265,   # lifecycle and metadata
}
MUTATING = {
    11, 350, 35, 231, 10, 9, 196, 12, 234, 34, 28, 33, 258, 27, 29, 164, 442, 207, 166, 364, 300,
    55, 232, 440, 54, 233, 441, 182, 184, 235, 236, 389, 201, 61, 62, 63, 108, 109, 148,
    213, 214, 215, 216, 217, 218, 302, 303, 304, 305, 306, 307,
    245, 264,   # lifecycle and metadata
}

HIGH_PRIORITY |= {30}            # DOMAIN_SET_MAX_MEMORY
MUTATING |= DEVICE_PROCEDURES    # every one changes the guest or its definition
READ_ONLY_OK |= {20, 65, 159, 230, 243, 262, 263, 344, 293}   # statistics
HIGH_PRIORITY |= {293}           # NODE_GET_CPU_MAP
MUTATING |= {308}                # DOMAIN_SET_MEMORY_STATS_PERIOD
# host and capabilities; CONNECT_GET_DOMAIN_CAPABILITIES may run a binary the caller names
HIGH_PRIORITY |= {5, 101, 102, 227, 228}
READ_ONLY_OK |= {5, 101, 102, 227, 228, 312}
MUTATING |= {342}
MUTATING |= {211, 226, 343}      # console and graphics: screenshot, send key, open graphics fd
# storage pools and volumes: lists, lookups, info and XML read-only; the rest mutates
# (find-sources and download too: the daemon reads what the caller names)
_STORAGE_HIGH = {71, 72, 73, 74, 77, 80, 82, 84, 85, 86, 87, 88, 89, 90, 91, 92, 95, 96, 97, 98,
                 99, 100, 154, 155, 281, 282, 378, 391, 403}
HIGH_PRIORITY |= _STORAGE_HIGH
READ_ONLY_OK |= _STORAGE_HIGH - {77, 80, 82, 90}
MUTATING |= {75, 76, 77, 78, 79, 80, 81, 82, 83, 90, 93, 94, 125, 165, 208, 209, 259, 260}
# virtual networks: lists, lookups, XML, autostart, bridge name and leases read-only
_NETWORK_HIGH = {36, 38, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 52, 152, 153, 283, 291, 432}
HIGH_PRIORITY |= _NETWORK_HIGH
READ_ONLY_OK |= {36, 38, 43, 44, 45, 46, 47, 50, 52, 152, 153, 283, 341}
MUTATING |= {39, 40, 41, 42, 48, 49, 291, 432, 437}
# storage pool, network and node-device event registration (answered by the daemon, high priority)
HIGH_PRIORITY |= {313, 314, 368, 369, 374, 375}
READ_ONLY_OK |= {313, 314, 368, 369, 374, 375}
# domain snapshots: queries read-only (the XML with SECURE refused by its flag); create, revert, delete mutate
HIGH_PRIORITY |= {186, 188, 189, 244, 246, 247, 274, 275}
READ_ONLY_OK |= {186, 188, 189, 190, 191, 244, 246, 247, 271, 272, 274, 275}
MUTATING |= {185, 192, 193}
# domain checkpoints: as snapshots (GET_XML_DESC is not @priority: high in remote_protocol.x)
HIGH_PRIORITY |= {413, 414, 415, 416}
READ_ONLY_OK |= {412, 413, 414, 415, 416}
MUTATING |= {411, 417}
# block jobs: only the job's info is read-only
READ_ONLY_OK |= {238}
MUTATING |= {237, 239, 240, 266, 290, 345}
# scheduler parameters, max vCPUs, isUpdated: queries read-only, setters mutate
HIGH_PRIORITY |= {18, 202}
READ_ONLY_OK |= {18, 56, 57, 202, 223}
MUTATING |= {58, 219}
# node devices and host interfaces: lists, lookups and XML read-only; define/undefine/create/destroy mutate
HIGH_PRIORITY |= {111, 112, 113, 115, 116, 117, 126, 127, 128, 129, 131, 132, 134, 137, 138, 156, 284, 285}
READ_ONLY_OK |= {111, 112, 113, 114, 115, 116, 117, 126, 127, 128, 129, 130, 137, 138, 156, 284, 285}
MUTATING |= {131, 132, 133, 134}
# tuning: the parameter, pin-info, IOThread and perf queries and free pages read-only (free pages
# high priority); the setters, pinning, and the guest's time and hostname (asked of its agent) mutate
HIGH_PRIORITY |= {340}
READ_ONLY_OK |= {198, 206, 253, 255, 257, 280, 340, 351, 365}
MUTATING |= {26, 197, 205, 225, 252, 254, 256, 277, 279, 337, 338, 366}
# rename, guest agent calls, NMI, signals, lifecycle actions mutate (the agent's queries too, as
# libvirt refuses them read-only); control info (high priority) and interface addresses do not
HIGH_PRIORITY |= {229}
READ_ONLY_OK |= {229, 353}
MUTATING |= {210, 294, 295, 335, 336, 349, 357, 358, 390}
MUTATING |= {53, 334}             # core dumps write a file the caller names
MUTATING |= {220, 221, 222}       # host interface transactions
MUTATING |= {352, 355, 356, 402}  # IOThreads: pin, add, delete, poll parameters
MUTATING |= {123, 124}            # node devices created and destroyed
MUTATING |= {104}                 # memory peek (refused read-only, as libvirt)
# CPU baseline and compare of the host read-only (compare high priority); the hypervisor's, launch
# security and the starts that pass descriptors refused read-only, as libvirt's API does
HIGH_PRIORITY |= {158}
READ_ONLY_OK |= {158, 162}
MUTATING |= {309, 310, 393, 394, 396}

ALL = [(table, proc) for table in PROGRAMS.values() for proc in table]


def test_programs_are_indexed_by_number():
    assert set(PROGRAMS) == {Program.REMOTE, Program.QEMU, Program.KEEPALIVE}
    for table in PROGRAMS.values():
        numbers = [p.number for p in table]
        assert len(numbers) == len(set(numbers)) == len(table.by_number)
        names = [p.name for p in table]
        assert len(names) == len(set(names))
        for proc in table:
            assert table[proc.number] is proc and table.by_name[proc.name] is proc
    assert REMOTE.get(9999) is None and 9999 not in REMOTE


def test_duplicate_numbers_are_refused():
    from pyvirt.rpc.protocol import ProgramTable
    with pytest.raises(ValueError, match="duplicate"):
        ProgramTable(1, "X", [Procedure(1, "A", "a", None, None), Procedure(1, "B", "b", None, None)])


def test_doc_procedures_are_covered():
    assert DOC_PROCEDURES | EXTRA_PROCEDURES <= set(REMOTE.by_number)
    assert set(QEMU.by_number) == {1, 4, 5, 6}
    assert set(KEEPALIVE.by_number) == {1, 2}


def test_method_names_follow_the_procedure_names():
    for proc in REMOTE:
        assert proc.method == proc.name.lower()
    assert QEMU[1].method == "domain_qemu_monitor_command"
    assert REMOTE[212].method == "domain_get_state"
    assert REMOTE[273].method == "connect_list_all_domains"


def test_every_method_is_a_driver_or_daemon_method():
    for table, proc in ALL:
        if proc.kind is Kind.DRIVER:
            assert proc.method in set(DRIVER_METHODS) | SECONDARY_METHODS | NOT_YET_DRIVER_METHODS, proc
        elif proc.kind is Kind.DAEMON:
            assert proc.method in DAEMON_METHODS, proc
    used = {p.method for _, p in ALL if p.kind is Kind.DAEMON}
    assert used == DAEMON_METHODS


def test_priorities():
    for proc in REMOTE:
        if proc.kind is Kind.MESSAGE:
            continue
        assert proc.priority_high == (proc.number in HIGH_PRIORITY), proc
    assert QEMU[4].priority_high and not QEMU[1].priority_high


def test_read_only_rules():
    for number in READ_ONLY_OK:
        assert not REMOTE[number].mutates, REMOTE[number]
    for number in MUTATING:
        assert REMOTE[number].mutates, REMOTE[number]
    assert {p.number for p in REMOTE if p.kind is not Kind.MESSAGE} == READ_ONLY_OK | MUTATING
    assert QEMU[1].mutates
    assert not any(p.mutates for p in REMOTE if p.kind is Kind.MESSAGE)


def test_flag_dependent_read_only_refusal():
    dom = DomainRef("vm", bytes(16), 1)
    xml = REMOTE[14]
    assert not xml.refused_read_only((dom, 0)) and xml.refused_read_only((dom, 1))  # SECURE
    assert REMOTE[200].refused_read_only((dom, 8))  # VCPU_GUEST
    assert not REMOTE[200].refused_read_only((dom, 4))  # VCPU_MAXIMUM
    # DOMAIN_SAVE_IMAGE_GET_XML_DESC opens a caller-named file as root: refused whatever the flags
    assert REMOTE[235].refused_read_only(("f", 1)) and REMOTE[235].refused_read_only(("f", 0))
    assert REMOTE[12].refused_read_only((dom,)) and not REMOTE[16].refused_read_only((dom,))
    with pytest.raises(ValueError, match="flags"):
        Procedure(1, "X", "x", None, None, readonly_flags=1)


def test_streams():
    streams = {p.number: p.stream for p in REMOTE if p.stream is not None}
    assert streams == {148: Direction.UPLOAD, 215: Direction.UPLOAD, 304: Direction.UPLOAD,
                       201: Direction.BOTH, 211: Direction.DOWNLOAD,
                       208: Direction.UPLOAD, 209: Direction.DOWNLOAD}    # STORAGE_VOL_UPLOAD, _DOWNLOAD


def test_messages():
    messages = {p.number for p in REMOTE if p.kind is Kind.MESSAGE}
    assert {107, 318, 359, 362, 363} <= messages
    assert all(p.ret is None for p in REMOTE if p.kind is Kind.MESSAGE)
    assert set(EVENT_CALLBACK_PROCEDURES) == set(EventID)
    assert QEMU[6].kind is Kind.MESSAGE
    assert all(p.kind is Kind.MESSAGE for p in KEEPALIVE)


def test_layouts_from_the_doc():
    dom = DomainRef("vm", bytes(16), 1)
    # GET_INFO's ret is 32 bytes: uchar and ushort are 4 bytes each
    assert len(REMOTE[16].encode_ret((1, 1024, 512, 2, 5))) == 32
    # NODE_GET_INFO: char[32] = 128 bytes, then uh, then six ints
    assert len(REMOTE[6].encode_ret(("x86_64", 1, 2, 3, 4, 5, 6, 7))) == 128 + 8 + 24
    # non-params migration flags are 64-bit, params ones 32-bit
    assert dict(REMOTE[213].args.fields)["flags"] is xdr.UHyper
    assert dict(REMOTE[302].args.fields)["flags"] is xdr.UInt
    # QMP event message
    msg = (3, dom, "STOP", 1700000000, 5, None)
    assert QEMU[6].decode_args(QEMU[6].encode_args(msg)) == msg


def test_calling_convention():
    dom = DomainRef("vm", bytes(16), 1)
    get_state = REMOTE[212]
    assert get_state.decode_args(get_state.encode_args((dom, 0))) == (dom, 0)
    assert get_state.decode_ret(get_state.encode_ret((1, 5))) == (1, 5)
    hostname = REMOTE[59]
    assert hostname.decode_args(b"") == ()
    assert hostname.decode_ret(hostname.encode_ret("host")) == "host"
    close = REMOTE[2]
    assert close.encode_args(()) == b"" and close.encode_ret(None) == b""
    assert close.decode_ret(b"") is None


# --- round trip of every table entry ---------------------------------------------------


def _text(max_bytes: int, nul: bool = True) -> st.SearchStrategy[str]:
    alphabet = st.characters(blacklist_categories=("Cs",),
                             blacklist_characters="" if nul else "\0")
    return st.text(alphabet, max_size=min(max_bytes, 12)).filter(
        lambda s: len(s.encode()) <= max_bytes)


_SCALARS = {"i": (-2**31, 2**31 - 1), "I": (0, 2**32 - 1), "q": (-2**63, 2**63 - 1),
            "Q": (0, 2**64 - 1)}


def strategy_for(t: xdr.Type) -> st.SearchStrategy:
    if t is xdr.Bool:
        return st.booleans()
    if t is xdr.Double:
        return st.floats(allow_nan=False)
    if isinstance(t, xdr.Scalar):
        lo, hi = (t.lo, t.hi) if t.lo is not None else _SCALARS[t.fmt]
        return st.integers(lo, hi)
    if isinstance(t, xdr.CharString):
        return _text(t.max - 1, nul=False)
    if isinstance(t, xdr.CharArray):
        return st.binary(min_size=t.max, max_size=t.max) if t.fixed else st.binary(max_size=min(t.max, 12))
    if isinstance(t, xdr.String):
        return _text(t.max)
    if isinstance(t, xdr.Opaque):
        return st.binary(max_size=min(t.max, 40))
    if isinstance(t, xdr.FixedOpaque):
        return st.binary(min_size=t.size, max_size=t.size)
    if isinstance(t, xdr.Array):
        return st.lists(strategy_for(t.elem), max_size=min(t.max, 3))
    if isinstance(t, xdr.FixedArray):
        return st.lists(strategy_for(t.elem), min_size=t.size, max_size=t.size)
    if isinstance(t, xdr.Optional):
        return st.none() | strategy_for(t.elem)
    if isinstance(t, xdr.Union):
        return st.one_of(*[st.tuples(st.just(k), st.none() if arm is None else strategy_for(arm))
                           for k, arm in t.arms.items()])
    if t is xdr.TypedParam:
        return st.one_of(*[st.tuples(_text(79), st.just(k), strategy_for(arm))
                           for k, arm in t.value_type.arms.items()])
    if t is xdr.NonnullDomain:
        return st.builds(DomainRef, _text(40), st.binary(min_size=16, max_size=16),
                         st.integers(-2**31, 2**31 - 1))
    if isinstance(t, xdr.Struct) and t.cls is not None:   # the other handles (networks, pools...)
        return st.builds(t.cls, *[strategy_for(ft) for _, ft in t.fields])
    if isinstance(t, xdr.Struct):
        return st.tuples(*[strategy_for(ft) for _, ft in t.fields])
    raise AssertionError(f"no strategy for {t!r}")


@pytest.mark.parametrize("table, proc", ALL, ids=[f"{t.name}-{p.number}-{p.name}" for t, p in ALL])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_struct_roundtrips(table, proc, data):
    for struct in (proc.args, proc.ret):
        if struct is None:
            continue
        value = data.draw(strategy_for(struct), label=struct.name)
        encoded = struct.encode(value)
        back = struct.decode(encoded)
        assert back == value
        assert struct.encode(back) == encoded
    if proc.ret is not None:
        value = data.draw(strategy_for(proc.ret), label="ret")
        bare = value[0] if len(proc.ret.fields) == 1 else value
        assert proc.encode_ret(bare) == proc.ret.encode(value)
        assert proc.decode_ret(proc.encode_ret(bare)) == bare
    if proc.args is not None:
        value = data.draw(strategy_for(proc.args), label="args")
        assert proc.decode_args(proc.encode_args(value)) == value
