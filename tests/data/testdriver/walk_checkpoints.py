"""The differential walk of a test-driver host's domain checkpoints
(see tests/test_test_driver_checkpoints_diff.py).

Run as ``PYTHON walk_checkpoints.py MODULE URI``: MODULE is ``libvirt`` (python3-libvirt)
or ``pyvirt``.  It prints one JSON list of ``[step, value]``; a failed call's value is
``["ERR", code, domain, message]``.  The walk works on two domains of its own and
removes them at the end, so the host is left as it was found.

Times are the clock's: a checkpoint made without a name is named after its creation
time, and every new checkpoint records it, so the walk writes ``GEN`` for that name and
``NOW`` for any creation time read during the walk.  Lists whose order libvirt leaves
unspecified (a domain's every checkpoint, in its hash table's order) are sorted; lists
of roots or children and topological lists keep libvirt's order.
"""

import json
import re
import time

from walkbase import URI, libvirt, out, step, M
START = int(time.time())


C = "VIR_DOMAIN_CHECKPOINT_"
F = {name[len(C):]: getattr(libvirt, name) for name in dir(libvirt) if name.startswith(C)}


def names(chks):
    return [c.getName() for c in chks]


def made(fn):
    """A call that returns a checkpoint, recorded by the checkpoint's name."""
    return lambda *args: fn(*args).getName()


def all_checkpoints(dom, flags=0):
    found = names(dom.listAllCheckpoints(flags))
    unordered = not flags & (F["LIST_ROOTS"] | F["LIST_TOPOLOGICAL"])
    return sorted(found) if unordered else found


def lookup(dom, name):
    return dom.checkpointLookupByName(name)


def parent(dom, name, flags=0):
    return lookup(dom, name).getParent(flags).getName()


def children(dom, name, flags=0):
    return names(lookup(dom, name).listAllChildren(flags))


def xml(dom, name, flags=0):
    return lookup(dom, name).getXMLDesc(flags)


def tree(dom):
    """Every checkpoint with its parent (None for a root), by name."""
    out = {}
    for chk in dom.listAllCheckpoints(0):
        try:
            out[chk.getName()] = chk.getParent().getName()
        except libvirt.libvirtError:
            out[chk.getName()] = None
    return dict(sorted(out.items()))


def domains_with(conn, flags):
    return sorted(d.name() for d in conn.listAllDomains(flags) if d.name().startswith("chk"))


conn = libvirt.open(URI)
ro = libvirt.openReadOnly(URI)

DOM_XML = """<domain type='test'>
  <name>chk</name>
  <uuid>4e3a6c71-2b8d-4f4e-9d1a-6c2b7e5f8a10</uuid>
  <memory>65536</memory>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/guest/chk-a.img'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='/guest/chk-b.img'/><target dev='vdb' bus='virtio'/>
      <readonly/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
  </devices>
</domain>"""
OFF_XML = """<domain type='test'>
  <name>chk-off</name>
  <uuid>4e3a6c71-2b8d-4f4e-9d1a-6c2b7e5f8a11</uuid>
  <memory>65536</memory>
  <os><type>hvm</type></os>
  <devices><disk type='file' device='disk'><source file='/guest/chk-off.img'/><target dev='vda'/></disk></devices>
</domain>"""
dom = conn.defineXML(DOM_XML)
off = conn.defineXML(OFF_XML)
step("start", M(dom, "create"))


def chk(body=""):
    return f"<domaincheckpoint>{body}</domaincheckpoint>"


# -- creation ----------------------------------------------------------------------------
create = made(M(dom, "checkpointCreateXML"))
gen = step("create-plain", create, chk())
step("plain-name-is-time", lambda: gen.isdigit() and START <= int(gen) <= time.time())
step("plain-xml", xml, dom, gen)
step("plain-xml-no-domain", xml, dom, gen, F["XML_NO_DOMAIN"])
step("plain-xml-secure", xml, dom, gen, F["XML_SECURE"])
step("plain-xml-size", xml, dom, gen, F["XML_SIZE"] | F["XML_NO_DOMAIN"])
step("plain-xml-all-flags", xml, dom, gen, F["XML_SIZE"] | F["XML_NO_DOMAIN"] | F["XML_SECURE"])
step("plain-xml-bad-flags", xml, dom, gen, 8)
step("create-named", create,
     chk("<name>c1</name><description>first &amp; &lt;best&gt; 'one'</description>"))
