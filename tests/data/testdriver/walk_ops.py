"""The second differential walk of a test-driver host: devices, jobs, migration, block jobs,
send-key, the screenshot and the balloon's period (see tests/test_test_driver_ops_diff.py).

Run as ``PYTHON walk_ops.py MODULE URI``: MODULE is ``libvirt`` (python3-libvirt) or
``pyvirt``.  It prints one JSON list of ``[step, value]``; a failed call's value is
``["ERR", code, domain, message]``.  Each section leaves the host as it found it, so
a difference in one step does not spread to the next.
"""

import hashlib
import json
import struct

from walkbase import URI, libvirt, out, seen, cond, note, step, M, start_events

start_events()


LIVE, CONFIG = libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG


def disks(dom, flags=0):
    from xml.etree import ElementTree as ET
    root = ET.fromstring(dom.XMLDesc(flags))
    return [t.get("dev") for t in root.findall("./devices/disk/target")]


def macs(dom, flags=0):
    from xml.etree import ElementTree as ET
    root = ET.fromstring(dom.XMLDesc(flags))
    return [m.get("address") for m in root.findall("./devices/interface/mac")]


def sources(dom, flags=0):
    from xml.etree import ElementTree as ET
    root = ET.fromstring(dom.XMLDesc(flags))
    out = []
    for disk in root.findall("./devices/disk"):
        src = disk.find("source")
        out.append([disk.find("target").get("dev"), src.get("file") if src is not None else None])
    return out


def balloon(dom, flags=0):
    from xml.etree import ElementTree as ET
    node = ET.fromstring(dom.XMLDesc(flags)).find("./devices/memballoon")
    stats = node.find("stats") if node is not None else None
    return [node.get("model") if node is not None else None, stats.get("period") if stats is not None else None]


conn = libvirt.open(URI)
dom = conn.lookupByName("test")
for ev_id, tag in ((libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, "added"),
                   (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, "removed")):
    conn.domainEventRegisterAny(None, ev_id, lambda c, d, alias, op, tag=tag: note(tag, d.name(), alias), None)
conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                            lambda c, d, params, op: note("job", d.name()), None)
conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
                            lambda c, d, disk, typ, status, op: note("blockjob", d.name(), disk, typ, status), None)
conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                            lambda c, d, ev, det, op: note("life", d.name(), ev, det), None)

# a second domain, shut off, for the checks on a domain that is not running
OFF_XML = """<domain type='test'>
  <name>ops-off</name>
  <uuid>2a5c1e44-9d47-4a0b-8c36-5a1f0e6b7c21</uuid>
  <memory>65536</memory>
  <os><type>hvm</type></os>
  <devices><memballoon model='none'/></devices>
</domain>"""
off = conn.defineXML(OFF_XML)

# -- devices -----------------------------------------------------------------------------
DISK = ("<disk type='file' device='disk'><source file='/guest/extra.img'/>"
        "<target dev='vdb' bus='virtio'/><alias name='ua-extra'/></disk>")
DISK_OTHER_SOURCE = ("<disk type='file' device='disk'><source file='/guest/other.img'/>"
                     "<target dev='vdb' bus='virtio'/></disk>")
VDA = "<disk type='file' device='disk'><source file='/guest/diskimage1'/><target dev='vda' bus='virtio'/></disk>"
NIC = "<interface type='network'><mac address='52:54:00:11:22:33'/><source network='default'/></interface>"
CDROM = ("<disk type='file' device='cdrom'><source file='/guest/a.iso'/><target dev='hdc' bus='ide'/>"
         "<readonly/></disk>")
