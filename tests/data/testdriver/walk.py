"""The differential walk of a test-driver host (see tests/test_test_driver_diff.py).

Run as ``PYTHON walk.py MODULE URI``: MODULE is ``libvirt`` (python3-libvirt) or
``pyvirt``.  It makes the same calls a tool author's test suite makes and prints
one JSON list of ``[step, value]``; a failed call's value is
``["ERR", code, domain, message]``.  Values that differ between any two runs
(CPU time, creation times) are reduced to what stays the same.
"""

import json
import os
import re
import shutil
import tempfile

from walkbase import URI, libvirt, out, seen, cond, note, step, M, start_events

start_events()


def names(objs):
    return sorted(o.name() for o in objs)


conn = libvirt.open(URI)
# -- the connection and the node ------------------------------------------------------
step("type", M(conn, "getType"))
step("version", M(conn, "getVersion"))
step("libversion", M(conn, "getLibVersion"))
step("uri", M(conn, "getURI"))
step("secure", M(conn, "isSecure"))
step("alive", M(conn, "isAlive"))
step("nodeinfo", M(conn, "getInfo"))
step("capabilities", M(conn, "getCapabilities"))
step("maxvcpus", M(conn, "getMaxVcpus"), None)
step("maxvcpus-test", M(conn, "getMaxVcpus"), "test")
step("cellsfree", M(conn, "getCellsFreeMemory"), 0, 2)
step("cellsfree-past", M(conn, "getCellsFreeMemory"), 1, 5)
step("freemem", M(conn, "getFreeMemory"))
step("secmodel", lambda: conn.getSecurityModel())
step("cpumap", M(conn, "getCPUMap"))
step("cpumodels", M(conn, "getCPUModelNames"), "i686")

