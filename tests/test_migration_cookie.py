"""pyvirt.drivers.qemu.migration.cookie: the migration cookie, as libvirt writes and reads it.

``tests/data/cookie/NAME.xml`` hold the XML text of one cookie each (the wire
form adds a NUL byte).  Each is built in code, compared with its file, then
parsed and formatted again to the same bytes.  ``PYVIRT_REGENERATE=1``
rewrites the files; review the diff before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyvirt import conf
from pyvirt.drivers.qemu.migration.cookie import (
    ALL_FLAGS, FEATURE_NAMES, MIGRATE_COOKIE_MAX, MIGRATION_CAPABILITIES, STATISTICS_KEYS, STEP_ACCEPTS,
    CookieBitmapDisk, CookieCpu, CookieFlags, CookieGraphics, CookieLockState, CookieNetInterface,
    MigrationCookie, cookie_capabilities, mandatory_names, parse_cookie)
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError
from pyvirt.drivers.qemu.migration.nbd_cookie import CookieNbd, NbdDisk

DATA = Path(__file__).resolve().parent / "data"
COOKIES = DATA / "cookie"
REGENERATE = os.environ.get("PYVIRT_REGENERATE") == "1"

NAME = "minimal"
UUID = "c7a5fdbd-edaf-9455-926a-d65c16db1809"
SENDER = "4a802f00-4cba-5df6-9679-a08c4c5b577f"     # the host that writes the cookie
LOCAL = "8b3f4dc4-6a8e-5f9b-94a5-4c35babd8d95"      # the host that reads it


def persistent_xml() -> str:
    return conf.parse((DATA / "domain" / "minimal.xml").read_text()).format(inactive=True)


# Every name libvirt writes in <statistics>, with distinct values.
ALL_STATS = {key: 1000 + i for i, key in enumerate(STATISTICS_KEYS)} | {
    "started": 1700000000123, "stopped": 1700000004567, "sent": 1700000004600, "delta": -37,
    "auto_converge_throttle": 20}

SPICE = CookieGraphics(type="spice", port=5900, listen="127.0.0.1")
SPICE_CERT = CookieGraphics(type="spice", port=5902, listen="192.0.2.10", tls_port=5903,
                            tls_subject="C=CZ,L=Brno,O=Test & Co,CN=host-a")
VNC = CookieGraphics(type="vnc", port=5901, listen="0.0.0.0")
LOCK = CookieLockState(driver="sanlock", leases="__LIBVIRT__DISKS__:9f7a3c:/var/lib/libvirt/sanlock/9f7a3c:0:4")
CAPS = [("xbzrle", False), ("auto-converge", False), ("postcopy-ram", False),
        ("pause-before-switchover", True), ("late-block-activate", False)]
NETWORK = [CookieNetInterface(0, "openvswitch", "a1b2-port & co"), CookieNetInterface(2, "midonet")]
CPU = CookieCpu(mode="custom", match="exact", check="full", model="Skylake-Client-IBRS", fallback="forbid",
                vendor="Intel", features=(("require", "ss"), ("require", "hypervisor"), ("disable", "mpx")))
BITMAPS = [CookieBitmapDisk("vda", (("nightly", "libvirt-vda-nightly"), ("weekly", "libvirt-vda-weekly"))),
           CookieBitmapDisk("vdb", (("b0", "libvirt-vdb-b0"),))]


def cookie(**parts) -> MigrationCookie:
    return MigrationCookie(name=NAME, uuid=UUID, hostname="host-a", hostuuid=SENDER, **parts)


GOLDEN = {
    "header-only": lambda: cookie(),
    "graphics-spice": lambda: cookie(graphics=SPICE),
    "graphics-spice-cert": lambda: cookie(graphics=SPICE_CERT),
    "graphics-vnc": lambda: cookie(graphics=VNC),
    "lockstate": lambda: cookie(mandatory=CookieFlags.LOCKSTATE, lockstate=LOCK),
    "persistent": lambda: cookie(mandatory=CookieFlags.PERSISTENT, persistent_xml=persistent_xml()),
    "statistics": lambda: cookie(statistics=dict(ALL_STATS)),
    "capabilities": lambda: cookie(capabilities=list(CAPS)),
    "network": lambda: cookie(network=list(NETWORK)),
    "cpu": lambda: cookie(cpu=CPU),
    "cpu-passthrough": lambda: cookie(cpu=CookieCpu(mode="host-passthrough", check="none", migratable="on")),
    "block-dirty-bitmaps": lambda: cookie(nbd=CookieNbd(disks=[NbdDisk("vda", 1 << 30)]),
                                          dirty_bitmaps=list(BITMAPS)),
    "allow-reboot": lambda: cookie(allow_reboot=False),
    "hotplug-features": lambda: cookie(mandatory=CookieFlags.LOCKSTATE | CookieFlags.MEMORY_HOTPLUG
                                       | CookieFlags.CPU_HOTPLUG),
    "full": lambda: cookie(
        mandatory=(CookieFlags.LOCKSTATE | CookieFlags.PERSISTENT | CookieFlags.MEMORY_HOTPLUG
                   | CookieFlags.CPU_HOTPLUG),
        graphics=SPICE_CERT, lockstate=LOCK, persistent_xml=persistent_xml(),
        network=list(NETWORK), nbd=CookieNbd(port=49153, disks=[NbdDisk("vda", 1 << 30)]),
        statistics=dict(ALL_STATS), cpu=CPU, allow_reboot=True, capabilities=list(CAPS),
        dirty_bitmaps=list(BITMAPS)),
}


def parse(data: bytes, *, accepted: CookieFlags = ALL_FLAGS, **kw) -> MigrationCookie | None:
    kw.setdefault("local_host_uuid", LOCAL)
    kw.setdefault("expect_name", NAME)
    kw.setdefault("expect_uuid", UUID)
    return parse_cookie(data, accepted=accepted, **kw)


def wire(xml: str) -> bytes:
    return xml.encode() + b"\0"


def header(extra: str = "", *, name: str = NAME, uuid: str = UUID, hostuuid: str = SENDER) -> str:
    return ("<qemu-migration>\n"
            f"  <name>{name}</name>\n"
            f"  <uuid>{uuid}</uuid>\n"
            "  <hostname>host-a</hostname>\n"
            f"  <hostuuid>{hostuuid}</hostuuid>\n"
            f"{extra}"
            "</qemu-migration>\n")


def fails(data: bytes, code: ErrorNumber, *needles: str, **kw) -> libvirtError:
    with pytest.raises(libvirtError) as info:
        parse(data, **kw)
    err = info.value
    assert (err.get_error_code(), err.get_error_domain()) == (code, ErrorDomain.QEMU), err
    for needle in needles:
        assert needle in err.get_error_message(), (needle, err.get_error_message())
    return err


# -- tables -------------------------------------------------------------------

def test_feature_table_covers_every_bit_in_libvirt_order():
    assert list(FEATURE_NAMES) == list(CookieFlags)
    assert [int(flag) for flag in CookieFlags] == [1 << i for i in range(12)]
    assert list(FEATURE_NAMES.values()) == [
        "graphics", "lockstate", "persistent", "network", "nbd", "statistics", "memory-hotplug",
        "cpu-hotplug", "cpu", "allowReboot", "capabilities", "block-dirty-bitmaps"]
    assert ALL_FLAGS == (1 << 12) - 1


def test_mandatory_names_in_bit_order():
    assert mandatory_names(CookieFlags(0)) == []
    assert mandatory_names(CookieFlags.CPU_HOTPLUG | CookieFlags.LOCKSTATE | CookieFlags.CAPS) == [
        "lockstate", "cpu-hotplug", "capabilities"]


# -- golden files -------------------------------------------------------------

def test_golden_files_match_the_cases():
    assert {p.stem for p in COOKIES.glob("*.xml")} == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden(name: str):
    path = COOKIES / f"{name}.xml"
    built = GOLDEN[name]()
    data = built.format()
    assert data.endswith(b"</qemu-migration>\n\0")
    text = data[:-1].decode()
    if REGENERATE:
        COOKIES.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    expected = path.read_text()
    assert text == expected, f"{path.name} differs; rerun with PYVIRT_REGENERATE=1 and review"
    parsed = parse(wire(expected))
    assert parsed == built
    assert parsed.format() == wire(expected)


def test_nul_terminator_is_present_and_counted():
    data = cookie().format()
    text = header()
    assert data == text.encode() + b"\0"
    assert len(data) == len(text.encode()) + 1
    assert data.count(b"\0") == 1 and data[-1] == 0


def test_header_layout_like_libvirt():
    text = GOLDEN["full"]().format().decode()
    lines = text.splitlines()
    assert lines[:9] == [
        "<qemu-migration>", f"  <name>{NAME}</name>", f"  <uuid>{UUID}</uuid>",
        "  <hostname>host-a</hostname>", f"  <hostuuid>{SENDER}</hostuuid>",
        "  <feature name='lockstate'/>", "  <feature name='persistent'/>",
        "  <feature name='memory-hotplug'/>", "  <feature name='cpu-hotplug'/>"]
    order = [text.index(f"  <{tag}") for tag in ("graphics", "lockstate", "domain", "statistics",
                                                  "capabilities")]
    assert order == sorted(order)


def test_graphics_attributes():
    assert "<graphics type='spice' port='5900' listen='127.0.0.1' tlsPort='-1'/>" in \
        cookie(graphics=SPICE).format().decode()
    assert "<graphics type='vnc' port='5901' listen='0.0.0.0'/>" in cookie(graphics=VNC).format().decode()
    text = cookie(graphics=SPICE_CERT).format().decode()
    assert ("  <graphics type='spice' port='5902' listen='192.0.2.10' tlsPort='5903'>\n"
            "    <cert info='subject' value='C=CZ,L=Brno,O=Test &amp; Co,CN=host-a'/>\n"
            "  </graphics>\n") in text


def test_statistics_written_in_libvirt_order_and_unknown_keys_dropped():
    stats = {"memory_total": 5, "started": 1, "data_total": 9, "time_elapsed": 3, "stopped": 2}
    text = cookie(statistics=stats).format().decode()
    assert ("  <statistics>\n    <started>1</started>\n    <stopped>2</stopped>\n"
            "    <time_elapsed>3</time_elapsed>\n    <memory_total>5</memory_total>\n"
            "  </statistics>\n") in text
    assert "data_total" not in text


def test_empty_capabilities_stay_open_like_libvirt():
    assert "  <capabilities>\n  </capabilities>\n" in cookie(capabilities=[]).format().decode()


def test_flags_are_derived_from_parts_and_separate_from_mandatory():
    assert cookie().flags == CookieFlags(0)
    full = GOLDEN["full"]()
    assert full.flags == ALL_FLAGS & ~(CookieFlags.MEMORY_HOTPLUG | CookieFlags.CPU_HOTPLUG)
    assert CookieFlags.MEMORY_HOTPLUG in full.mandatory and CookieFlags.MEMORY_HOTPLUG not in full.flags
    only_marked = cookie(mandatory=CookieFlags.LOCKSTATE)
    assert only_marked.flags == CookieFlags(0) and only_marked.lockstate is None


def test_parts_set_after_construction_are_written():
    c = cookie()
    c.mandatory = CookieFlags.PERSISTENT
    c.persistent_xml = persistent_xml()
    c.statistics = {"started": 1}
    assert c.flags == CookieFlags.PERSISTENT | CookieFlags.STATS
    assert parse(c.format()) == c


def test_persistent_definition_round_trips_through_conf():
    xml = persistent_xml()
    parsed = parse(cookie(mandatory=CookieFlags.PERSISTENT, persistent_xml=xml).format())
    assert parsed.persistent_xml == xml
    assert conf.parse(parsed.persistent_xml).format(inactive=True) == xml


def test_escaping_round_trips():
    c = MigrationCookie(name="a&b<'c'>", uuid=UUID, hostname='h"x', hostuuid=SENDER,
                        lockstate=CookieLockState(driver="lockd", leases="x<y>&'z'"))
    text = c.format().decode()
    assert "<name>a&amp;b&lt;&apos;c&apos;&gt;</name>" in text
    assert parse(c.format(), expect_name="a&b<'c'>") == c


def test_uuids_are_canonical():
    c = MigrationCookie(name=NAME, uuid=UUID.upper(), hostname="h", hostuuid=SENDER.upper())
    assert (c.uuid, c.hostuuid) == (UUID, SENDER)


# -- cookies as libvirt 9.0 sends them ----------------------------------------

def test_minimal_cookie_libvirt_accepts():
    """name, uuid, hostname, hostuuid and the NUL: what a real 9.0 PREPARE3 accepted."""
    data = cookie().format()
    assert data == wire(header())
    parsed = parse(data, accepted=CookieFlags.LOCKSTATE | CookieFlags.CPU | CookieFlags.CAPS)
    assert parsed == cookie()
    assert parsed.flags == CookieFlags(0) and parsed.mandatory == CookieFlags(0)


BEGIN = header("  <feature name='lockstate'/>\n"
               "  <cpu mode='custom' match='exact' check='partial'>\n"
               "    <model fallback='forbid'>qemu64</model>\n"
               "  </cpu>\n"
               "  <capabilities>\n"
               "    <cap name='xbzrle' auto='no'/>\n"
               "    <cap name='pause-before-switchover' auto='yes'/>\n"
               "  </capabilities>\n")


def test_libvirt_begin_cookie_lockstate_feature_without_element():
    parsed = parse(wire(BEGIN), accepted=CookieFlags.LOCKSTATE | CookieFlags.CPU | CookieFlags.CAPS)
    assert parsed.mandatory == CookieFlags.LOCKSTATE
    assert parsed.lockstate is None
    assert parsed.capabilities == [("xbzrle", False), ("pause-before-switchover", True)]
    assert parsed.cpu == CookieCpu(mode="custom", match="exact", check="partial", model="qemu64",
                                   fallback="forbid")
    assert parsed.flags == CookieFlags.CAPS | CookieFlags.CPU
    assert parsed.format() == wire(BEGIN)


def test_libvirt_begin_cookie_refused_without_lockstate():
    fails(wire(BEGIN), ErrorNumber.INTERNAL_ERROR, "Unsupported migration cookie feature lockstate",
          accepted=CookieFlags.CPU | CookieFlags.CAPS)


def test_every_part_libvirt_writes_is_read():
    text = header("  <graphics type='spice' port='5900' listen='127.0.0.1' tlsPort='-1'/>\n"
                  "  <network>\n"
                  "    <interface index='0' vporttype='openvswitch'>\n"
                  "      <portdata>abc</portdata>\n"
                  "    </interface>\n"
                  "  </network>\n"
                  "  <nbd port='49153'>\n"
                  "    <disk target='vda' capacity='10485760'/>\n"
                  "  </nbd>\n"
                  "  <allowReboot value='yes'/>\n"
                  "  <capabilities>\n"
                  "  </capabilities>\n"
                  "  <blockDirtyBitmaps>\n"
                  "    <disk target='vda'>\n"
                  "      <bitmap name='a' alias='libvirt-vda-a'/>\n"
                  "    </disk>\n"
                  "  </blockDirtyBitmaps>\n")
    parsed = parse(wire(text))
    assert parsed == cookie(graphics=SPICE, capabilities=[],
                            nbd=CookieNbd(49153, [NbdDisk("vda", 10485760)]),
                            network=[CookieNetInterface(0, "openvswitch", "abc")], allow_reboot=True,
                            dirty_bitmaps=[CookieBitmapDisk("vda", (("a", "libvirt-vda-a"),))])
    assert parsed.format() == wire(text)


def test_network_interfaces_read_by_position_when_unindexed():
    text = header("  <network>\n    <interface vporttype='802.1Qbh'/>\n"
                  "    <interface vporttype='openvswitch'><portdata/></interface>\n  </network>\n")
    assert parse(wire(text)).network == [CookieNetInterface(0, "802.1Qbh"), CookieNetInterface(1, "openvswitch", "")]


def test_empty_containers_are_left_out_like_libvirt():
    """libvirt writes no <network> without port data and no <blockDirtyBitmaps> without bitmaps."""
    c = cookie(network=[], dirty_bitmaps=[CookieBitmapDisk("vda", ())])
    assert c.format() == wire(header())


def test_capabilities_as_each_party_sends_them():
    qemu = ["events", "zero-copy-send", "xbzrle", "late-block-activate", "pause-before-switchover",
            "x-colo", "multifd", "return-path", "postcopy-ram"]
    assert cookie_capabilities(qemu, "source") == [
        ("xbzrle", False), ("postcopy-ram", False), ("pause-before-switchover", True),
        ("late-block-activate", False), ("multifd", False), ("return-path", False), ("zero-copy-send", False)]
    dest = dict(cookie_capabilities(qemu, "destination"))
    assert dest["late-block-activate"] and not dest["pause-before-switchover"]
    assert "events" not in dest and "x-colo" not in dest
    assert MIGRATION_CAPABILITIES[:4] == ("xbzrle", "auto-converge", "rdma-pin-all", "events")


def test_capabilities_read_leniently_like_libvirt():
    """An unknown name is kept (the reader ignores it), any auto but 'yes' is no."""
    text = header("  <capabilities>\n    <cap name='teleport' auto='yes'/>\n"
                  "    <cap name='xbzrle' auto='maybe'/>\n    <cap name='multifd'/>\n  </capabilities>\n")
    assert parse(wire(text)).capabilities == [("teleport", True), ("xbzrle", False), ("multifd", False)]


def test_step_accepts_are_libvirts():
    assert STEP_ACCEPTS["prepare"] == (CookieFlags.LOCKSTATE | CookieFlags.NBD | CookieFlags.MEMORY_HOTPLUG
                                       | CookieFlags.CPU_HOTPLUG | CookieFlags.CPU | CookieFlags.CAPS
                                       | CookieFlags.BLOCK_DIRTY_BITMAPS)
    assert STEP_ACCEPTS["finish"] == (CookieFlags.NETWORK | CookieFlags.STATS | CookieFlags.NBD
                                      | CookieFlags.PERSISTENT)
    assert STEP_ACCEPTS["confirm"] == CookieFlags.STATS
    # what pyvirt marks mandatory in each step is accepted by the next one on libvirt's side
    assert CookieFlags.LOCKSTATE & STEP_ACCEPTS["prepare"]       # Begin
    assert CookieFlags.PERSISTENT & STEP_ACCEPTS["finish"]       # Perform with --persistent


def test_hotplug_features_refused_where_libvirt_refuses_them():
    data = GOLDEN["hotplug-features"]().format()
    assert parse(data, accepted=STEP_ACCEPTS["prepare"]).mandatory == (
        CookieFlags.LOCKSTATE | CookieFlags.MEMORY_HOTPLUG | CookieFlags.CPU_HOTPLUG)
    fails(data, ErrorNumber.INTERNAL_ERROR, "Unsupported migration cookie feature lockstate",
          accepted=STEP_ACCEPTS["finish"])


def test_nbd_part_in_libvirts_format():
    """Begin's <nbd> lists disks and sizes, Prepare's names the port; both read back."""
    begin = cookie(nbd=CookieNbd(disks=[NbdDisk("vda", 1 << 30), NbdDisk("vdb", 512)]))
    assert ("  <nbd>\n    <disk target='vda' capacity='1073741824'/>\n"
            "    <disk target='vdb' capacity='512'/>\n  </nbd>\n") in begin.format().decode()
    reply = cookie(nbd=CookieNbd(port=49160))
    assert "  <nbd port='49160'/>\n" in reply.format().decode()
    assert parse(begin.format()).nbd == begin.nbd and parse(reply.format()).nbd == reply.nbd
    fails(wire(header("  <nbd port='x'/>\n")), ErrorNumber.INTERNAL_ERROR, "malformed nbd port 'x' in migration cookie")


def test_partial_statistics_from_libvirt():
    text = header("  <statistics>\n    <started>5</started>\n    <sent>7</sent>\n"
                  "    <unknown_future_stat>1</unknown_future_stat>\n  </statistics>\n")
    assert parse(wire(text)).statistics == {"started": 5, "sent": 7}


# -- errors -------------------------------------------------------------------

def test_empty_cookie_is_no_cookie():
    assert parse(b"") is None
    assert parse(b"", accepted=CookieFlags(0)) is None


def test_not_nul_terminated():
    fails(header().encode(), ErrorNumber.INTERNAL_ERROR, "Migration cookie was not NULL terminated")


def test_too_large():
    data = wire(header(" " * MIGRATE_COOKIE_MAX))
    fails(data, ErrorNumber.INTERNAL_ERROR, str(len(data)), str(MIGRATE_COOKIE_MAX))


def test_largest_cookie_allowed():
    base = wire(header())
    data = wire(header(" " * (MIGRATE_COOKIE_MAX - len(base))))
    assert len(data) == MIGRATE_COOKIE_MAX
    assert parse(data) == cookie()


def test_nul_inside():
    text = header()
    fails(text[:10].encode() + b"\0" + text[10:].encode() + b"\0", ErrorNumber.INTERNAL_ERROR,
          "NUL byte at offset 10")


@pytest.mark.parametrize("data, needle", [
    (b"\0", "(qemu_migration_cookie):1: Document is empty"),
    (b"not xml\0", "Start tag expected"),
    (b"<qemu-migration><name>x</name>\0", "(qemu_migration_cookie):1:"),
    (wire("<domain type='kvm'/>"), "expecting root element of 'qemu-migration', not 'domain'"),
])
def test_malformed_xml(data: bytes, needle: str):
    fails(data, ErrorNumber.INTERNAL_ERROR, "malformed migration cookie", needle)


@pytest.mark.parametrize("tag", ["name", "uuid", "hostname", "hostuuid"])
def test_missing_header_element(tag: str):
    text = "".join(line + "\n" for line in header().splitlines() if f"<{tag}>" not in line)
    fails(wire(text), ErrorNumber.INTERNAL_ERROR, f"missing {tag} element in migration data")


def test_malformed_uuids():
    fails(wire(header(hostuuid="not-a-uuid")), ErrorNumber.INTERNAL_ERROR,
          "malformed hostuuid element in migration data")
    fails(wire(header(uuid="1234")), ErrorNumber.INTERNAL_ERROR, "malformed uuid element '1234'")


def test_unexpected_name():
    err = fails(wire(header(name="other")), ErrorNumber.INTERNAL_ERROR,
                "Incoming cookie data had unexpected name other vs minimal")
    assert err.get_error_message().startswith("internal error: ")
    assert parse(wire(header(name="other")), expect_name=None).name == "other"


def test_unexpected_uuid():
    other = "11111111-2222-3333-4444-555555555555"
    fails(wire(header(uuid=other)), ErrorNumber.INTERNAL_ERROR,
          f"Incoming cookie data had unexpected UUID {other} vs {UUID}")
    assert parse(wire(header(uuid=other)), expect_uuid=None).uuid == other
    assert parse(wire(header(uuid=UUID.upper()))).uuid == UUID   # compared as UUIDs


def test_same_host_refused_as_libvirt():
    """libvirt's words and code; only the host UUID counts, never the hostname."""
    err = fails(wire(header(hostuuid=LOCAL.upper())), ErrorNumber.INTERNAL_ERROR,
                f"Attempt to migrate guest to the same host {LOCAL.upper()}")
    assert err.get_error_message() == f"internal error: Attempt to migrate guest to the same host {LOCAL.upper()}"
    assert parse(wire(header(hostuuid=LOCAL)), check_same_host=False).hostuuid == LOCAL
    same_name = header().replace("<hostname>host-a</hostname>", "<hostname>reader</hostname>")
    assert parse(wire(same_name)).hostname == "reader"


