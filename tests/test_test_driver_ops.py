"""The test driver's device, job, send-key, screenshot and balloon calls beyond the
differential walk (tests/test_test_driver_ops_diff.py): the flag rules, the order of
live and persistent changes, the events, and the checks of every argument."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

import pyvirt
from pyvirt.driver import ConnectionInfo
from pyvirt.drivers.test import driver as test_driver
from pyvirt.drivers.test import screenimage
from pyvirt.enums import EventID
from pyvirt.enums_more import DriverFeature

LIVE, CONFIG = pyvirt.VIR_DOMAIN_AFFECT_LIVE, pyvirt.VIR_DOMAIN_AFFECT_CONFIG
INACTIVE = pyvirt.VIR_DOMAIN_XML_INACTIVE
VDB = ("<disk type='file' device='disk'><source file='/guest/b.img'/><target dev='vdb' bus='virtio'/>"
       "<alias name='ua-b'/></disk>")
OFF_XML = """<domain type='test'>
  <name>off</name>
  <memory>65536</memory>
  <os><type>hvm</type></os>
  <devices><memballoon model='virtio'/></devices>
</domain>"""
TRANSIENT_XML = OFF_XML.replace("<name>off</name>", "<name>transient</name>")


@pytest.fixture(autouse=True)
def fresh_host():
    test_driver.reset_default_host()
    yield
    test_driver.reset_default_host()


@pytest.fixture
def conn():
    return pyvirt.open("test:///default")


def _error(call, *args):
    with pytest.raises(pyvirt.libvirtError) as info:
        call(*args)
    return info.value.get_error_code(), info.value.get_error_message()


def _targets(dom, flags=0):
    from xml.etree import ElementTree as ET
    return [t.get("dev") for t in ET.fromstring(dom.XMLDesc(flags)).findall("./devices/disk/target")]


def _events(conn) -> list:
    got: list = []
    host = test_driver.default_host()
    host.events.subscribe(lambda ev: got.append((EventID(ev.event_id).name, ev.dom.name, ev.detail))
                          if ev.event_id != EventID.LIFECYCLE else None)
    return got


# -- attach, detach, update ------------------------------------------------------------------------
def test_attach_follows_libvirts_flag_rules(conn):
    dom = conn.lookupByName("test")
    dom.attachDevice(VDB)                              # no flags: the running guest only
    assert _targets(dom) == ["vda", "vdb"] and _targets(dom, INACTIVE) == ["vda"]
    dom.detachDeviceFlags(VDB, 0)                      # CURRENT on a running guest: live
    assert _targets(dom) == ["vda"]
    dom.attachDeviceFlags(VDB, CONFIG)
    assert _targets(dom) == ["vda"] and _targets(dom, INACTIVE) == ["vda", "vdb"]
    dom.detachDeviceFlags(VDB, CONFIG)
    dom.attachDeviceFlags(VDB, LIVE | CONFIG)
    assert _targets(dom) == _targets(dom, INACTIVE) == ["vda", "vdb"]

    off = conn.defineXML(OFF_XML)
    assert _error(off.attachDevice, VDB) == (pyvirt.VIR_ERR_OPERATION_INVALID,
                                             "Requested operation is not valid: domain is not running")
    off.attachDeviceFlags(VDB, 0)                      # CURRENT on a shut-off domain: its definition
    assert _targets(off, INACTIVE) == ["vdb"]
    off.create()
    assert _targets(off) == ["vdb"]                    # and it boots with it

    transient = conn.createXML(TRANSIENT_XML, 0)
    assert _error(transient.attachDeviceFlags, VDB, CONFIG) == (
        pyvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: transient domains do not have any "
                                          "persistent config")
    assert _error(dom.attachDeviceFlags, VDB, 8) == (
        pyvirt.VIR_ERR_INVALID_ARG, "unsupported flags (0x8) in function testDomainAttachDeviceFlags")


def test_a_refused_live_change_leaves_the_persistent_definition_alone(conn):
    dom = conn.lookupByName("test")
    dom.attachDevice(VDB)                              # live only
    code, message = _error(dom.attachDeviceFlags, VDB, LIVE | CONFIG)
    assert code == pyvirt.VIR_ERR_OPERATION_INVALID and message.endswith("target vdb already exists")
    assert _targets(dom, INACTIVE) == ["vda"]          # the persistent half was not kept


def test_detach_errors(conn):
    dom = conn.lookupByName("test")
    assert _error(dom.detachDeviceFlags, VDB, LIVE) == (pyvirt.VIR_ERR_DEVICE_MISSING,
                                                        "device not found: disk vdb not found")
    assert _error(dom.detachDeviceFlags, VDB, CONFIG) == (pyvirt.VIR_ERR_DEVICE_MISSING,
                                                          "device not found: no target device vdb")
    nic = "<interface type='network'><mac address='52:54:00:00:00:99'/><source network='default'/></interface>"
    code, message = _error(dom.detachDevice, nic)
    assert code == pyvirt.VIR_ERR_DEVICE_MISSING and "52:54:00:00:00:99" in message
    # a controller a disk still sits on stays
    dom.attachDevice("<controller type='scsi' index='0' model='virtio-scsi'/>")
    dom.attachDevice("<disk type='file' device='disk'><source file='/s.img'/><target dev='sda' bus='scsi'/></disk>")
    assert _error(dom.detachDevice, "<controller type='scsi' index='0'/>") == (
        pyvirt.VIR_ERR_OPERATION_FAILED, "operation failed: device cannot be detached: device is busy")
    assert _error(dom.attachDevice, "<watchdog model='i6300esb'/>") == (
        pyvirt.VIR_ERR_OPERATION_UNSUPPORTED, "Operation not supported: live attach of device 'watchdog' is not "
                                              "supported")


def test_interface_without_mac_gets_one(conn):
    dom = conn.lookupByName("test")
    dom.attachDeviceFlags("<interface type='network'><source network='default'/></interface>", CONFIG)
    from xml.etree import ElementTree as ET
    macs = [m.get("address") for m in ET.fromstring(dom.XMLDesc(INACTIVE)).findall("./devices/interface/mac")]
    assert len(macs) == 2 and macs[1].startswith("52:54:00:")


def test_update_changes_only_what_may_change(conn):
    dom = conn.lookupByName("test")
    cdrom = ("<disk type='file' device='cdrom'><source file='/a.iso'/><target dev='hdc' bus='ide'/>"
             "<readonly/></disk>")
    dom.attachDeviceFlags(cdrom, LIVE | CONFIG)
    dom.updateDeviceFlags(cdrom.replace("/a.iso", "/b.iso"), LIVE | pyvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE)
    assert "/b.iso" in dom.XMLDesc(0) and "/a.iso" in dom.XMLDesc(INACTIVE)
    other = "<disk type='file' device='disk'><source file='/other.img'/><target dev='vda' bus='virtio'/></disk>"
    assert _error(dom.updateDeviceFlags, other, LIVE) == (
        pyvirt.VIR_ERR_CONFIG_UNSUPPORTED, "unsupported configuration: disk source can be changed only in "
                                           "removable media")
    dom.updateDeviceFlags(other, CONFIG)               # the persistent definition takes any change
    assert "/other.img" in dom.XMLDesc(INACTIVE) and "/guest/diskimage1" in dom.XMLDesc(0)
    missing = other.replace("vda", "vdz")
    assert _error(dom.updateDeviceFlags, missing, CONFIG) == (pyvirt.VIR_ERR_INVALID_ARG,
                                                              "invalid argument: target vdz doesn't exist.")
    assert _error(dom.updateDeviceFlags, missing, LIVE) == (pyvirt.VIR_ERR_INTERNAL_ERROR,
                                                            "internal error: disk 'vdz' not found")
    code, _ = _error(dom.updateDeviceFlags, "<controller type='usb' index='0'/>", LIVE)
    assert code == pyvirt.VIR_ERR_OPERATION_UNSUPPORTED


def test_detach_by_alias_and_the_device_events(conn):
    got = _events(conn)
    dom = conn.lookupByName("test")
    dom.attachDeviceFlags(VDB, LIVE | CONFIG)
    dom.attachDevice(VDB.replace("vdb", "vdc").replace("ua-b", "ua-c").replace("b.img", "c.img"))
    dom.attachDevice("<disk type='file' device='disk'><source file='/d.img'/><target dev='vdd' bus='virtio'/></disk>")
    dom.detachDeviceAlias("ua-b", LIVE | CONFIG)
    assert _targets(dom) == ["vda", "vdc", "vdd"] and _targets(dom, INACTIVE) == ["vda"]
    dom.detachDeviceAlias("ua-c", 0)
    dom.detachDevice("<disk type='file' device='disk'><target dev='vdd' bus='virtio'/></disk>")
    assert _error(dom.detachDeviceAlias, "ua-nope", LIVE) == (pyvirt.VIR_ERR_DEVICE_MISSING,
                                                              "device not found: no device found with alias ua-nope")
    # a device without an alias (the test host assigns none) is told of by no event
    assert got == [("DEVICE_ADDED", "test", ("ua-b",)), ("DEVICE_ADDED", "test", ("ua-c",)),
                   ("DEVICE_REMOVED", "test", ("ua-b",)), ("DEVICE_REMOVED", "test", ("ua-c",))]


# -- the balloon, send-key, the screenshot -----------------------------------------------------------
def test_memory_stats_period(conn):
    dom = conn.lookupByName("test")
    dom.setMemoryStatsPeriod(7, 0)
    assert "<stats period='7'/>" in dom.XMLDesc(0) and "<stats" not in dom.XMLDesc(INACTIVE)
    dom.setMemoryStatsPeriod(3, CONFIG)
    assert "<stats period='3'/>" in dom.XMLDesc(INACTIVE)
    dom.setMemoryStatsPeriod(0, LIVE)
    assert "<stats" not in dom.XMLDesc(0)
    code, message = _error(dom.setMemoryStatsPeriod, 1, LIVE | CONFIG)
    assert code == pyvirt.VIR_ERR_INVALID_ARG and message == ("Flags 'VIR_DOMAIN_AFFECT_LIVE' and "
                                                              "'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive")
    assert _error(dom.setMemoryStatsPeriod, -2, 0) == (
        pyvirt.VIR_ERR_INVALID_ARG, "period in virDomainSetMemoryStatsPeriod must be zero or greater")
    none = conn.defineXML(OFF_XML.replace("model='virtio'", "model='none'"))
    assert _error(none.setMemoryStatsPeriod, 1, 0) == (
        pyvirt.VIR_ERR_INTERNAL_ERROR, "internal error: No memory balloon device configured, can not set the "
                                       "collection period")


def test_send_key_checks(conn):
    dom = conn.lookupByName("test")
    assert dom.sendKey(pyvirt.VIR_KEYCODE_SET_QNUM, 10, [0x1e, 0x9d], 2, 0) == 0
    assert _error(dom.sendKey, pyvirt.VIR_KEYCODE_SET_OSX, 0, [0x1000], 1, 0) == (
        pyvirt.VIR_ERR_INTERNAL_ERROR, "internal error: invalid keycode 4096 of os_x codeset")
    assert _error(dom.sendKey, pyvirt.VIR_KEYCODE_SET_LINUX, 0, [30] * 17, 17, 0) == (
        pyvirt.VIR_ERR_INVALID_ARG, "nkeycodes must be <= 16")
    assert _error(dom.sendKey, pyvirt.VIR_KEYCODE_SET_LINUX, 0, [], 0, 0) == (
        pyvirt.VIR_ERR_INVALID_ARG, "nkeycodes in virDomainSendKey must be greater than zero")
    dom.destroy()
    assert _error(dom.sendKey, pyvirt.VIR_KEYCODE_SET_LINUX, 0, [30], 1, 0)[0] == pyvirt.VIR_ERR_OPERATION_INVALID


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 0) and b"IEND" in chunks
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_screenshot_streams_one_valid_picture_whatever_the_domain(conn):
    dom = conn.lookupByName("test")
    stream = conn.newStream(0)
    assert dom.screenshot(stream, 0, 0) == "image/png"
    data = b""
    while chunk := stream.recv(65536):
        data += chunk
    stream.finish()
    assert data == screenimage.png()
    width, height, rows = _png_pixels(data)
    assert (width, height) == (1120, 832) and len(rows) == height * (width + 1)
    dom.destroy()                    # libvirt's test driver streams it for a shut-off domain too
    stream = conn.newStream(0)
    assert dom.screenshot(stream, 5, 0) == "image/png"
    assert stream.recv(8) == b"\x89PNG\r\n\x1a\n"
    stream.abort()


# -- jobs, migration, block jobs ---------------------------------------------------------------------
def test_jobs_say_no_job_runs(conn):
    dom = conn.lookupByName("test")
    assert dom.jobInfo() == [pyvirt.VIR_DOMAIN_JOB_NONE] + [0] * 11
    assert dom.jobStats(0) == {"type": pyvirt.VIR_DOMAIN_JOB_NONE}
    assert _error(dom.abortJob) == (pyvirt.VIR_ERR_OPERATION_INVALID,
                                    "Requested operation is not valid: no job is active on the domain")
    assert _error(dom.jobStats, 4)[0] == pyvirt.VIR_ERR_INVALID_ARG
    drv = test_driver.TestConnection(ConnectionInfo("test:///default"), test_driver.default_host())
    ref = dom._ref
    with pytest.raises(pyvirt.libvirtError, match="current job is not outgoing migration in post-copy mode"):
        asyncio.run(drv.domain_abort_job_flags(ref, pyvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY))
    dom.destroy()
    assert dom.jobStats(pyvirt.VIR_DOMAIN_JOB_STATS_COMPLETED) == {"type": pyvirt.VIR_DOMAIN_JOB_NONE}
    assert _error(dom.jobInfo) == (pyvirt.VIR_ERR_OPERATION_INVALID,
                                   "Requested operation is not valid: domain is not running")


def test_migration_and_block_jobs_are_not_supported_as_in_libvirt():
    drv = test_driver.TestConnection(ConnectionInfo("test:///default"), test_driver.default_host())
    for feature in (DriverFeature.MIGRATION_V2, DriverFeature.MIGRATION_V3, DriverFeature.MIGRATION_P2P,
                    DriverFeature.MIGRATION_PARAMS, DriverFeature.MIGRATION_DIRECT, DriverFeature.MIGRATION_OFFLINE):
        assert asyncio.run(drv.connect_supports_feature(int(feature))) == 0
    dom = asyncio.run(drv.domain_lookup_by_name("test"))
    for call in (lambda: drv.domain_migrate_begin3_params(dom, [], 0),
                 lambda: drv.domain_migrate_perform3_params(dom, None, [], b"", 0),
                 lambda: drv.domain_get_block_job_info(dom, "vda", 0),
                 lambda: drv.domain_block_pull(dom, "vda", 0, 0)):
        with pytest.raises(pyvirt.libvirtError) as info:
            asyncio.run(call())
        assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_SUPPORT


def test_read_only_connection_refuses_the_changes():
    conn = pyvirt.openReadOnly("test:///default")
    dom = conn.lookupByName("test")
    assert dom.jobInfo()[0] == pyvirt.VIR_DOMAIN_JOB_NONE
    for call in (lambda: dom.attachDevice(VDB), lambda: dom.setMemoryStatsPeriod(1, 0),
                 lambda: dom.sendKey(0, 0, [30], 1, 0), lambda: dom.abortJob()):
        assert _error(call)[0] == pyvirt.VIR_ERR_OPERATION_DENIED


# -- stock virsh on pyvirtd's test driver ------------------------------------------------------------
SAME_AS_LIBVIRT = [
    "send-key test KEY_A KEY_B", "send-key test 3000", "send-key --codeset xt test 999",
    "dommemstat --period 5 test", "dommemstat --period 5 --config test",
    # each virsh run on test:///default has a fresh host of its own: the check of a change runs with it
    "dommemstat --period 5 test; dumpxml test", "dommemstat --period 5 --config test; dumpxml --inactive test",
    "blockjob test vda", "blockjob test vda --abort", "blockpull test vda", "blockcommit test vda",
    "blockcopy test vda /guest/copy.img", "migrate-getspeed test", "migrate-setspeed test 10",
    "screenshot test shot.png",       # (virsh migrate on libvirt's in-process test driver can hang: the walk has it)
]


def _virsh(uri: str, command: str, cwd) -> tuple[str, str, int]:
    import subprocess
    out = subprocess.run(["virsh", "-c", uri, command], capture_output=True, text=True, timeout=60,
                         cwd=cwd, stdin=subprocess.DEVNULL)
    return out.stdout, out.stderr, out.returncode


def test_stock_virsh_on_pyvirtd(tmp_path):
    import shutil

    from daemons import Pyvirtd
    if shutil.which("virsh") is None:
        pytest.skip("stock virsh is not installed")
    (tmp_path / "libvirt").mkdir()
    (tmp_path / "pyvirtd").mkdir()
    want = {c: _virsh("test:///default", c, tmp_path / "libvirt") for c in SAME_AS_LIBVIRT}
    daemon = Pyvirtd(tmp_path / "daemon")
    daemon.start()
    try:
        uri = daemon.test_uri
        got = {c: _virsh(uri, c, tmp_path / "pyvirtd") for c in SAME_AS_LIBVIRT}
        # where libvirt 9.0's test driver says "not supported", pyvirtd's applies the change
        attach = _virsh(uri, "attach-disk test /guest/x.img vdb --targetbus virtio", tmp_path)
        listed = _virsh(uri, "domblklist test", tmp_path)
        jobinfo = _virsh(uri, "domjobinfo test", tmp_path)
        jobabort = _virsh(uri, "domjobabort test", tmp_path)
        detach = _virsh(uri, "detach-disk test vdb", tmp_path)
        after = _virsh(uri, "domblklist test", tmp_path)
    finally:
        daemon.stop()
    differ = {c: (want[c], got[c]) for c in SAME_AS_LIBVIRT if got[c] != want[c]}
    assert not differ, "\n".join(f"$ virsh {c}\n  libvirt: {w!r}\n  pyvirtd: {h!r}" for c, (w, h) in differ.items())
    assert want["screenshot test shot.png"][0].startswith("Screenshot saved to shot.png, with type of image/png")
    assert (tmp_path / "pyvirtd" / "shot.png").read_bytes() == screenimage.png()
    assert attach == ("Disk attached successfully\n\n", "", 0)
    assert "vdb      /guest/x.img" in listed[0]
    assert jobinfo[2] == 0 and jobinfo[0].startswith("Job type:         None")
    assert jobabort == ("\n", "error: Requested operation is not valid: no job is active on the domain\n", 1)
    assert detach == ("Disk detached successfully\n\n", "", 0)
    assert "vdb" not in after[0]


def test_live_nic_update_keeps_what_libvirt_keeps(conn):
    dom = conn.lookupByName("test")
    nic = ("<interface type='network'><mac address='aa:bb:cc:dd:ee:ff'/><source network='default'/>"
           "<link state='down'/></interface>")
    dom.updateDeviceFlags(nic, LIVE)
    live = dom.XMLDesc(0)
    assert "<link state='down'/>" in live and "<target dev='testnet0'/>" in live   # its tap name kept
    assert "slot='0x01'" in live and "<link" not in dom.XMLDesc(INACTIVE)
    code, message = _error(dom.updateDeviceFlags, nic.replace("<link state='down'/>", "<model type='e1000'/>"), LIVE)
    assert (code, message) == (pyvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                               "Operation not supported: cannot modify network device model from None to e1000")