# -- domains ---------------------------------------------------------------------------
events = [
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, det, op: note("dom", d.name(), ev, det), None),
    conn.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE,
                                 lambda c, n, ev, det, op: note("net", n.name(), ev, det), None),
    conn.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE,
                                     lambda c, p, ev, det, op: note("pool", p.name(), ev, det), None),
]
step("ids", M(conn, "listDomainsID"))
step("defined", M(conn, "listDefinedDomains"))
step("numdoms", M(conn, "numOfDomains"))
step("numdefined", M(conn, "numOfDefinedDomains"))
step("alldoms", lambda: names(conn.listAllDomains(0)))
step("lookup-id", lambda: conn.lookupByID(1).name())
step("lookup-uuid", lambda: conn.lookupByUUIDString("6695eb01-f6a4-8304-79aa-97f2502e193f").name())
step("lookup-missing", M(conn, "lookupByName"), "nope")
dom = conn.lookupByName("test")
step("dom-info", lambda: [v if i != 4 else v > 0 for i, v in enumerate(dom.info())])
step("dom-state", M(dom, "state"))
step("dom-xml", M(dom, "XMLDesc"), 0)
step("dom-xml-inactive", M(dom, "XMLDesc"), libvirt.VIR_DOMAIN_XML_INACTIVE)
step("dom-id", M(dom, "ID"))
step("dom-uuid", M(dom, "UUIDString"))
step("dom-active", M(dom, "isActive"))
step("dom-persistent", M(dom, "isPersistent"))
step("dom-updated", M(dom, "isUpdated"))
step("dom-autostart", M(dom, "autostart"))
step("dom-ostype", M(dom, "OSType"))
step("dom-maxmem", M(dom, "maxMemory"))
step("dom-maxvcpus", M(dom, "maxVcpus"))
step("dom-vcpusflags", M(dom, "vcpusFlags"), 0)
step("dom-vcpusflags-max", M(dom, "vcpusFlags"), libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
step("dom-schedtype", M(dom, "schedulerType"))
step("dom-schedparams", M(dom, "schedulerParameters"))
step("dom-managedsave", M(dom, "hasManagedSaveImage"), 0)
step("dom-snapnum", M(dom, "snapshotNum"), 0)
step("dom-hascurrent", M(dom, "hasCurrentSnapshot"), 0)
step("dom-blockinfo", M(dom, "blockInfo"), "vda")
step("dom-blockstats-missing", M(dom, "blockStats"), "vdz")
step("dom-ifstats-missing", M(dom, "interfaceStats"), "nope0")
step("dom-seclabel", M(dom, "securityLabel"))
step("dom-vcpupin", M(dom, "vcpuPinInfo"), 0)
step("dom-metadata-missing", M(dom, "metadata"), libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None, 0)
step("dom-jobinfo", M(dom, "jobInfo"))
step("dom-suspend-twice", lambda: (dom.suspend(), dom.suspend()))
step("dom-state-paused", M(dom, "state"))
step("dom-resume", M(dom, "resume"))
step("dom-resume-again", M(dom, "resume"))
step("dom-setmem", M(dom, "setMemory"), 1048576)
step("dom-info-after-setmem", lambda: dom.info()[:4])
step("dom-setmem-too-big", M(dom, "setMemory"), 99999999)
step("dom-autostart-on", lambda: (dom.setAutostart(1), dom.autostart()))
step("dom-autostart-off", lambda: (dom.setAutostart(0), dom.autostart()))

# -- tuning: parameters, pinning, perf events, the guest's clock and name -----------------
CONFIG, LIVE = libvirt.VIR_DOMAIN_AFFECT_CONFIG, libvirt.VIR_DOMAIN_AFFECT_LIVE
step("tune-mem", M(dom, "memoryParameters"), 0)
step("tune-blkio", M(dom, "blkioParameters"), 0)
step("tune-numa", M(dom, "numaParameters"), 0)
step("tune-iface", M(dom, "interfaceParameters"), "testnet0", 0)
step("tune-iface-by-mac", M(dom, "interfaceParameters"), "aa:bb:cc:dd:ee:ff", 0)
step("tune-iface-missing", M(dom, "interfaceParameters"), "nope0", 0)
step("tune-iotune", M(dom, "blockIoTune"), "vda", 0)
step("tune-iotune-by-path", M(dom, "blockIoTune"), "/guest/diskimage1", 0)
step("tune-iotune-missing", M(dom, "blockIoTune"), "vdz", 0)
step("tune-iotune-null", M(dom, "blockIoTune"), None, 0)
step("tune-perf", M(dom, "perfEvents"), 0)
step("tune-time", M(dom, "getTime"), 0)
step("tune-time-flags", M(dom, "getTime"), 1)
step("tune-hostname", M(dom, "hostname"), 0)
step("tune-freepages", M(conn, "getFreePages"), [4, 2048], 0, 2, 0)
step("tune-freepages-flags", M(conn, "getFreePages"), [4], 0, 1, 1)
step("tune-emupin", M(dom, "emulatorPinInfo"), 0)
step("tune-iothreads", M(dom, "ioThreadInfo"), 0)
step("tune-iothreads-config", M(dom, "ioThreadInfo"), CONFIG)
step("tune-set-mem", M(dom, "setMemoryParameters"), {"hard_limit": 1048576, "soft_limit": 524288}, 0)
step("tune-set-mem-over-swap", M(dom, "setMemoryParameters"), {"hard_limit": 1048576, "swap_hard_limit": 1024}, 0)
step("tune-set-mem-both", M(dom, "setMemoryParameters"), {"hard_limit": 1}, CONFIG | LIVE)
step("tune-set-mem-unknown", M(dom, "setMemoryParameters"), {"nope": 1}, 0)
step("tune-mem-live", M(dom, "memoryParameters"), LIVE)
step("tune-mem-config", M(dom, "memoryParameters"), CONFIG)
step("tune-set-blkio", M(dom, "setBlkioParameters"), {"weight": 500, "device_weight": "/dev/sda,200"}, 0)
step("tune-set-blkio-iops", M(dom, "setBlkioParameters"), {"device_read_iops_sec": "/dev/sda,10,/dev/sdb,20"}, 0)
step("tune-set-blkio-bad", M(dom, "setBlkioParameters"), {"device_weight": "/dev/sda"}, 0)
step("tune-set-blkio-bad-value", M(dom, "setBlkioParameters"), {"device_weight": "/dev/sda,x"}, 0)
step("tune-blkio-after", M(dom, "blkioParameters"), 0)
step("tune-set-numa", M(dom, "setNumaParameters"), {"numa_nodeset": "0-1"}, 0)
step("tune-set-numa-mode", M(dom, "setNumaParameters"), {"numa_mode": 1}, 0)
step("tune-set-numa-bad-mode", M(dom, "setNumaParameters"), {"numa_mode": 7}, 0)
step("tune-set-numa-bad-set", M(dom, "setNumaParameters"), {"numa_nodeset": "x"}, 0)
step("tune-numa-after", M(dom, "numaParameters"), 0)
step("tune-set-numa-config-only-mode", M(dom, "setNumaParameters"), {"numa_mode": 2}, CONFIG)
step("tune-set-iface", M(dom, "setInterfaceParameters"), "testnet0",
     {"inbound.average": 1000, "inbound.peak": 2000, "outbound.average": 500}, 0)
step("tune-iface-after", M(dom, "interfaceParameters"), "testnet0", 0)
step("tune-set-iface-clear-out", M(dom, "setInterfaceParameters"), "aa:bb:cc:dd:ee:ff", {"outbound.average": 0}, 0)
step("tune-iface-cleared", M(dom, "interfaceParameters"), "testnet0", 0)
step("tune-set-iotune-over-max", M(dom, "setBlockIoTune"), "vda", {"total_bytes_sec": 10000000}, 0)
step("tune-set-iotune", M(dom, "setBlockIoTune"), "vda",
     {"total_bytes_sec": 1000, "total_bytes_sec_max": 2000, "group_name": "g1"}, 0)
step("tune-set-iotune-total-and-read", M(dom, "setBlockIoTune"), "vda", {"read_bytes_sec": 5}, 0)
step("tune-set-iotune-too-big", M(dom, "setBlockIoTune"), "vda", {"read_iops_sec": 10 ** 16}, 0)
step("tune-set-iotune-missing", M(dom, "setBlockIoTune"), "vdz", {"read_iops_sec": 1}, 0)
step("tune-iotune-after", M(dom, "blockIoTune"), "vda", 0)
step("tune-set-perf", M(dom, "setPerfEvents"), {"cmt": True, "cpu_cycles": True, "instructions": False}, 0)
step("tune-perf-after", M(dom, "perfEvents"), 0)
step("tune-perf-config", M(dom, "perfEvents"), CONFIG)
step("tune-set-time", M(dom, "setTime"), {"seconds": 1234567890, "nseconds": 5}, 0)
step("tune-time-after", M(dom, "getTime"), 0)
step("tune-pin-vcpu", M(dom, "pinVcpu"), 0, (True, False, True))
step("tune-pin-vcpu-missing", M(dom, "pinVcpu"), 5, (True,))
step("tune-pin-vcpu-flags", M(dom, "pinVcpuFlags"), 1, (False, True), CONFIG)
step("tune-vcpupin-after", M(dom, "vcpuPinInfo"), 0)
step("tune-vcpupin-config", M(dom, "vcpuPinInfo"), CONFIG)
step("tune-pin-emulator", M(dom, "pinEmulator"), (True, True, False, False), 0)
step("tune-pin-emulator-empty", M(dom, "pinEmulator"), (False,), 0)
step("tune-emupin-after", M(dom, "emulatorPinInfo"), 0)
step("tune-emupin-config", M(dom, "emulatorPinInfo"), CONFIG)
step("tune-xml", M(dom, "XMLDesc"), 0)
step("tune-xml-inactive", M(dom, "XMLDesc"), libvirt.VIR_DOMAIN_XML_INACTIVE)
step("tune-sched-flags", M(dom, "schedulerParametersFlags"), 0)
step("tune-set-sched-flags", M(dom, "setSchedulerParametersFlags"), {"weight": 100}, 0)
step("tune-sched-after", M(dom, "schedulerParametersFlags"), 0)
step("iothread-add", M(dom, "addIOThread"), 2, 0)
step("iothread-add-again", M(dom, "addIOThread"), 2, 0)
step("iothread-add-zero", M(dom, "addIOThread"), 0, 0)
step("iothread-add-config", M(dom, "addIOThread"), 5, CONFIG)
step("iothread-info", M(dom, "ioThreadInfo"), 0)
step("iothread-info-config", M(dom, "ioThreadInfo"), CONFIG)
step("iothread-pin", M(dom, "pinIOThread"), 2, (False, True), 0)
step("iothread-pin-missing", M(dom, "pinIOThread"), 9, (True,), 0)
step("iothread-pin-empty", M(dom, "pinIOThread"), 2, (False,), 0)
step("iothread-params", M(dom, "setIOThreadParams"), 2, {"poll_max_ns": 100, "poll_grow": 2}, 0)
step("iothread-params-missing", M(dom, "setIOThreadParams"), 9, {"poll_max_ns": 100}, 0)
step("iothread-params-unknown", M(dom, "setIOThreadParams"), 2, {"nope": 1}, 0)
step("iothread-params-config", M(dom, "setIOThreadParams"), 5, {"poll_max_ns": 1}, CONFIG)
step("iothread-stats", lambda: conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_IOTHREAD, 0)[0][1])
step("iothread-xml", lambda: [dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)])
step("iothread-del-other-def", M(dom, "delIOThread"), 5, 0)
step("iothread-del-config", M(dom, "delIOThread"), 5, CONFIG)
step("iothread-info-after", lambda: [dom.ioThreadInfo(0), dom.ioThreadInfo(CONFIG)])
TUNED = """<domain type='test'>
  <name>tuned</name>
  <uuid>22223333-4444-5555-6666-777788889999</uuid>
  <memory>524288</memory>
  <blkiotune><weight>300</weight>
    <device><path>/dev/sdc</path><write_bytes_sec>4096</write_bytes_sec></device></blkiotune>
  <memtune><hard_limit unit='MiB'>256</hard_limit><swap_hard_limit unit='MiB'>512</swap_hard_limit></memtune>
  <vcpu>2</vcpu>
  <cputune><vcpupin vcpu='1' cpuset='2-3'/><emulatorpin cpuset='0,2'/></cputune>
  <numatune><memory mode='interleave' nodeset='1'/></numatune>
  <os><type>hvm</type></os>
  <perf><event name='cache_misses' enabled='yes'/></perf>
  <devices>
    <disk type='file' device='disk'><source file='/tuned.img'/><target dev='vdb'/>
      <iotune><read_iops_sec>50</read_iops_sec><read_iops_sec_max>60</read_iops_sec_max></iotune></disk>
    <interface type='network'><mac address='aa:bb:cc:00:00:01'/><source network='default'/>
      <bandwidth><inbound average='7' burst='9'/></bandwidth></interface>
  </devices>
</domain>"""
step("tuned-define", lambda: conn.defineXML(TUNED).name())
tuned = conn.lookupByName("tuned")
step("tuned-xml", M(tuned, "XMLDesc"), 0)
step("tuned-params", lambda: [tuned.memoryParameters(0), tuned.blkioParameters(0), tuned.numaParameters(0),
                              tuned.perfEvents(0), tuned.blockIoTune("vdb", 0),
                              tuned.interfaceParameters("aa:bb:cc:00:00:01", 0), tuned.vcpuPinInfo(0),
                              tuned.emulatorPinInfo(0)])
