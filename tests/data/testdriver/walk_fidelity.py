"""The differential walk of test-driver details libvirt 9.0 fixes in its generic domain
code and its snapshot API, and its parser's errors for malformed documents
(see tests/test_test_driver_fidelity_diff.py).

Run as ``PYTHON walk_fidelity.py MODULE URI``: MODULE is ``libvirt`` (python3-libvirt)
or ``pyvirt``.  It prints one JSON list of ``[step, value]``; a failed call's value is
``["ERR", code, domain, message]``.  The walk works on domains of its own (named
``fid*``) and removes them at the end.

Snapshots are named by the walk (a snapshot made without a name is named after the
clock), and their XML is not recorded: the walk looks at what the calls answer.
"""

import json

from walkbase import URI, libvirt, out, step


S = "VIR_DOMAIN_SNAPSHOT_CREATE_"
CREATE = {name[len(S):]: getattr(libvirt, name) for name in dir(libvirt) if name.startswith(S)}


def domain_xml(name, devices="", uuid_tail="0"):
    return (f"<domain type='test'><name>{name}</name><uuid>5b1c0e2a-7d3f-4c8e-9a6b-2f4d8e1c3a7{uuid_tail}</uuid>"
            f"<memory>65536</memory><os><type>hvm</type></os><devices>{devices}</devices></domain>")


def snap(name):
    return f"<domainsnapshot><name>{name}</name></domainsnapshot>"


def fid_domains(conn, flags):
    return sorted(d.name() for d in conn.listAllDomains(flags) if d.name().startswith("fid"))


def snapshot_names(dom, flags=0):
    return sorted(dom.snapshotListNames(flags))


def undefine_all(conn):
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith("fid"):
            continue
        if dom.isActive():
            dom.destroy()       # a transient domain is gone with it
        try:
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError:
            pass


conn = libvirt.open(URI)
ro = libvirt.openReadOnly(URI)
HAS, NO = libvirt.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT, libvirt.VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT

# -- the domain list's snapshot filter ----------------------------------------------------------
FILE = "<disk type='file' device='disk'><source file='/guest/fid.img'/><target dev='vda' bus='virtio'/></disk>"
dom = conn.defineXML(domain_xml("fid", FILE))
other = conn.defineXML(domain_xml("fid-other", FILE, "1"))
step("has-snapshot-none", fid_domains, conn, HAS)
step("no-snapshot-none", fid_domains, conn, NO)
step("create-s1", lambda: dom.snapshotCreateXML(snap("s1")).getName())
step("has-snapshot", fid_domains, conn, HAS)
step("no-snapshot", fid_domains, conn, NO)
step("has-and-no-snapshot", fid_domains, conn, HAS | NO)
step("has-snapshot-inactive", fid_domains, conn, HAS | libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE)
step("has-snapshot-read-only", fid_domains, ro, HAS)

# -- snapshot creation's flags ------------------------------------------------------------------
create = lambda xml, flags=0: dom.snapshotCreateXML(xml, flags).getName()   # noqa: E731
for label in ("NO_METADATA", "DISK_ONLY", "REUSE_EXT"):
    step(f"create-flag-{label}", create, snap(f"f-{label}"), CREATE[label])
step("create-flag-unknown", create, snap("f-unknown"), 1 << 12)
step("create-current-alone", create, snap("f-cur"), CREATE["CURRENT"])
step("create-redefine-no-metadata", create, snap("f-rn"), CREATE["REDEFINE"] | CREATE["NO_METADATA"])
step("create-redefine-halt", create, snap("f-rh"), CREATE["REDEFINE"] | CREATE["HALT"])
for label in ("QUIESCE", "ATOMIC", "LIVE", "VALIDATE"):
    step(f"create-flag-{label}", create, snap(f"f-{label.lower()}"), CREATE[label])
step("after-flags", snapshot_names, dom)
step("create-exists", create, snap("s1"))
step("create-not-xml", create, "not xml")
step("create-wrong-root", create, "<domain/>")
step("create-validate-bad", create, "<domainsnapshot><name>v</name><foo/></domainsnapshot>", CREATE["VALIDATE"])
step("create-read-only", lambda: ro.lookupByName("fid").snapshotCreateXML(snap("ro")).getName())
step("create-halt-transient", lambda: conn.createXML(domain_xml("fid-transient", FILE, "2"), 0)
     .snapshotCreateXML(snap("t"), CREATE["HALT"]).getName())