def test_unknown_feature():
    fails(wire(header("  <feature name='teleport'/>\n")), ErrorNumber.INTERNAL_ERROR,
          "Unknown migration cookie feature teleport")


def test_unsupported_feature():
    """persistent at Prepare3, as libvirt refuses it."""
    data = GOLDEN["persistent"]().format()
    fails(data, ErrorNumber.INTERNAL_ERROR, "Unsupported migration cookie feature persistent",
          accepted=CookieFlags.LOCKSTATE | CookieFlags.CPU | CookieFlags.CAPS)


def test_feature_without_name():
    fails(wire(header("  <feature/>\n")), ErrorNumber.INTERNAL_ERROR, "missing feature name")


def test_parts_not_accepted_are_not_read():
    broken = header("  <graphics type='bogus'/>\n  <lockstate/>\n  <domain/>\n  <domain/>\n"
                    "  <statistics><started>x</started></statistics>\n"
                    "  <capabilities><cap/></capabilities>\n")
    parsed = parse(wire(broken), accepted=CookieFlags(0))
    assert parsed == cookie() and parsed.flags == CookieFlags(0)
    full = parse(GOLDEN["full"]().format(), accepted=CookieFlags.LOCKSTATE | CookieFlags.PERSISTENT
                 | CookieFlags.MEMORY_HOTPLUG | CookieFlags.CPU_HOTPLUG)
    assert full.flags == CookieFlags.LOCKSTATE | CookieFlags.PERSISTENT
    assert full.graphics is None and full.statistics is None and full.capabilities is None