step("tuned-time-off", M(tuned, "getTime"), 0)
step("tuned-hostname-off", M(tuned, "hostname"), 0)
step("tuned-pin-off", M(tuned, "pinVcpu"), 0, (True,))
step("tuned-mem-live-off", M(tuned, "memoryParameters"), LIVE)

# -- the guest agent's calls, NMI, signals, control state, lifecycle actions, rename ----------
step("guest-control", M(dom, "controlInfo"), 0)
step("guest-messages", M(dom, "messages"), 0)
step("guest-messages-all", M(dom, "messages"), 3)
step("guest-messages-flags", M(dom, "messages"), 4)
step("guest-memory-peek", lambda: list(dom.memoryPeek(250, 10, libvirt.VIR_MEMORY_VIRTUAL)))
for bits in (0, 3, 4):
    step(f"guest-memory-peek-flags-{bits}", M(dom, "memoryPeek"), 0, 4, bits)
step("guest-memory-peek-off", M(tuned, "memoryPeek"), 0, 4, 1)
step("guest-fsinfo", M(dom, "fsInfo"), 0)
for source in (0, 1, 2, 3):
    step(f"guest-addresses-{source}", M(dom, "interfaceAddresses"), source, 0)
step("guest-freeze", M(dom, "fsFreeze"), None, 0)
step("guest-freeze-root-again", M(dom, "fsFreeze"), ["/"], 0)
step("guest-thaw", M(dom, "fsThaw"), ["/boot", "/"], 0)
step("guest-thaw-unknown", M(dom, "fsThaw"), ["/x"], 0)
step("guest-freeze-twice-named", M(dom, "fsFreeze"), ["/", "/"], 0)
step("guest-thaw-all", M(dom, "fsThaw"), None, 0)
step("guest-trim", M(dom, "fSTrim"), "/", 0, 0)
step("guest-trim-all", M(dom, "fSTrim"), None, 0, 0)
step("guest-trim-unknown", M(dom, "fSTrim"), "/x", 0, 0)
step("guest-nmi", M(dom, "injectNMI"), 0)
step("guest-signal", M(dom, "sendProcessSignal"), 1, 15, 0)
step("guest-signal-other-pid", M(dom, "sendProcessSignal"), 2, 15, 0)
step("guest-signal-out-of-range", M(dom, "sendProcessSignal"), 1, 99, 0)
step("guest-password", M(dom, "setUserPassword"), "root", "secret", 0)
step("guest-password-flags", M(dom, "setUserPassword"), "root", "secret", 2)
step("guest-lifecycle", M(dom, "setLifecycleAction"), 0, 1, 0)
step("guest-lifecycle-config", M(dom, "setLifecycleAction"), 2, 4, CONFIG)
step("guest-lifecycle-refused", M(dom, "setLifecycleAction"), 1, 5, 0)
step("guest-lifecycle-xml", lambda: [dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)])
step("guest-lifecycle-back", lambda: (dom.setLifecycleAction(0, 0, 0), dom.setLifecycleAction(2, 0, CONFIG)))
step("guest-control-clock-error", lambda: (dom.setTime({"seconds": 30006}, 0), dom.controlInfo(0)))
step("guest-control-clock-occupied", lambda: (dom.setTime({"seconds": 12000}, 0), dom.controlInfo(0)))
step("guest-clock-back", M(dom, "setTime"), {"seconds": 1234567890, "nseconds": 5}, 0)
step("guest-rename-running", M(dom, "rename"), "other", 0)
step("guest-control-off", M(tuned, "controlInfo"), 0)
step("guest-nmi-off", M(tuned, "injectNMI"), 0)
step("guest-addresses-off", M(tuned, "interfaceAddresses"), 0, 0)
step("guest-lifecycle-off-live", M(tuned, "setLifecycleAction"), 0, 3, LIVE)
step("guest-lifecycle-off", lambda: (tuned.setLifecycleAction(0, 3, 0), tuned.XMLDesc(0)))
step("guest-rename-self", M(tuned, "rename"), "tuned", 0)
step("guest-rename-taken", M(tuned, "rename"), "test", 0)
step("guest-rename-slash", M(tuned, "rename"), "a/b", 0)
step("guest-rename", M(tuned, "rename"), "tuned2", 0)
step("guest-renamed-lookup", lambda: [conn.lookupByName("tuned2").UUIDString(), "tuned2" in conn.listDefinedDomains()])
step("guest-renamed-old", M(conn, "lookupByName"), "tuned")
step("tuned-undefine", M(tuned, "undefine"))