step("halt-running", lambda: (dom.create(), create(snap("halted"), CREATE["HALT"]), dom.state())[1:])
step("halted-snapshot-state", lambda: dom.snapshotLookupByName("halted").getXMLDesc().count("<state>running</state>"))

# -- snapshot errors and their domains ----------------------------------------------------------
s1 = dom.snapshotLookupByName("s1")
step("lookup-missing", lambda: dom.snapshotLookupByName("nope").getName())
step("lookup-bad-flags", lambda: dom.snapshotLookupByName("s1", 1).getName())
step("xml-bad-flags", lambda: s1.getXMLDesc(2) and None)
step("xml-secure-read-only", lambda: ro.lookupByName("fid").snapshotLookupByName("s1").getXMLDesc(1) and None)
step("parent-of-root", lambda: s1.getParent().getName())
step("parent-bad-flags", lambda: s1.getParent(1).getName())
step("num-bad-flags", dom.snapshotNum, 1 << 12)
step("children-bad-flags", s1.numChildren, 1 << 12)
step("is-current-bad-flags", s1.isCurrent, 1)
step("has-metadata-bad-flags", s1.hasMetadata, 1)
step("current-bad-flags", lambda: dom.snapshotCurrent(1).getName())
step("has-current-bad-flags", dom.hasCurrentSnapshot, 1)
step("current-none", lambda: other.snapshotCurrent().getName())
step("revert-exclusive", dom.revertToSnapshot, s1, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING |
     libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
step("revert-bad-flags", dom.revertToSnapshot, s1, 1 << 12)
step("revert-read-only", lambda: ro.lookupByName("fid").revertToSnapshot(
    ro.lookupByName("fid").snapshotLookupByName("s1")))
step("delete-exclusive", s1.delete, libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN |
     libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)
step("delete-bad-flags", s1.delete, 1 << 12)
step("delete-read-only", lambda: ro.lookupByName("fid").snapshotLookupByName("s1").delete())
step("delete-s1", s1.delete)
step("delete-s1-again", s1.delete)
step("undefine-with-snapshots", dom.undefine)

# -- undefinition's refusals ---------------------------------------------------------------------
transient = conn.createXML(domain_xml("fid-transient-2", FILE, "a"), 0)
step("undefine-transient", transient.undefine)
step("undefine-transient-after", lambda: [transient.isActive(), transient.isPersistent()])
undefine_all(conn)
saved = conn.defineXML(domain_xml("fid-saved", FILE, "9"))
saved.create()
saved.managedSave()
step("undefine-managed-save", saved.undefine)
step("undefine-managed-save-flag", saved.undefineFlags, libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
step("undefine-managed-save-gone", fid_domains, conn, 0)
undefine_all(conn)

# -- snapshot redefinition (snapshot-edit, snapshot-current NAME) --------------------------------
red = conn.defineXML(domain_xml("fid-redef", FILE, "7"))
red_create = lambda xml, flags=0: red.snapshotCreateXML(xml, flags).getName()   # noqa: E731
REDEFINE, CURRENT = CREATE["REDEFINE"], CREATE["CURRENT"]


def meta(name, state="shutoff", parent=None, extra=""):
    up = f"<parent><name>{parent}</name></parent>" if parent else ""
    return (f"<domainsnapshot><name>{name}</name><state>{state}</state>{up}"
            f"<creationTime>1234567890</creationTime>{extra}</domainsnapshot>")


red_create(snap("ra"))
red_create(snap("rb"))
current = lambda: red.snapshotCurrent().getName()   # noqa: E731
parent_of = lambda name: red.snapshotLookupByName(name).getParent().getName()   # noqa: E731
step("redefine-dump-current", red_create, red.snapshotLookupByName("ra").getXMLDesc(), REDEFINE | CURRENT)
step("redefine-dump-current-is", current)
step("redefine-dump-parent-kept", parent_of, "rb")
step("redefine-not-current", red_create, red.snapshotLookupByName("rb").getXMLDesc(), REDEFINE)
step("redefine-not-current-is", current)
step("redefine-new", red_create, meta("rn", parent="ra", extra="<description>new one</description>"), REDEFINE)
step("redefine-new-xml", lambda: red.snapshotLookupByName("rn").getXMLDesc())
step("redefine-new-parent", parent_of, "rn")
step("redefine-new-current-is", current)
step("redefine-list", snapshot_names, red)
step("redefine-roots", snapshot_names, red, libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS)
step("redefine-reparent", red_create, meta("rn", parent="rb"), REDEFINE | CURRENT)
step("redefine-reparent-parent", parent_of, "rn")
step("redefine-reparent-current-is", current)
step("redefine-with-domain", red_create, meta("rd", extra=domain_xml("fid-redef", "", "7")), REDEFINE)
step("redefine-with-domain-xml", lambda: red.snapshotLookupByName("rd").getXMLDesc())
step("redefine-err-own-parent", red_create, meta("rx", parent="rx"), REDEFINE)
step("redefine-err-no-parent", red_create, meta("rx", parent="zz"), REDEFINE)
step("redefine-err-cycle", red_create, meta("ra", parent="rn"), REDEFINE)
step("redefine-err-uuid", red_create, meta("rx", extra=domain_xml("fid-redef", "", "8")), REDEFINE)
step("redefine-err-online", red_create, meta("ra", state="running"), REDEFINE)
step("redefine-err-disk-state", red_create, meta("ra", state="disk-snapshot"), REDEFINE)
step("redefine-keeps-its-domain", red_create, meta("ra", extra="<description>again</description>"), REDEFINE)
step("redefine-kept-domain", lambda: "<domain type='test'>" in red.snapshotLookupByName("ra").getXMLDesc())
step("redefine-err-no-state", red_create, "<domainsnapshot><name>rx</name></domainsnapshot>", REDEFINE)
step("redefine-err-no-time", red_create, "<domainsnapshot><name>rx</name><state>shutoff</state>"
     "</domainsnapshot>", REDEFINE)
step("redefine-err-no-name", red_create, "<domainsnapshot><state>shutoff</state>"
     "<creationTime>1</creationTime></domainsnapshot>", REDEFINE)
step("redefine-err-disk-only", red_create, meta("rx"), REDEFINE | CREATE["DISK_ONLY"])
step("redefine-after-errors", snapshot_names, red)
undefine_all(conn)

# -- a disk without a source --------------------------------------------------------------------
NO_SOURCE = {
    "disk-file": "<disk type='file' device='disk'><target dev='vdc' bus='virtio'/></disk>",
    "disk-block": "<disk type='block' device='disk'><target dev='vdc' bus='virtio'/></disk>",
    "disk-empty-source": "<disk type='file' device='disk'><source/><target dev='vdc' bus='virtio'/></disk>",
    "cdrom": "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>",
    "floppy": "<disk type='file' device='floppy'><target dev='fda' bus='fdc'/></disk>",
    "lun": "<disk type='block' device='lun'><target dev='sdc' bus='scsi'/></disk>",
    "lun-empty-source": "<disk type='block' device='lun'><source/><target dev='sdc' bus='scsi'/></disk>",
    "volume": "<disk type='volume' device='disk'><target dev='vdc' bus='virtio'/></disk>",
}
for label, disk in NO_SOURCE.items():
    step(f"no-source-define-{label}", lambda d=disk: conn.defineXML(domain_xml("fid-nosrc", d, "3")).name())
    step(f"no-source-create-{label}", lambda d=disk: conn.createXML(domain_xml("fid-nosrc-t", d, "4")).name())
    undefine_all(conn)

# -- the addresses and controllers of a definition ----------------------------------------------
DISKS = {
    "ide": "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>"
           "<disk type='file' device='disk'><source file='/guest/e.img'/><target dev='hde' bus='ide'/></disk>",
    "scsi": "<disk type='file' device='disk'><source file='/guest/s.img'/><target dev='sdb' bus='scsi'/></disk>"
            "<disk type='file' device='disk'><source file='/guest/t.img'/><target dev='sdi'/></disk>",
    "sata": "<disk type='file' device='disk'><source file='/guest/a.img'/><target dev='sdb' bus='sata'/></disk>"
            "<disk type='file' device='disk'><source file='/guest/b.img'/><target dev='sdh' bus='sata'/></disk>",
    "fdc": "<disk type='file' device='floppy'><source file='/guest/f.img'/><target dev='fdb' bus='fdc'/></disk>",
    "given-address": "<disk type='file' device='disk'><source file='/guest/g.img'/><target dev='hda' bus='ide'/>"
                     "<address type='drive' controller='1' bus='0' target='0' unit='1'/></disk>",
    "given-controller": "<controller type='ide' index='0'/><controller type='scsi' index='0' model='lsilogic'/>"
                        "<disk type='file' device='disk'><source file='/guest/h.img'/><target dev='hdb'/></disk>"
                        "<disk type='file' device='disk'><source file='/guest/i.img'/><target dev='sda'/></disk>",
    "virtio": FILE,
    "many-ide": "".join(f"<disk type='file' device='disk'><source file='/guest/{n}.img'/><target dev='hd{n}'/></disk>"
                        for n in "hfbd"),
    "no-bus-mixed": "<disk type='file' device='disk'><source file='/guest/v.img'/><target dev='vdb'/></disk>"
                    "<disk type='file' device='disk'><source file='/guest/w.img'/><target dev='sdc' bus='scsi'/></disk>"
                    "<disk type='file' device='disk'><source file='/guest/x.img'/><target dev='hda'/></disk>",
    "bad-name": "<disk type='file' device='disk'><source file='/guest/n.img'/><target dev='disk1' bus='ide'/></disk>",
    "virtio-channel": "<channel type='pty'><target type='virtio' name='org.example.0'/></channel>",
}
for label, devices in DISKS.items():
    if isinstance(step(f"define-{label}", lambda: conn.defineXML(domain_xml(f"fid-{label}", devices, "5")).name()),
                  list):
        continue
    d = conn.lookupByName(f"fid-{label}")
    step(f"define-{label}-xml", d.XMLDesc, 0)
    step(f"start-{label}", d.create)
    step(f"start-{label}-xml", d.XMLDesc, 0)
    step(f"start-{label}-inactive-xml", d.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE)
    undefine_all(conn)

undefine_all(conn)
step("left-behind", fid_domains, conn, 0)

# -- malformed documents: libvirt's parser error, each document named as its API names it -------
# (a tag mismatch on line 2, a start tag cut short, a tab and a two-byte character before the
# stop, a document cut off after its last line, and none at all)
BAD = {
    "mismatch": "<x>\n  <name>x</nam>\n</x>\n",
    "cut": "<x",
    "tab-utf8": "<x>\t\u00e9<y></x>",
    "premature": "<x>\n<name>x</name>\n",
    "empty": "",
}
default_pool = conn.storagePoolLookupByName("default-pool")
for label, text in BAD.items():
    step(f"bad-xml-domain-{label}", conn.defineXML, text)
    step(f"bad-xml-network-{label}", conn.networkDefineXML, text)
    step(f"bad-xml-pool-{label}", conn.storagePoolDefineXML, text, 0)
    step(f"bad-xml-volume-{label}", default_pool.createXML, text, 0)
    step(f"bad-xml-interface-{label}", conn.interfaceDefineXML, text, 0)
    step(f"bad-xml-node-device-{label}", conn.nodeDeviceCreateXML, text, 0)
step("bad-xml-network-create", conn.networkCreateXML, BAD["mismatch"])
step("bad-xml-domain-create", conn.createXML, BAD["mismatch"], 0)
# a domain's device: libvirt 9.0's test driver has no device attach, pyvirt's has (KNOWN)
step("bad-xml-device", conn.lookupByName("test").attachDevice, BAD["mismatch"])
for kind, define in (("domain", conn.defineXML), ("network", conn.networkDefineXML),
                     ("pool", lambda text: conn.storagePoolDefineXML(text, 0))):
    step(f"wrong-root-{kind}", define, "<other/>")


def masked(value):
    """A domain's id changes with every start of the host's domains: masked in the XML."""
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str):
        import re
        return re.sub(r"(<domain type='test') id='\d+'", r"\1 id='ID'", value)
    return value


print(json.dumps(masked(out)))
