"""Unit tests of one layer each: snapshot XML, the metadata tree, the list filters,
libvirt's disk alignment rules and virsh's tree and spec layouts (no QEMU)."""

from __future__ import annotations

import pytest

from pyvirt.cli.snapshot_cmds import _diskspec, _memspec, _tree_lines
from pyvirt.conf import snapshot as snapxml
from pyvirt.conf.devices import Disk
from pyvirt.drivers.qemu import snapshot as snapmod
from pyvirt.drivers.qemu.snapshot_store import SnapshotTree, tree_for
from pyvirt.enums_more import DomainSnapshotListFlags as L
from pyvirt.errors import ErrorNumber, libvirtError


def test_client_xml_reads_only_what_a_new_snapshot_may_ask():
    snap = snapxml.parse("""<domainsnapshot><name>s1</name><description>d &amp; e</description>
      <state>paused</state><creationTime>5</creationTime>
      <memory snapshot='no'/>
      <disks><disk name='vda' snapshot='external'><source file='/i/o.qcow2'/></disk>
             <disk name='vdb'><driver type='qcow2'/></disk><disk name='hdc' snapshot='no'/></disks>
    </domainsnapshot>""")
    assert (snap.name, snap.description, snap.memory, snap.state) == ("s1", "d & e", "no", None)
    assert snap.creation_time > 5                     # libvirt sets it, the client cannot
    assert [(d.name, d.snapshot, d.source) for d in snap.disks] == [
        ("vda", "external", "/i/o.qcow2"), ("vdb", "external", None), ("hdc", "no", None)]


def test_format_is_libvirts_layout_and_metadata_round_trips():
    from pyvirt import conf
    domain = conf.parse("<domain type='kvm'><name>g</name><uuid>b6a4afe4-a06d-4091-b3e3-cd8e59b93c62</uuid>"
                        "<memory>1024</memory><os><type>hvm</type></os></domain>").format(secure=True)
    snap = snapxml.SnapshotDef(name="s2", description="x", state="disk-snapshot", creation_time=1700000000,
                               memory="no", parent="s1",
                               disks=[snapxml.SnapshotDisk("vda", "external", "/i/g.s2", "qcow2"),
                                      snapxml.SnapshotDisk("hdc", "no")],
                               domain_xml=domain, current=True)
    assert snap.format() == """<domainsnapshot>
  <name>s2</name>
  <description>x</description>
  <state>disk-snapshot</state>
  <parent>
    <name>s1</name>
  </parent>
  <creationTime>1700000000</creationTime>
  <memory snapshot='no'/>
  <disks>
    <disk name='vda' snapshot='external' type='file'>
      <driver type='qcow2'/>
      <source file='/i/g.s2'/>
    </disk>
    <disk name='hdc' snapshot='no'/>
  </disks>
""" + "".join(f"  {line}\n" for line in domain.splitlines()) + """</domainsnapshot>
"""
    stored = snap.format(internal=True)
    assert stored.endswith("  <active>1</active>\n</domainsnapshot>\n")
    back = snapxml.parse(stored, redefine=True)
    assert back.format(internal=True) == stored
    assert back.is_external and back.location == "external" and back.current


@pytest.mark.parametrize("xml, code, text", [
    ("<domainsnapshot><name>a/b</name></domainsnapshot>", ErrorNumber.XML_DETAIL,
     "invalid snapshot name 'a/b': name can't contain '/'"),
    ("<domainsnapshot><memory snapshot='external'/></domainsnapshot>", ErrorNumber.XML_ERROR,
     "memory snapshot file path must be specified with external memory snapshot"),
    ("<domainsnapshot><disks><disk name='vda'/><disk name='vda'/></disks></domainsnapshot>",
     ErrorNumber.CONFIG_UNSUPPORTED, "disk 'vda' specified twice"),
    ("<domain/>", ErrorNumber.XML_ERROR, "expecting root element of 'domainsnapshot', not 'domain'"),
])
def test_bad_snapshot_xml(xml, code, text):
    with pytest.raises(libvirtError) as err:
        snapxml.parse(xml)
    assert err.value.get_error_code() == code and text in str(err.value)
    if code == ErrorNumber.XML_DETAIL:      # libvirt words XML_DETAIL without a prefix
        assert str(err.value) == text


def _tree(tmp_path, *specs: tuple[str, str | None, str]) -> SnapshotTree:
    snaps = tree_for(tmp_path, "g")
    for n, (name, parent, state) in enumerate(specs):
        snaps.save(snapxml.SnapshotDef(name=name, parent=parent, state=state, creation_time=n,
                                       memory="internal" if state == "running" else "no",
                                       disks=[snapxml.SnapshotDisk("vda", "external" if state == "disk-snapshot"
                                                                   else "internal")]))
    return snaps