NEW = """<domain type='test'>
  <name>walker</name>
  <uuid>11112222-3333-4444-5555-666677778888</uuid>
  <memory>524288</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>"""
step("define", lambda: conn.defineXML(NEW).name())
new = conn.lookupByName("walker")
step("new-xml", M(new, "XMLDesc"), 0)
step("new-state", M(new, "state"))
step("new-info", lambda: new.info()[:4])
step("new-id", M(new, "ID"))
step("new-destroy-inactive", M(new, "destroy"))
step("define-list", M(conn, "listDefinedDomains"))
step("new-start", M(new, "create"))
step("new-id-running", M(new, "ID"))
step("new-start-again", M(new, "create"))
step("new-xml-running", M(new, "XMLDesc"), 0)
step("new-shutdown", M(new, "shutdown"))
step("new-state-shutdown", M(new, "state"))
step("new-start-paused", M(new, "createWithFlags"), libvirt.VIR_DOMAIN_START_PAUSED)
step("new-state-paused", M(new, "state"))
step("new-managedsave", M(new, "managedSave"), 0)
step("new-has-managedsave", M(new, "hasManagedSaveImage"), 0)
step("new-state-saved", M(new, "state"))
step("new-start-from-save", M(new, "create"))
step("new-state-restored", M(new, "state"))
step("new-has-managedsave-after", M(new, "hasManagedSaveImage"), 0)
step("new-reboot", M(new, "reboot"), 0)
step("new-reset", M(new, "reset"), 0)
step("new-destroy", M(new, "destroy"))
step("new-state-destroyed", M(new, "state"))
step("new-undefine", M(new, "undefine"))
step("new-lookup-gone", M(conn, "lookupByName"), "walker")
step("create-transient", lambda: conn.createXML(NEW.replace("walker", "transient"), 0).name())
step("transient-persistent", lambda: conn.lookupByName("transient").isPersistent())
step("transient-destroy", lambda: conn.lookupByName("transient").destroy())
step("transient-gone", M(conn, "lookupByName"), "transient")
step("define-bad-type", M(conn, "defineXML"), NEW.replace("type='test'", "type='kvm'"))
step("define-bad-xml", M(conn, "defineXML"), "<domain")
step("define-dup-uuid", M(conn, "defineXML"), NEW.replace("walker", "test"))