step("named-xml", xml, dom, "c1", F["XML_NO_DOMAIN"])
step("create-disks", create,
     chk("<name>c2</name><disks><disk name='vda' bitmap='b2'/><disk name='vdb' checkpoint='no'/></disks>"))
step("disks-xml", xml, dom, "c2", F["XML_NO_DOMAIN"])
step("create-by-path", create,
     chk("<name>c3</name><disks><disk name='/guest/chk-a.img' checkpoint='bitmap'/></disks>"))
step("by-path-xml", xml, dom, "c3", F["XML_NO_DOMAIN"])
step("create-quiesce", create, chk("<name>c4</name>"), F["CREATE_QUIESCE"])
step("create-ignores-parent-and-time", create,
     chk("<name>c5</name><parent><name>c1</name></parent><creationTime>7</creationTime>"))
step("ignored-xml", xml, dom, "c5", F["XML_NO_DOMAIN"])
step("create-size-attr-ignored", create,
     chk("<name>c6</name><disks><disk name='vda' size='99'/></disks>"))
step("size-attr-xml", xml, dom, "c6", F["XML_NO_DOMAIN"] | F["XML_SIZE"])

# -- creation refused ----------------------------------------------------------------------
step("err-readonly-disk", create, chk("<name>e</name><disks><disk name='vdb'/></disks>"))
step("err-empty-disk", create, chk("<name>e</name><disks><disk name='hdc' checkpoint='bitmap'/></disks>"))
step("err-no-such-disk", create, chk("<name>e</name><disks><disk name='vdz'/></disks>"))
step("err-disk-twice", create, chk("<name>e</name><disks><disk name='vda'/><disk name='/guest/chk-a.img'/></disks>"))
step("err-too-many-disks", create, chk("<name>e</name><disks>" + "<disk name='vda'/>" * 4 + "</disks>"))
step("err-exists", create, chk("<name>c1</name>"))
step("err-bad-flags", create, chk("<name>e</name>"), 8)
step("err-redefine-quiesce", create, chk("<name>e</name>"), F["CREATE_REDEFINE"] | F["CREATE_QUIESCE"])
step("err-validate-alone", create, chk("<name>e</name>"), F["CREATE_REDEFINE_VALIDATE"])
step("err-redefine-validate", create, chk("<name>e</name><creationTime>5</creationTime>"),
     F["CREATE_REDEFINE"] | F["CREATE_REDEFINE_VALIDATE"])
step("err-not-xml", create, "not xml")
step("err-empty-document", create, "")
step("err-bad-syntax-line-2", create, "<domaincheckpoint>\n  <name>x</nam>\n</domaincheckpoint>")
step("err-wrong-root", create, "<domainsnapshot/>")
step("err-schema-element", create, chk("<foo/>"))
step("err-schema-name", create, chk("<name>a/b</name>"))
step("err-schema-dot-name", create, chk("<name>.hidden</name>"))
step("err-schema-checkpoint-value", create, chk("<disks><disk name='vda' checkpoint='maybe'/></disks>"))
step("err-schema-empty-disks", create, chk("<disks/>"))
step("err-inactive", made(M(off, "checkpointCreateXML")), chk("<name>e</name>"))
step("snapshot-on-off", made(M(off, "snapshotCreateXML")), "<domainsnapshot><name>s1</name></domainsnapshot>")
step("err-snapshot-exists", made(M(off, "checkpointCreateXML")), chk("<name>e</name>"))
step("snapshot-delete", lambda: off.snapshotLookupByName("s1").delete())
step("err-snapshot-while-checkpoint", made(M(dom, "snapshotCreateXML")),
     "<domainsnapshot><name>s2</name></domainsnapshot>")
step("err-readonly-create", made(M(ro.lookupByName("chk"), "checkpointCreateXML")), chk("<name>e</name>"))
step("err-readonly-secure-xml", lambda: ro.lookupByName("chk").checkpointLookupByName("c1").getXMLDesc(F["XML_SECURE"]))
step("readonly-xml", lambda: ro.lookupByName("chk").checkpointLookupByName("c1").getXMLDesc(F["XML_NO_DOMAIN"]))
step("err-readonly-delete", lambda: ro.lookupByName("chk").checkpointLookupByName("c1").delete())
step("readonly-list", lambda: all_checkpoints(ro.lookupByName("chk")))
step("after-errors", all_checkpoints, dom)