@pytest.mark.parametrize("part, needle", [
    ("<graphics port='1' listen='x'/>", "missing type attribute"),
    ("<graphics type='teleport' port='1' listen='x'/>", "unknown graphics type teleport"),
    ("<graphics type='spice' listen='x' tlsPort='-1'/>", "missing port attribute"),
    ("<graphics type='spice' port='1' listen='x'/>", "missing tlsPort attribute"),
    ("<graphics type='spice' port='1' tlsPort='2'/>", "missing listen attribute"),
    ("<graphics type='vnc' port='59x' listen='x'/>", "malformed graphics port '59x'"),
    ("<lockstate><leases>x</leases></lockstate>", "Missing lock driver name in migration cookie"),
    ("<domain type='kvm'><name>a</name></domain><domain type='kvm'><name>b</name></domain>",
     "Too many domain elements in migration cookie"),
    ("<domain type='kvm'/>", "empty <domain> element"),
    ("<statistics><memory_total>-1</memory_total></statistics>", "malformed statistic <memory_total> '-1'"),
    ("<statistics><started>soon</started></statistics>", "malformed statistic <started> 'soon'"),
    ("<capabilities><cap auto='yes'/></capabilities>", "missing migration capability name"),
    ("<network><interface index='0'/></network>", "missing vporttype attribute in migration data"),
    ("<blockDirtyBitmaps><disk><bitmap name='a' alias='b'/></disk></blockDirtyBitmaps>",
     "malformed <blockDirtyBitmaps> in migration cookie"),
    ("<blockDirtyBitmaps><disk target='vda'><bitmap name='a'/></disk></blockDirtyBitmaps>",
     "malformed <blockDirtyBitmaps> in migration cookie"),
    ("<allowReboot value='perhaps'/>", "invalid allowReboot value 'perhaps'"),
    ("<cpu mode='custom'><feature policy='require'/></cpu>", "Invalid CPU feature name"),
])
def test_malformed_parts(part: str, needle: str):
    fails(wire(header(f"  {part}\n")), ErrorNumber.INTERNAL_ERROR, needle)