# -- snapshots --------------------------------------------------------------------------
def snapxml(snap):
    text = snap.getXMLDesc(0)
    return re.sub(r"<creationTime>\d+</creationTime>", "<creationTime>T</creationTime>", text)


step("snap-create", lambda: dom.snapshotCreateXML("<domainsnapshot><name>s1</name>"
                                                  "<description>first</description></domainsnapshot>", 0).getName())
step("snap-create-2", lambda: dom.snapshotCreateXML("<domainsnapshot><name>s2</name></domainsnapshot>", 0).getName())
step("snap-list", lambda: sorted(s.getName() for s in dom.listAllSnapshots(0)))
step("snap-names", lambda: sorted(dom.snapshotListNames(0)))
step("snap-num", M(dom, "snapshotNum"), 0)
step("snap-current", lambda: dom.snapshotCurrent(0).getName())
s1 = dom.snapshotLookupByName("s1", 0)
step("snap-xml", snapxml, s1)
step("snap-parent-none", lambda: s1.getParent(0).getName())
step("snap-parent", lambda: dom.snapshotLookupByName("s2", 0).getParent(0).getName())
step("snap-children", lambda: s1.listChildrenNames(0))
step("snap-iscurrent", M(s1, "isCurrent"), 0)
step("snap-metadata", M(s1, "hasMetadata"), 0)
# a third snapshot of the paused domain, under s2: a tree to filter
step("snap-create-paused", lambda: (dom.suspend(), dom.snapshotCreateXML(
    "<domainsnapshot><name>s3</name></domainsnapshot>", 0).getName(), dom.resume()))
SNAP_FILTERS = {
    "roots": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS, "leaves": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES,
    "no-leaves": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES,
    "leaves-and-not": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES | libvirt.VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES,
    "metadata": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_METADATA,
    "no-metadata": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA,
    "inactive": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE, "active": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE,
    "disk-only": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY,
    "all-states": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE | libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE
    | libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY,
    "internal": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_INTERNAL, "external": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL,
    "roots-leaves": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS | libvirt.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES,
    "topological": libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL, "unknown-bit": 1 << 11,
}
for label, bits in SNAP_FILTERS.items():
    step(f"snap-filter-{label}", lambda f=bits: [sorted(s.getName() for s in dom.listAllSnapshots(f)),
                                                 dom.snapshotNum(f), sorted(dom.snapshotListNames(f))])
for label, bits in (("children", 0), ("descendants", libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS),
                    ("descendant-leaves", libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS
                     | libvirt.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES),
                    ("no-leaves", libvirt.VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES),
                    ("active", libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE),
                    ("unknown-bit", 1 << 11)):
    step(f"snap-kids-{label}", lambda f=bits: [sorted(s.getName() for s in s1.listAllChildren(f)),
                                               s1.numChildren(f), sorted(s1.listChildrenNames(f))])