# -- redefinition ----------------------------------------------------------------------------
redefine = lambda text, flags=0: create(text, F["CREATE_REDEFINE"] | flags)   # noqa: E731
step("redefine-new", redefine,
     chk("<name>r1</name><creationTime>1234567890</creationTime><parent><name>c4</name></parent>"
         "<disks><disk name='vda'/></disks>"))
step("redefine-new-xml", xml, dom, "r1")
step("redefine-existing", redefine, chk("<name>c1</name><description>again</description>"
                                              "<creationTime>1234567000</creationTime>"))
step("redefine-existing-xml", xml, dom, "c1")
step("redefine-existing-parent", parent, dom, "c1")
c2_xml = step("c2-full-xml", xml, dom, "c2")
step("redefine-from-dump", redefine, c2_xml)
step("redefine-from-dump-same", lambda: xml(dom, "c2") == c2_xml)
step("redefine-with-domain", redefine,
     chk("<name>r2</name><creationTime>1234567891</creationTime><parent><name>r1</name></parent>"
         "<disks><disk name='vdb' checkpoint='no'/></disks>" + DOM_XML))
step("redefine-with-domain-xml", xml, dom, "r2")
step("redefine-quiesce-refused", redefine, chk("<name>q</name><creationTime>1</creationTime>"), F["CREATE_QUIESCE"])
step("err-redefine-no-name", redefine, chk("<creationTime>5</creationTime>"))
step("err-redefine-no-time", redefine, chk("<name>r9</name>"))
step("err-redefine-bad-time", redefine, chk("<name>r9</name><creationTime>soon</creationTime>"))
step("err-redefine-no-parent", redefine, chk("<name>r9</name><creationTime>5</creationTime>"
                                             "<parent><name>zz</name></parent>"))
step("err-redefine-own-parent", redefine, chk("<name>r9</name><creationTime>5</creationTime>"
                                              "<parent><name>r9</name></parent>"))
step("err-redefine-cycle", redefine, chk("<name>c4</name><creationTime>5</creationTime>"
                                         "<parent><name>r2</name></parent>"))
step("err-redefine-uuid", redefine, chk("<name>r9</name><creationTime>5</creationTime>" + OFF_XML))
step("err-redefine-domain-disk", redefine,
     chk("<name>r9</name><creationTime>5</creationTime><disks><disk name='vdz'/></disks>" + DOM_XML))
step("create-after-redefine", create, chk("<name>c7</name>"))
step("create-after-redefine-parent", parent, dom, "c7")

# -- lookups, parents, children, lists -----------------------------------------------------------
step("tree", tree, dom)
for name in ("c1", "c4", "r1", "nope"):
    step(f"lookup-{name}", made(lookup), dom, name)
step("lookup-bad-flags", made(M(dom, "checkpointLookupByName")), "c1", 1)
for name in (gen, "c1", "c2", "c7", "r2", "nope"):
    step(f"parent-{'gen' if name == gen else name}", parent, dom, name)
step("parent-bad-flags", parent, dom, "c2", 1)
LIST_FLAGS = {"none": 0, "roots": F["LIST_ROOTS"], "leaves": F["LIST_LEAVES"], "no-leaves": F["LIST_NO_LEAVES"],
              "leaves-and-not": F["LIST_LEAVES"] | F["LIST_NO_LEAVES"], "topological": F["LIST_TOPOLOGICAL"],
              "roots-topological": F["LIST_ROOTS"] | F["LIST_TOPOLOGICAL"],
              "leaves-topological": F["LIST_LEAVES"] | F["LIST_TOPOLOGICAL"],
              "roots-leaves": F["LIST_ROOTS"] | F["LIST_LEAVES"],
              "roots-no-leaves": F["LIST_ROOTS"] | F["LIST_NO_LEAVES"],
              "bad": 16}
for label, flags in LIST_FLAGS.items():
    step(f"list-{label}", all_checkpoints, dom, flags)
CHILD_FLAGS = {"none": 0, "descendants": F["LIST_DESCENDANTS"],
               "descendants-topological": F["LIST_DESCENDANTS"] | F["LIST_TOPOLOGICAL"],
               "topological": F["LIST_TOPOLOGICAL"], "leaves": F["LIST_DESCENDANTS"] | F["LIST_LEAVES"],
               "no-leaves": F["LIST_DESCENDANTS"] | F["LIST_NO_LEAVES"], "bad": 16}
