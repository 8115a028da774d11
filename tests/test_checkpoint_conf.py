"""Unit tests of one layer each: checkpoint XML (parse, format, libvirt's disk alignment),
the test driver's checkpoint tree, the wire rows and the drivers that have no checkpoints."""

from __future__ import annotations

import os

import pytest

from pyvirt import aio
from pyvirt.conf import checkpoint as chkxml
from pyvirt.conf.devices import Disk
from pyvirt.driver import ConnectionInfo, EventBus, HypervisorConnection
from pyvirt.drivers.test import checkpoints as chkdrv
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError
from pyvirt.refs import DomainCheckpointRef, DomainRef

HAVE_SCHEMA = os.path.exists(chkxml.CHECKPOINT_RNG)


def _err(fn, *args, **kwargs) -> tuple[int, int, str]:
    with pytest.raises(libvirtError) as info:
        fn(*args, **kwargs)
    return info.value.get_error_code(), info.value.get_error_domain(), info.value.get_error_message()


def _disks(*specs: tuple[str, str | None, bool]) -> list[Disk]:
    return [Disk(target_dev=dev, target_bus="virtio", source=src, readonly=ro) for dev, src, ro in specs]


# -- parse ------------------------------------------------------------------------------------

def test_new_checkpoint_reads_name_description_disks_and_takes_the_clock():
    chk = chkxml.parse("<domaincheckpoint><name>c1</name><description>a &amp; b</description>"
                       "<parent><name>p</name></parent><creationTime>7</creationTime>"
                       "<disks><disk name='vda' bitmap='bm' size='99'/><disk name='vdb' checkpoint='no'/></disks>"
                       "</domaincheckpoint>", now=1700000000)
    # a new checkpoint's parent and time are the driver's, not the client's; a size is never read
    assert (chk.name, chk.description, chk.parent, chk.creation_time) == ("c1", "a & b", None, 1700000000)
    assert [(d.name, d.type, d.bitmap, d.size) for d in chk.disks] == [("vda", "bitmap", "bm", None),
                                                                      ("vdb", "no", None, None)]


def test_a_checkpoint_without_a_name_is_named_after_its_creation_time():
    chk = chkxml.parse("<domaincheckpoint><description/></domaincheckpoint>", now=1234)
    assert (chk.name, chk.creation_time, chk.description) == ("1234", 1234, None)


def test_redefinition_reads_everything_and_keeps_the_domain_as_text():
    chk = chkxml.parse("<domaincheckpoint><name>r</name><creationTime>42</creationTime>"
                       "<parent><name>p</name></parent><domain type='test'><name>d</name></domain>"
                       "</domaincheckpoint>", redefine=True)
    assert (chk.name, chk.parent, chk.creation_time) == ("r", "p", 42)
    assert chk.domain_xml is not None and chk.domain_xml.endswith("<name>d</name></domain>")


@pytest.mark.parametrize("xml, expected", [
    ("<domaincheckpoint><creationTime>5</creationTime></domaincheckpoint>",
     (ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN_CHECKPOINT, "XML error: a redefined checkpoint must have a name")),
    ("<domaincheckpoint><name>r</name></domaincheckpoint>",
     (ErrorNumber.INTERNAL_ERROR, ErrorDomain.DOMAIN_CHECKPOINT,
      "internal error: missing creationTime from existing checkpoint")),
])
def test_redefinition_needs_a_name_and_a_time(xml, expected):
    assert _err(chkxml.parse, xml, redefine=True) == expected


def test_syntax_errors_read_as_libvirts_with_the_line_and_a_caret():
    assert _err(chkxml.parse, "<domaincheckpoint>\n  <name>x</nam>\n</domaincheckpoint>") == (
        ErrorNumber.XML_DETAIL, ErrorDomain.DOMAIN_CHECKPOINT,
        "(domain_checkpoint):2: Opening and ending tag mismatch: name line 2 and nam\n  <name>x</nam>\n"
        "---------------^")     # libvirt 9.0's own answer to this document
    assert _err(chkxml.parse, "")[2] == "(domain_checkpoint):1: Document is empty\n(null)\n^"


def test_the_root_must_be_a_domaincheckpoint():
    assert _err(chkxml.parse, "<domainsnapshot/>") == (
        ErrorNumber.XML_ERROR, ErrorDomain.XML, "XML error: expecting root element of 'domaincheckpoint', "
                                                "not 'domainsnapshot'")