def topological_order():
    order = dom.snapshotListNames(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
    parents = {n: (dom.snapshotLookupByName(n, 0).getParent(0).getName() if n != "s1" else None) for n in order}
    return [sorted(order), all(parents[n] is None or order.index(parents[n]) < order.index(n) for n in order)]


step("snap-topological-order", topological_order)
step("snap-xml-paused", lambda: snapxml(dom.snapshotLookupByName("s3", 0)))
step("snap-revert", M(dom, "revertToSnapshot"), s1, 0)
step("snap-current-after-revert", lambda: dom.snapshotCurrent(0).getName())
step("snap-delete-children", M(s1, "delete"), libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
step("snap-num-after", M(dom, "snapshotNum"), 0)
step("snap-lookup-missing", M(dom, "snapshotLookupByName"), "s2", 0)

# -- networks ---------------------------------------------------------------------------
step("nets", M(conn, "listNetworks"))
step("defnets", M(conn, "listDefinedNetworks"))
step("numnets", M(conn, "numOfNetworks"))
step("allnets", lambda: names(conn.listAllNetworks(0)))
net = conn.networkLookupByName("default")
step("net-xml", M(net, "XMLDesc"), 0)
step("net-uuid", M(net, "UUIDString"))
step("net-active", M(net, "isActive"))
step("net-persistent", M(net, "isPersistent"))
step("net-autostart", M(net, "autostart"))
step("net-bridge", M(net, "bridgeName"))
step("net-lookup-uuid", lambda: conn.networkLookupByUUIDString("dd8fe884-6c02-601e-7551-cca97df1c5df").name())
step("net-lookup-missing", M(conn, "networkLookupByName"), "nope")
step("net-leases", M(net, "DHCPLeases"))
NEWNET = ("<network><name>walknet</name><uuid>aaaabbbb-cccc-dddd-eeee-ffff00001111</uuid>"
          "<bridge name='walkbr0'/><ip address='10.9.9.1' netmask='255.255.255.0'/></network>")
step("net-define", lambda: conn.networkDefineXML(NEWNET).name())
wnet = conn.networkLookupByName("walknet")
step("net-new-xml", M(wnet, "XMLDesc"), 0)
step("net-new-active", M(wnet, "isActive"))
step("net-new-create", M(wnet, "create"))
step("net-new-create-again", M(wnet, "create"))
step("net-new-destroy", M(wnet, "destroy"))
step("net-new-undefine", M(wnet, "undefine"))
step("net-new-gone", M(conn, "networkLookupByName"), "walknet")

UPD = libvirt
DHCP = "<host mac='52:54:00:00:00:11' name='h1' ip='192.168.122.11'/>"
step("net-update-dhcp-add", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, DHCP, 0)
step("net-update-dhcp-dup", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, DHCP, 0)
step("net-update-dhcp-first", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, 0, "<host mac='52:54:00:00:00:12' ip='192.168.122.12'/>", 0)
step("net-update-dhcp-modify", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, "<host mac='52:54:00:00:00:11' name='h1b' ip='192.168.122.13'/>", 0)
step("net-update-dhcp-config", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, "<host mac='52:54:00:00:00:14' ip='192.168.122.14'/>",
     UPD.VIR_NETWORK_UPDATE_AFFECT_CONFIG)
step("net-update-dhcp-delete", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_DELETE,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, "<host mac='52:54:00:00:00:12'/>", 0)
step("net-update-dhcp-delete-missing", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_DELETE,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, "<host mac='52:54:00:00:00:99'/>", 0)
step("net-update-dhcp-bad-index", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, 3, DHCP, 0)
step("net-update-dns-add", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
     UPD.VIR_NETWORK_SECTION_DNS_HOST, -1, "<host ip='192.168.122.50'><hostname>web</hostname></host>", 0)
step("net-update-dns-modify", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
     UPD.VIR_NETWORK_SECTION_DNS_HOST, -1, "<host ip='192.168.122.50'><hostname>web</hostname></host>", 0)
step("net-update-range-add", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_RANGE, -1, "<range start='192.168.122.100' end='192.168.122.110'/>", 0)
step("net-update-range-delete", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_DELETE,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_RANGE, -1, "<range start='192.168.122.2' end='192.168.122.254'/>", 0)
step("net-update-range-modify", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_RANGE, -1, "<range start='192.168.122.100' end='192.168.122.110'/>", 0)
for section in (1, 2, 3, 6, 8, 13):         # bridge, domain, ip, forward, forward pf, none
    step(f"net-update-section-{section}", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section, -1,
         "<x/>", 0)
step("net-update-bad-command", M(net, "update"), 9, UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, DHCP, 0)
step("net-update-bad-flags", M(net, "update"), UPD.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
     UPD.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, DHCP, 8)
step("net-update-xml", M(net, "XMLDesc"), 0)
step("net-xml-inactive-flag", M(net, "XMLDesc"), 1)

# -- storage ----------------------------------------------------------------------------
step("pools", M(conn, "listStoragePools"))
step("defpools", M(conn, "listDefinedStoragePools"))
step("numpools", M(conn, "numOfStoragePools"))
step("allpools", lambda: names(conn.listAllStoragePools(0)))
pool = conn.storagePoolLookupByName("default-pool")
step("pool-info", M(pool, "info"))
step("pool-xml", M(pool, "XMLDesc"), 0)
step("pool-uuid", M(pool, "UUIDString"))
step("pool-active", M(pool, "isActive"))
step("pool-persistent", M(pool, "isPersistent"))
step("pool-autostart", M(pool, "autostart"))
step("pool-numvols", M(pool, "numOfVolumes"))
step("pool-vols", M(pool, "listVolumes"))
step("pool-lookup-uuid", lambda: conn.storagePoolLookupByUUIDString("dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566").name())
step("pool-lookup-missing", M(conn, "storagePoolLookupByName"), "nope")
VOL = ("<volume><name>walk.img</name><capacity unit='MiB'>10</capacity>"
       "<allocation unit='MiB'>2</allocation></volume>")
step("vol-create", lambda: pool.createXML(VOL, 0).name())
step("vol-create-again", lambda: pool.createXML(VOL, 0).name())
vol = pool.storageVolLookupByName("walk.img")
step("vol-info", M(vol, "info"))
step("vol-xml", M(vol, "XMLDesc"), 0)
step("vol-path", M(vol, "path"))
step("vol-key", M(vol, "key"))
step("vol-by-path", lambda: conn.storageVolLookupByPath("/default-pool/walk.img").name())
step("vol-by-key", lambda: conn.storageVolLookupByKey("/default-pool/walk.img").name())
step("vol-pool", lambda: vol.storagePoolLookupByVolume().name())
step("pool-info-with-vol", M(pool, "info"))
step("pool-vols-with-vol", M(pool, "listVolumes"))
step("vol-resize", lambda: (vol.resize(20 * 1024 * 1024, 0), vol.info()))
step("vol-wipe", M(vol, "wipe"), 0)
step("vol-delete", M(vol, "delete"), 0)
step("vol-gone", M(pool, "storageVolLookupByName"), "walk.img")
step("pool-info-after", M(pool, "info"))
NEWPOOL = ("<pool type='dir'><name>walkpool</name><uuid>12341234-1234-1234-1234-123412341234</uuid>"
           "<target><path>/walkpool</path></target></pool>")
step("pool-define", lambda: conn.storagePoolDefineXML(NEWPOOL, 0).name())
wpool = conn.storagePoolLookupByName("walkpool")
step("pool-new-xml", M(wpool, "XMLDesc"), 0)
step("pool-new-info", M(wpool, "info"))
step("pool-new-build", M(wpool, "build"), 0)
step("pool-new-create", M(wpool, "create"), 0)
step("pool-new-info-active", M(wpool, "info"))
step("pool-new-refresh", M(wpool, "refresh"), 0)
step("pool-new-destroy", M(wpool, "destroy"))
step("pool-new-undefine", M(wpool, "undefine"))
step("pool-new-gone", M(conn, "storagePoolLookupByName"), "walkpool")
for kind, spec in (("logical", None), ("netfs", "<source><host name='nas'/></source>"), ("netfs", None),
                   ("dir", None), ("iscsi", None), ("bogus", None)):   # (an empty netfs <source> crashes libvirt)
    step(f"pool-sources-{kind}-{bool(spec)}", M(conn, "findStoragePoolSources"), kind, spec, 0)

# -- host interfaces ------------------------------------------------------------------------
step("ifaces", lambda: sorted(conn.listInterfaces()))
step("defifaces", lambda: sorted(conn.listDefinedInterfaces()))
step("numifaces", conn.numOfInterfaces)
step("allifaces", lambda: names(conn.listAllInterfaces(0)))
step("iface-lookup-missing", conn.interfaceLookupByName, "nope0")
step("iface-mac-missing", conn.interfaceLookupByMACString, "00:00:00:00:00:01")
iface = conn.interfaceLookupByName("eth1")
step("iface-mac", M(iface, "MACString"))
step("iface-active", M(iface, "isActive"))
step("iface-xml", M(iface, "XMLDesc"), 0)
step("iface-by-mac", lambda: conn.interfaceLookupByMACString("aa:bb:cc:dd:ee:ff").name())
step("iface-destroy", M(iface, "destroy"), 0)
step("iface-destroy-again", M(iface, "destroy"), 0)
step("iface-create", M(iface, "create"), 0)
IFACE = "<interface type='ethernet' name='eth7'><mac address='aa:bb:cc:dd:ee:07'/></interface>"
step("iface-define", lambda: conn.interfaceDefineXML(IFACE, 0).name())
step("iface-new-xml", lambda: conn.interfaceLookupByName("eth7").XMLDesc(0))
step("iface-new-active", lambda: conn.interfaceLookupByName("eth7").isActive())
step("defifaces-with-new", lambda: sorted(conn.listDefinedInterfaces()))
step("iface-new-undefine", lambda: conn.interfaceLookupByName("eth7").undefine())
step("iface-new-gone", conn.interfaceLookupByName, "eth7")
step("iface-commit-none", M(conn, "changeCommit"), 0)
step("iface-rollback-none", M(conn, "changeRollback"), 0)
step("iface-begin", M(conn, "changeBegin"), 0)
step("iface-begin-again", M(conn, "changeBegin"), 0)
step("iface-change", lambda: (conn.interfaceDefineXML(IFACE.replace("eth7", "eth5"), 0).name(),
                              conn.interfaceLookupByName("eth1").destroy(0)))
step("iface-rollback", M(conn, "changeRollback"), 0)
step("iface-after-rollback", lambda: [sorted(conn.listInterfaces()), sorted(conn.listDefinedInterfaces())])
step("iface-begin-commit", lambda: (conn.changeBegin(0), conn.interfaceLookupByName("eth1").create(0),
                                    conn.changeCommit(0)))
step("iface-after-commit", lambda: [sorted(conn.listInterfaces()), sorted(conn.listDefinedInterfaces())])
step("iface-begin-flags", M(conn, "changeBegin"), 1)

# -- node devices -----------------------------------------------------------------------------
step("numdevs", conn.numOfDevices, None, 0)
step("devs", lambda: sorted(conn.listDevices(None, 0)))
step("devs-scsi_host", lambda: sorted(conn.listDevices("scsi_host", 0)))
step("devs-fc_host", lambda: sorted(conn.listDevices("fc_host", 0)))
step("devs-vports", lambda: sorted(conn.listDevices("vports", 0)))
step("alldevs", lambda: names(conn.listAllDevices(0)))
step("alldevs-fc_host", lambda: names(conn.listAllDevices(1 << 9)))
step("alldevs-system", lambda: names(conn.listAllDevices(1)))
for devname in ("computer", "scsi_host1", "scsi_host2", "scsi_host11"):
    step(f"dev-{devname}", lambda n=devname: [conn.nodeDeviceLookupByName(n).XMLDesc(0),
                                              conn.nodeDeviceLookupByName(n).parent(),
                                              conn.nodeDeviceLookupByName(n).numOfCaps(),
                                              conn.nodeDeviceLookupByName(n).listCaps()])
step("dev-missing", conn.nodeDeviceLookupByName, "nope")
VHBA = ("<device><parent>scsi_host1</parent><capability type='scsi_host'><capability type='fc_host'>"
        "<wwnn>2000000012341234</wwnn><wwpn>1000000012341234</wwpn></capability></capability></device>")
step("dev-create", lambda: conn.nodeDeviceCreateXML(VHBA, 0).name())
step("dev-created", lambda: [conn.nodeDeviceLookupByName("scsi_host12").XMLDesc(0),
                             conn.nodeDeviceLookupByName("scsi_host12").parent(), sorted(conn.listDevices(None, 0))])
step("dev-create-again", lambda: conn.nodeDeviceCreateXML(VHBA, 0).name())
step("dev-create-not-fc", lambda: conn.nodeDeviceCreateXML(
    "<device><parent>computer</parent><capability type='scsi_host'/></device>", 0).name())
step("dev-create-no-parent", lambda: conn.nodeDeviceCreateXML(VHBA.replace("scsi_host1", "nope"), 0).name())
step("dev-create-parent-not-vport", lambda: conn.nodeDeviceCreateXML(VHBA.replace("scsi_host1", "computer"), 0).name())
step("dev-create-flags", lambda: conn.nodeDeviceCreateXML(VHBA, 2).name())
step("dev-destroy", lambda: conn.nodeDeviceLookupByName("scsi_host12").destroy())
step("dev-destroyed", conn.nodeDeviceLookupByName, "scsi_host12")
step("dev-destroy-not-vhba", lambda: (conn.nodeDeviceLookupByName("computer").destroy(),
                                      sorted(conn.listDevices(None, 0))))

# -- statistics, vCPUs, metadata, save images (what exporters and virt-manager read) ---------
def vcpus_seen():
    info, maps = dom.vcpus()
    return [[[n, st, t > 0, cpu] for n, st, t, cpu in info], maps]     # CPU time grows


step("stats-vcpus", vcpus_seen)
step("stats-memory", M(dom, "memoryStats"))
step("stats-all", lambda: sorted([d.name(), s] for d, s in conn.getAllDomainStats(0, 0)))   # libvirt: hash order
step("stats-all-state", lambda: sorted([d.name(), s] for d, s in conn.getAllDomainStats(1, 0)))
step("stats-cpu-total", M(dom, "getCPUStats"), True)
step("stats-node-cpu", M(conn, "getCPUStats"), -1, 0)
step("stats-disk-errors", M(dom, "diskErrors"), 0)
step("sysinfo", M(conn, "getSysinfo"), 0)
step("setvcpus", M(dom, "setVcpusFlags"), 1, 0)
step("setvcpus-count", lambda: [dom.vcpusFlags(0), dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM), dom.info()[3]])
step("setvcpus-xml", M(dom, "XMLDesc"), 0)
step("setvcpus-too-many", M(dom, "setVcpusFlags"), 9, 0)
step("setmeta", M(dom, "setMetadata"), libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "a walker", None, None, 0)
step("getmeta", M(dom, "metadata"), libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None, 0)
ELEMENT, APP = libvirt.VIR_DOMAIN_METADATA_ELEMENT, "http://example.org/app"
step("meta-element-missing", M(dom, "metadata"), ELEMENT, APP, 0)
step("meta-element-set", M(dom, "setMetadata"), ELEMENT, "<app><owner>ops</owner></app>", "ex", APP, 0)
step("meta-element-get", M(dom, "metadata"), ELEMENT, APP, 0)
step("meta-element-config", M(dom, "metadata"), ELEMENT, APP, CONFIG)
step("meta-element-set-config", M(dom, "setMetadata"), ELEMENT, "<app><owner>dev</owner></app>", "ex", APP, CONFIG)
step("meta-element-both", M(dom, "metadata"), ELEMENT, APP, CONFIG | LIVE)
step("meta-element-no-uri", M(dom, "metadata"), ELEMENT, None, 0)
step("meta-title", lambda: (dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, "A title", None, None, 0),
                            dom.metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None, 0)))