step("attach-live", M(dom, "attachDevice"), DISK)
step("disks-live", disks, dom)
step("disks-config", disks, dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
step("attach-duplicate", M(dom, "attachDeviceFlags"), VDA, LIVE)
step("update-disk-source", M(dom, "updateDeviceFlags"), DISK_OTHER_SOURCE, LIVE)
step("detach-alias", M(dom, "detachDeviceAlias"), "ua-extra", LIVE)
step("detach-missing", M(dom, "detachDeviceFlags"), DISK, LIVE)
step("disks-live-after", disks, dom)
step("attach-config", M(dom, "attachDeviceFlags"), NIC, CONFIG)
step("macs-config", macs, dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
step("macs-live", macs, dom)
step("detach-config", M(dom, "detachDeviceFlags"), NIC, CONFIG)
step("macs-config-after", macs, dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
step("attach-cdrom-both", M(dom, "attachDeviceFlags"), CDROM, LIVE | CONFIG)
step("eject-cdrom", M(dom, "updateDeviceFlags"),
     "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>", LIVE)
step("sources-after-eject", sources, dom)
step("sources-config-after-eject", sources, dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
step("detach-cdrom-both", M(dom, "detachDeviceFlags"), CDROM, LIVE | CONFIG)
step("attach-sound", M(dom, "attachDevice"), "<sound model='ich6'/>")
step("attach-bad-flags", M(dom, "attachDeviceFlags"), DISK, 1 << 10)
step("attach-offline-live", M(off, "attachDeviceFlags"), DISK, LIVE)
step("attach-offline", M(off, "attachDeviceFlags"), DISK, 0)
step("off-disks", disks, off, libvirt.VIR_DOMAIN_XML_INACTIVE)
step("detach-offline", M(off, "detachDeviceFlags"), DISK, 0)
step("xml-after-devices", M(dom, "XMLDesc"), 0)
step("xml-inactive-after-devices", M(dom, "XMLDesc"), libvirt.VIR_DOMAIN_XML_INACTIVE)

# -- the balloon's statistics period ----------------------------------------------------------
step("period-live", M(dom, "setMemoryStatsPeriod"), 10, LIVE)
step("balloon-live", balloon, dom)
step("balloon-config", balloon, dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
step("period-config", M(dom, "setMemoryStatsPeriod"), 5, CONFIG)
step("balloon-config-5", balloon, dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
step("period-both", M(dom, "setMemoryStatsPeriod"), 5, LIVE | CONFIG)
step("period-negative", M(dom, "setMemoryStatsPeriod"), -1, 0)
step("period-bad-flags", M(dom, "setMemoryStatsPeriod"), 1, 4)
step("period-no-balloon", M(off, "setMemoryStatsPeriod"), 1, 0)
step("period-off-live", M(off, "setMemoryStatsPeriod"), 1, LIVE)
step("period-zero-live", M(dom, "setMemoryStatsPeriod"), 0, LIVE)
step("period-zero-config", M(dom, "setMemoryStatsPeriod"), 0, CONFIG)
step("balloon-after", balloon, dom)

# -- send-key ---------------------------------------------------------------------------------
step("sendkey", M(dom, "sendKey"), libvirt.VIR_KEYCODE_SET_LINUX, 50, [29, 56, 111], 3, 0)
step("sendkey-usb", M(dom, "sendKey"), libvirt.VIR_KEYCODE_SET_USB, 0, [4], 1, 0)
step("sendkey-bad-code", M(dom, "sendKey"), libvirt.VIR_KEYCODE_SET_LINUX, 0, [3000], 1, 0)
step("sendkey-bad-xt", M(dom, "sendKey"), libvirt.VIR_KEYCODE_SET_XT, 0, [1, 999], 2, 0)
step("sendkey-bad-codeset", M(dom, "sendKey"), 99, 0, [1], 1, 0)
step("sendkey-flags", M(dom, "sendKey"), libvirt.VIR_KEYCODE_SET_LINUX, 0, [30], 1, 1)
step("sendkey-offline", M(off, "sendKey"), libvirt.VIR_KEYCODE_SET_LINUX, 0, [30], 1, 0)


# -- the screenshot -----------------------------------------------------------------------------
def screenshot(d, screen, flags=0):
    stream = conn.newStream(0)
    mime = d.screenshot(stream, screen, flags)
    data = b""
    while True:
        chunk = stream.recv(262144)
        if not chunk:
            break
        data += chunk
    stream.finish()
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return {"mime": mime, "signature": data[:8].hex(), "ihdr": [width, height, depth, colour],
            "sha256": hashlib.sha256(data).hexdigest()}


step("screenshot", screenshot, dom, 0)
step("screenshot-other-screen", screenshot, dom, 3)
step("screenshot-offline", screenshot, off, 0)
step("screenshot-flags", screenshot, dom, 0, 1)

# -- jobs ----------------------------------------------------------------------------------------
step("jobinfo", M(dom, "jobInfo"))
step("jobstats", M(dom, "jobStats"), 0)
step("jobstats-completed", M(dom, "jobStats"), libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
step("abortjob", M(dom, "abortJob"))
step("jobinfo-offline", M(off, "jobInfo"))
step("jobstats-completed-offline", M(off, "jobStats"), libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
step("abortjob-offline", M(off, "abortJob"))

# -- migration: libvirt's test driver has none of its steps ---------------------------------------
dconn = libvirt.open(URI)
step("migrate-setspeed", M(dom, "migrateSetMaxSpeed"), 100, 0)
step("migrate-getspeed", M(dom, "migrateGetMaxSpeed"), 0)
step("migrate-setdowntime", M(dom, "migrateSetMaxDowntime"), 100, 0)
step("migrate-postcopy", M(dom, "migrateStartPostCopy"), 0)
step("migrate", lambda: M(dom, "migrate")(dconn, libvirt.VIR_MIGRATE_LIVE, None, None, 0).name())
step("migrate2", lambda: M(dom, "migrate2")(dconn, None, libvirt.VIR_MIGRATE_LIVE, None, None, 0).name())
step("migrate3", lambda: M(dom, "migrate3")(dconn, {}, libvirt.VIR_MIGRATE_LIVE).name())
step("migrate-offline", lambda: M(off, "migrate")(dconn, libvirt.VIR_MIGRATE_OFFLINE
                                                  | libvirt.VIR_MIGRATE_PERSIST_DEST, None, None, 0).name())
step("migrate-to-uri", M(dom, "migrateToURI"), "test:///default", libvirt.VIR_MIGRATE_LIVE, None, 0)
step("migrate-to-uri-p2p", M(dom, "migrateToURI"), "test:///default",
     libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER, None, 0)
step("migrate-to-uri3-p2p", M(dom, "migrateToURI3"), "test:///default", {},
     libvirt.VIR_MIGRATE_PEER2PEER)
step("state-after-migrate", M(dom, "state"))
dconn.close()

# -- block jobs: none in libvirt's test driver either ---------------------------------------------
step("blockjob-info", M(dom, "blockJobInfo"), "vda", 0)
step("blockjob-abort", M(dom, "blockJobAbort"), "vda", 0)
step("blockjob-speed", M(dom, "blockJobSetSpeed"), "vda", 10, 0)
step("blockpull", M(dom, "blockPull"), "vda", 0, 0)
step("blockrebase", M(dom, "blockRebase"), "vda", None, 0, 0)
step("blockcommit", M(dom, "blockCommit"), "vda", None, None, 0, 0)
step("blockcopy", M(dom, "blockCopy"), "vda",
     "<disk type='file'><source file='/guest/copy.img'/><driver type='raw'/></disk>", None, 0)

# -- the events all this sent, up to a lifecycle event that closes the walk ------------------------
off.undefine()
with cond:
    ok = cond.wait_for(lambda: any(r[:2] == ["life", "ops-off"] for r in seen), timeout=60)
step("events", lambda: [r for r in seen if r[0] != "life"] if ok else "no UNDEFINED event")
conn.close()
print(json.dumps(out))