def test_tree_reparents_children_and_keeps_the_current_one_on_disk(tmp_path):
    snaps = _tree(tmp_path, ("a", None, "shutoff"), ("b", "a", "running"), ("c", "b", "shutoff"),
                  ("d", "a", "disk-snapshot"))
    snaps.set_current(snaps.get("c"))
    assert [s.name for s in snaps.descendants(None)] == ["a", "b", "c", "d"]
    assert [s.name for s in snaps.children("a")] == ["b", "d"]
    snaps.remove("b")
    again = tree_for(tmp_path, "g")                  # what a restarted daemon reads
    assert again.get("c").parent == "a" and again.current.name == "c"
    assert "b" not in again and len(again) == 3
    with pytest.raises(libvirtError) as err:
        again.get("b")
    assert err.value.get_error_code() == ErrorNumber.NO_DOMAIN_SNAPSHOT


def test_list_filters(tmp_path):
    snaps = _tree(tmp_path, ("a", None, "shutoff"), ("b", "a", "running"), ("c", "b", "disk-snapshot"))

    def names(flags: int) -> list[str]:
        return [s.name for s in snaps.descendants(None) if snapmod.matches(snaps, s, flags)]
    assert names(0) == ["a", "b", "c"]
    assert names(L.LEAVES) == ["c"] and names(L.NO_LEAVES) == ["a", "b"]
    assert names(L.LEAVES | L.NO_LEAVES) == ["a", "b", "c"]
    assert names(L.INACTIVE) == ["a"] and names(L.ACTIVE) == ["b"] and names(L.DISK_ONLY) == ["c"]
    assert names(L.INACTIVE | L.DISK_ONLY) == ["a", "c"]
    assert names(L.INTERNAL) == ["a", "b"] and names(L.EXTERNAL) == ["c"]
    assert names(L.METADATA) == ["a", "b", "c"] and names(L.NO_METADATA) == []


def _disk(dev: str, source: str | None, fmt: str = "qcow2", **kw) -> Disk:
    return Disk(target_dev=dev, target_bus="virtio", source=source, driver_type=fmt, **kw)


def test_disk_alignment_as_libvirt():
    snap = snapxml.SnapshotDef(name="s9")
    pairs = snapmod.align_disks(snap, [_disk("vda", "/i/g.qcow2"), _disk("vdb", "/i/data"),
                                       _disk("hdc", None, "raw", device="cdrom", readonly=True)], "external")
    assert [(sd.name, sd.snapshot, sd.source) for _d, sd in pairs] == [
        ("vda", "external", "/i/g.s9"), ("vdb", "external", "/i/data.s9"), ("hdc", "no", None)]
    relative = snapxml.SnapshotDef(name="r", disks=[snapxml.SnapshotDisk("vda", "external", "o.qcow2")])
    with pytest.raises(libvirtError, match="snapshot file of disk 'vda' 'o.qcow2' must be absolute"):
        snapmod.align_disks(relative, [_disk("vda", "/i/g.qcow2")], "external")
    with pytest.raises(libvirtError, match="no disk named 'sdz'"):
        snapmod.align_disks(snapxml.SnapshotDef(name="x", disks=[snapxml.SnapshotDisk("sdz")]),
                            [_disk("vda", "/i/g.qcow2")], "internal")


def test_plan_refusals_in_libvirts_words():
    def plan(disks, memory, state="running", default="internal"):
        snap = snapxml.SnapshotDef(name="p", memory=memory, state=state)
        return snapmod._check_plan(snap, snapmod.align_disks(snap, disks, default), True)
    with pytest.raises(libvirtError, match="internal snapshot for disk vda unsupported for storage type raw"):
        plan([_disk("vda", "/i/g.img", "raw")], "internal")
    with pytest.raises(libvirtError, match="nothing selected for snapshot"):
        plan([_disk("vda", None)], "no")
    snap = snapxml.SnapshotDef(name="p", memory="internal", state="running",
                               disks=[snapxml.SnapshotDisk("vdb", "no")])
    with pytest.raises(libvirtError, match="require all disks to be selected"):
        snapmod._check_plan(snap, snapmod.align_disks(snap, [_disk("vda", "/a"), _disk("vdb", "/b")],
                                                      "internal"), True)
    assert plan([_disk("vda", "/i/g.qcow2")], "no", "disk-snapshot", "external") == 1


def test_virsh_tree_layout():
    # virsh snapshot-list --tree for a with children b (child c) and d (trailing blanks as virsh's)
    assert _tree_lines(["a", "b", "c", "d"], [None, "a", "b", "a"]) == [
        "a", "  |", "  +- b", "  |   |", "  |   +- c", "  |     ", "  +- d", "    "]
    assert _tree_lines(["x"], [None]) == ["x", ""]


def test_virsh_specs():
    assert _memspec("snapshot=no") == "  <memory snapshot='no'/>\n"
    assert _memspec("/m.save") == "  <memory file='/m.save'/>\n"
    assert _diskspec("vda,snapshot=external,driver=qcow2,file=/o,,x") == (
        "    <disk name='vda' snapshot='external'>\n      <driver type='qcow2'/>\n"
        "      <source file='/o,x'/>\n    </disk>\n")
    assert _diskspec("hdc,snapshot=no") == "    <disk name='hdc' snapshot='no'/>\n"