step("meta-xml", lambda: [dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)])
step("meta-element-remove", lambda: (dom.setMetadata(ELEMENT, None, None, APP, 0), dom.metadata(ELEMENT, APP, 0)))
SAVEDIR = tempfile.mkdtemp(prefix="testwalk-")
IMAGE = os.path.join(SAVEDIR, "test.img")
step("save", M(dom, "save"), IMAGE)
step("save-state", M(dom, "state"))
step("save-image-xml", M(conn, "saveImageGetXMLDesc"), IMAGE, 0)
step("restore", M(conn, "restore"), IMAGE)
step("restore-state", M(dom, "state"))
step("restore-again", M(conn, "restore"), IMAGE)
step("restore-missing", M(conn, "restore"), os.path.join(SAVEDIR, "missing.img"))
CORE = os.path.join(SAVEDIR, "core")
step("save-image-define", M(conn, "saveImageDefineXML"), IMAGE,
     NEW.replace("walker", "test").replace("11112222-3333-4444-5555-666677778888",
                                           "6695eb01-f6a4-8304-79aa-97f2502e193f"), 0)
step("save-image-define-xml", M(conn, "saveImageGetXMLDesc"), IMAGE, 0)
step("save-image-define-flags", M(conn, "saveImageDefineXML"), IMAGE, NEW, 8)
step("core-dump", lambda: (dom.coreDump(CORE, 0), list(open(CORE, "rb").read())))
step("core-dump-kdump", lambda: dom.coreDumpWithFormat(CORE + "2", libvirt.VIR_DOMAIN_CORE_DUMP_FORMAT_KDUMP_ZLIB, 0))
step("core-dump-no-dir", M(dom, "coreDump"), os.path.join(SAVEDIR, "nope", "core"), 0)
step("core-dump-flags", M(dom, "coreDump"), CORE, 1 << 10)
step("save-image-define-not-image", M(conn, "saveImageDefineXML"), CORE, NEW, 0)
step("save-image-xml-truncated", lambda: (open(CORE, "ab").write(b"\x10\x00"), conn.saveImageGetXMLDesc(CORE, 0)))
out = json.loads(json.dumps(out, default=lambda o: type(o).__name__).replace(SAVEDIR, "DIR"))   # a new dir each run
shutil.rmtree(SAVEDIR, ignore_errors=True)

# -- events: everything the walk did, in order --------------------------------------------
with cond:
    cond.wait_for(lambda: len(seen) >= 30, timeout=30)    # libvirt's test driver sends 30
out.append(["events", seen])
conn.domainEventDeregisterAny(events[0])
conn.networkEventDeregisterAny(events[1])
conn.storagePoolEventDeregisterAny(events[2])
conn.close()
print(json.dumps(out, default=lambda o: type(o).__name__))