@pytest.mark.skipif(not HAVE_SCHEMA, reason="libvirt's schemas are not installed")
@pytest.mark.parametrize("body, detail", [
    ("<foo/>", "Element domaincheckpoint has extra content: foo\n"),
    ("<name>a/b</name>", "Extra element name in interleave\nElement domaincheckpoint failed to validate content\n"),
    ("<disks/>", "Extra element disks in interleave\nElement domaincheckpoint failed to validate content\n"),
])
def test_libvirts_schema_refuses_what_it_refuses(body, detail):
    code, domain, message = _err(chkxml.parse, f"<domaincheckpoint>{body}</domaincheckpoint>")
    assert (code, domain) == (ErrorNumber.XML_INVALID_SCHEMA, ErrorDomain.XML)
    assert message == ("XML document failed to validate against schema: Unable to validate doc against "
                       f"{chkxml.CHECKPOINT_RNG}\n{detail}")


# -- disks --------------------------------------------------------------------------------------

def test_no_disks_named_means_a_bitmap_on_every_disk_that_can_have_one():
    chk = chkxml.CheckpointDef(name="c")
    chkxml.align_disks(chk, _disks(("vda", "/a", False), ("vdb", "/b", True), ("hdc", None, False)))
    assert [(d.name, d.type, d.bitmap) for d in chk.disks] == [("vda", "bitmap", "c"), ("vdb", "no", None),
                                                              ("hdc", "no", None)]


def test_named_disks_are_aligned_to_the_domain_order_by_target_the_rest_get_none():
    chk = chkxml.CheckpointDef(name="c", disks=[chkxml.CheckpointDisk("/b", "bitmap", "own")])
    chkxml.align_disks(chk, _disks(("vda", "/a", False), ("vdb", "/b", False)))
    assert [(d.name, d.type, d.bitmap) for d in chk.disks] == [("vda", "no", None), ("vdb", "bitmap", "own")]


@pytest.mark.parametrize("names, disks, message", [
    (["vdz"], [("vda", "/a", False)], "no disk named 'vdz'"),
    (["vda", "/a"], [("vda", "/a", False), ("vdb", "/b", False)], "disk '/a' specified twice"),
    (["vdb"], [("vda", "/a", False), ("vdb", "/b", True)], "disk 'vdb' is empty or readonly"),
    (["hdc"], [("hdc", None, False)], "disk 'hdc' is empty or readonly"),
    (["vda", "vda"], [("vda", "/a", False)], "too many disk checkpoint requests for domain"),
    ([], [], "domain must have at least one disk to perform checkpoints"),
    # a source path names a disk only when one disk has it
    (["/a"], [("vda", "/a", False), ("vdb", "/a", False)], "no disk named '/a'"),
])
def test_disk_requests_libvirt_refuses(names, disks, message):
    chk = chkxml.CheckpointDef(name="c", disks=[chkxml.CheckpointDisk(n, "bitmap") for n in names])
    assert _err(chkxml.align_disks, chk, _disks(*disks)) == (
        ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN_CHECKPOINT, f"unsupported configuration: {message}")


# -- format -------------------------------------------------------------------------------------

def test_format_is_libvirts_layout_and_reads_back():
    chk = chkxml.CheckpointDef(name="c2", description="d < e", creation_time=1700000000, parent="c1",
                               disks=[chkxml.CheckpointDisk("vda", "bitmap", "c2", size=1024),
                                      chkxml.CheckpointDisk("hdc", "no")])
    domain = "<domain type='test'>\n  <name>g</name>\n</domain>\n"
    text = chk.format(domain_xml=domain)
    assert text == """<domaincheckpoint>
  <name>c2</name>
  <description>d &lt; e</description>
  <parent>
    <name>c1</name>
  </parent>
  <creationTime>1700000000</creationTime>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='c2'/>
    <disk name='hdc' checkpoint='no'/>
  </disks>
  <domain type='test'>
    <name>g</name>
  </domain>
</domaincheckpoint>
"""
    assert "size='1024'" in chk.format(size=True)       # only with XML_SIZE, and only for a bitmap
    back = chkxml.parse(chk.format(), redefine=True)
    assert (back.name, back.description, back.parent, back.creation_time) == ("c2", "d < e", "c1", 1700000000)
    assert [(d.name, d.type, d.bitmap) for d in back.disks] == [("vda", "bitmap", "c2"), ("hdc", "no", None)]