def test_vnc_reads_without_tls_port():
    parsed = parse(wire(header("  <graphics type='vnc' port='5901' listen='0.0.0.0'/>\n")))
    assert parsed.graphics == VNC and parsed.graphics.tls_port == -1


# -- construction checks ------------------------------------------------------

@pytest.mark.parametrize("kwargs, needle", [
    (dict(name=""), "missing name"),
    (dict(hostname=""), "missing hostname"),
    (dict(uuid="nope"), "malformed uuid element 'nope'"),
    (dict(hostuuid="nope"), "malformed hostuuid element 'nope'"),
    (dict(mandatory=1 << 12), "unknown migration cookie feature bits 0x1000"),
    (dict(persistent_xml="<?xml version='1.0'?><domain/>"), "must be a <domain> document"),
    (dict(statistics={"memory_total": -1}), "statistic memory_total=-1"),
    (dict(statistics={"started": "1"}), "statistic started='1'"),
])
def test_invalid_cookie_refused(kwargs, needle):
    fields = dict(name=NAME, uuid=UUID, hostname="h", hostuuid=SENDER) | kwargs
    with pytest.raises(libvirtError) as info:
        MigrationCookie(**fields)
    assert info.value.get_error_code() == ErrorNumber.INTERNAL_ERROR
    assert needle in info.value.get_error_message()