for name in (gen, "c2", "c4", "r2"):
    for label, flags in CHILD_FLAGS.items():
        step(f"children-{'gen' if name == gen else name}-{label}", children, dom, name, flags)
step("children-kept-by-redefined", children, dom, "c1")
step("domains-with-checkpoints", domains_with, conn, libvirt.VIR_CONNECT_LIST_DOMAINS_HAS_CHECKPOINT)
step("domains-without-checkpoints", domains_with, conn, libvirt.VIR_CONNECT_LIST_DOMAINS_NO_CHECKPOINT)

# -- deletion ------------------------------------------------------------------------------------
# a branch under c7 to delete in each way: c7 -> d1 -> d2 -> d3, d1 -> d4 (redefined), d2 -> d5
for name, under in (("d1", "c7"), ("d2", "d1"), ("d3", "d2"), ("d4", "d1"), ("d5", "d2")):
    step(f"branch-{name}", redefine, chk(f"<name>{name}</name><creationTime>1234567900</creationTime>"
                                               f"<parent><name>{under}</name></parent>"))
step("branch-tree", tree, dom)
step("branch-topological", children, dom, "c7", F["LIST_DESCENDANTS"] | F["LIST_TOPOLOGICAL"])
stale = lookup(dom, "d3")
step("delete-leaf", M(stale, "delete"))
step("delete-leaf-again", M(stale, "delete"))
step("after-delete-leaf", children, dom, "d2", F["LIST_DESCENDANTS"])
step("delete-reparent", lambda: lookup(dom, "d2").delete())
step("after-reparent-d5-parent", parent, dom, "d5")
step("after-reparent-d1-children", children, dom, "d1")
step("delete-children-only", lambda: lookup(dom, "d1").delete(F["DELETE_CHILDREN_ONLY"]))
step("after-children-only", children, dom, "c7", F["LIST_DESCENDANTS"])
step("after-children-only-gone", made(lookup), dom, "d4")
step("delete-metadata-only", lambda: lookup(dom, "d1").delete(F["DELETE_METADATA_ONLY"]))
step("after-metadata-only", children, dom, "c7", F["LIST_DESCENDANTS"])
step("delete-exclusive", lambda: lookup(dom, "c7").delete(F["DELETE_CHILDREN"] | F["DELETE_CHILDREN_ONLY"]))
step("delete-bad-flags", lambda: lookup(dom, "c7").delete(8))
# the current checkpoint (c7, the last made) goes: the next one's parent is c7's parent
step("delete-current", lambda: lookup(dom, "c7").delete())
step("create-after-current-deleted", create, chk("<name>c8</name>"))
step("create-after-current-deleted-parent", parent, dom, "c8")
step("delete-children-of-root", lambda: lookup(dom, gen).delete(F["DELETE_CHILDREN"]))
step("after-delete-children", tree, dom)
step("create-after-subtree-deleted", create, chk("<name>c9</name>"))
step("create-after-subtree-deleted-parent", parent, dom, "c9")
step("tree-before-stop", tree, dom)

# -- a domain that stopped, and its undefinition ------------------------------------------------
step("destroy", M(dom, "destroy"))
step("stopped-xml", xml, dom, "c9", F["XML_NO_DOMAIN"])
step("stopped-xml-size", xml, dom, "c9", F["XML_SIZE"])
step("stopped-list", all_checkpoints, dom)
step("stopped-create", create, chk("<name>c10</name>"))
step("stopped-domains-with-checkpoints", domains_with, conn, libvirt.VIR_CONNECT_LIST_DOMAINS_HAS_CHECKPOINT)
step("undefine-checkpoints-metadata", M(dom, "undefineFlags"), libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
step("undefine-with-checkpoints", M(dom, "undefine"))
step("after-undefine", lambda: conn.lookupByName("chk").name())
step("undefine-off", M(off, "undefine"))


def normalised(value, end):
    if isinstance(value, list):
        return [normalised(v, end) for v in value]
    if isinstance(value, dict):
        return {normalised(k, end): normalised(v, end) for k, v in value.items()}
    if isinstance(value, str):
        value = re.sub(r"<creationTime>(\d+)</creationTime>",
                       lambda m: "<creationTime>NOW</creationTime>" if START <= int(m[1]) <= end else m[0], value)
        return value.replace(gen, "GEN") if isinstance(gen, str) and gen.isdigit() else value
    return value


print(json.dumps(normalised(out, int(time.time()))))