# -- the test driver's tree ------------------------------------------------------------------------

def _tree(*edges: tuple[str, str | None]) -> chkdrv.CheckpointTree:
    tree = chkdrv.CheckpointTree()
    for name, parent in edges:
        chk = chkdrv.Checkpoint(chkxml.CheckpointDef(name=name, parent=parent), None, None)
        tree.by_name[name] = chk
        tree.link_parent(chk)
    return tree


def test_children_come_newest_first_and_topological_lists_put_parents_first():
    tree = _tree(("a", None), ("b", "a"), ("c", "a"), ("d", "b"), ("e", None))
    names = lambda found: [c.name for c in found]      # noqa: E731
    assert names(tree.select(None, chkdrv.LIST_ROOTS)) == ["e", "a"]
    assert names(tree.select(tree.by_name["a"], 0)) == ["c", "b"]
    assert names(tree.select(None, chkdrv.LIST_TOPOLOGICAL)) == ["e", "a", "c", "b", "d"]
    assert names(tree.select(tree.by_name["a"], chkdrv.LIST_DESCENDANTS)) == ["c", "b", "d"]
    assert names(tree.select(None, chkdrv.LIST_LEAVES)) == ["c", "d", "e"]
    assert names(tree.select(None, chkdrv.LIST_NO_LEAVES)) == ["a", "b"]
    assert tree.select(None, chkdrv.LIST_LEAVES | chkdrv.LIST_NO_LEAVES) == []


def test_moving_children_up_puts_them_before_the_new_parents_own():
    tree = _tree(("a", None), ("b", "a"), ("x", "b"), ("y", "b"), ("c", "a"))
    b = tree.by_name["b"]
    tree.move_children(b, b.parent)
    tree.drop_parent(b)
    assert [c.name for c in tree.kids(tree.by_name["a"])] == ["y", "x", "c"]


# -- the wire and the drivers without checkpoints ------------------------------------------------------

def test_the_checkpoint_handle_and_its_rows_on_the_wire():
    from pyvirt.rpc.protocol import PROGRAMS
    from pyvirt.rpc.xdr import NonnullDomainCheckpoint
    ref = DomainCheckpointRef("c1", DomainRef("test", bytes(range(16)), 1))
    data = NonnullDomainCheckpoint.encode(ref)
    assert NonnullDomainCheckpoint.decode(data) == ref
    rows = {p.number: p for p in PROGRAMS[0x20008086].procedures}
    assert [rows[n].method for n in range(411, 418)] == [
        "domain_checkpoint_create_xml", "domain_checkpoint_get_xml_desc", "domain_list_all_checkpoints",
        "domain_checkpoint_list_all_children", "domain_checkpoint_lookup_by_name", "domain_checkpoint_get_parent",
        "domain_checkpoint_delete"]
    # a read-only connection may read, but not the secure XML, and may not create or delete
    assert rows[412].refused_read_only((ref, 1)) and not rows[412].refused_read_only((ref, 2))
    assert rows[411].mutates and rows[417].mutates and not rows[413].mutates
    ret = rows[413].ret.encode(([ref], 1))
    assert rows[413].ret.decode(ret) == ([ref], 1)


def test_a_driver_without_checkpoints_answers_libvirts_no_support():
    from pyvirt.drivers.qemu.connection import QemuConnection
    conn = HypervisorConnection(ConnectionInfo(uri="x:///"), EventBus())
    dom = DomainRef("g", bytes(16), -1)
    for method in ("domain_checkpoint_create_xml", "domain_list_all_checkpoints", "domain_checkpoint_delete"):
        assert getattr(QemuConnection, method) is getattr(HypervisorConnection, method)
    code, domain, message = _err(aio.run, conn.domain_checkpoint_create_xml(dom, "<domaincheckpoint/>", 0))
    assert (code, domain) == (ErrorNumber.NO_SUPPORT, ErrorDomain.DOMAIN_CHECKPOINT)
    assert message == "this function is not supported by the connection driver: virDomainCheckpointCreateXML"