def test_invalid_part_set_later_refused_at_format():
    c = cookie()
    c.statistics = {"delta": 2**63}
    with pytest.raises(libvirtError, match="statistic delta"):
        c.format()


def test_unknown_graphics_type_refused():
    with pytest.raises(libvirtError, match="unknown graphics type teleport"):
        CookieGraphics(type="teleport", port=1, listen="x")


# -- what Prepare does with the source's <cpu> -----------------------------------

def test_prepare_starts_with_the_cookies_cpu():
    from pyvirt.drivers.qemu.migration.destination import _take_cookie_cpu
    d = conf.parse((DATA / "domain" / "minimal.xml").read_text())
    _take_cookie_cpu(d, CookieCpu(model="qemu64", match="exact", check="full", fallback="forbid",
                                  features=(("require", "lahf_lm"), ("disable", "svm"))))
    assert (d.cpu.mode, d.cpu.model, d.cpu.check) == ("custom", "qemu64", "full")
    assert d.cpu.features == [("require", "lahf_lm"), ("disable", "svm")]
    before = d.cpu
    _take_cookie_cpu(d, CPU)                   # names a vendor: -cpu cannot take it, the XML's CPU stays
    assert d.cpu is before
    with pytest.raises(libvirtError, match="CPU feature policy"):
        _take_cookie_cpu(d, CookieCpu(model="qemu64", features=(("sometimes", "svm"),)))
