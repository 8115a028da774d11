"""Snapshot commands: snapshot-create, snapshot-create-as, snapshot-list, snapshot-info,
snapshot-dumpxml, snapshot-current, snapshot-revert, snapshot-delete, snapshot-parent,
snapshot-edit — with virsh's options, messages and layouts."""

from __future__ import annotations

import argparse
import time
from typing import Any
from xml.sax.saxutils import escape

import pyvirt
from pyvirt.errors import ErrorNumber, libvirtError

from .domain_cmds import add_domain_arg, lookup, read_file
from .output import print_table
from .registry import CommandError, Handler, command

XML_SECURE = 1          # VIR_DOMAIN_SNAPSHOT_XML_SECURE
_CREATE_FLAGS = (("no_metadata", "NO_METADATA"), ("halt", "HALT"), ("disk_only", "DISK_ONLY"),
                 ("reuse_external", "REUSE_EXT"), ("quiesce", "QUIESCE"), ("atomic", "ATOMIC"),
                 ("live", "LIVE"), ("validate", "VALIDATE"))


def quoteattr(value: str) -> str:
    """An attribute value as virsh's virBufferEscapeString writes it: single quotes."""
    return "'" + escape(value, {"'": "&apos;", '"': "&quot;"}) + "'"


def _refused(message: str) -> CommandError:
    """An error virsh's option check gives before running the command (no blank line)."""
    err = CommandError(message)
    err.options_refused = True    # type: ignore[attr-defined]
    return err


def _add_domain(p: argparse.ArgumentParser) -> None:
    """<domain>, and virsh's filling of data options in order wherever the flags are
    (snapshot-create-as DOM --print-xml NAME DESC): argparse does that for optional
    positionals only when it parses them apart from the flags."""
    add_domain_arg(p)
    p.parse_args = p.parse_intermixed_args      # type: ignore[method-assign]


def _failed(what: str, exc: libvirtError) -> CommandError:
    err = CommandError(what)
    err.__cause__ = exc
    return err


def _add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-metadata", action="store_true", help="take snapshot but create no metadata")
    p.add_argument("--halt", action="store_true", help="halt domain after snapshot is created")
    p.add_argument("--disk-only", action="store_true", help="capture disk state but not vm state")
    p.add_argument("--reuse-external", action="store_true", help="reuse any existing external files")
    p.add_argument("--quiesce", action="store_true", help="quiesce guest's file systems")
    p.add_argument("--atomic", action="store_true", help="require atomic operation")
    p.add_argument("--live", action="store_true", help="take a live snapshot")
    p.add_argument("--validate", action="store_true", help="validate the XML against the schema")


def _create_flags(args: argparse.Namespace) -> int:
    flags = 0
    for attr, name in _CREATE_FLAGS:
        if getattr(args, attr, False):
            flags |= getattr(pyvirt, f"VIR_DOMAIN_SNAPSHOT_CREATE_{name}")
    return flags


def _create(dom: Any, xml: str, flags: int, source: str | None) -> None:
    try:
        snap = dom.snapshotCreateXML(xml, flags)
    except libvirtError as exc:
        raise CommandError(str(exc)) from None
    name = snap.getName()
    if source:
        print(f"Domain snapshot {name} created from '{source}'")
    else:
        print(f"Domain snapshot {name} created")


@command("snapshot-create", "Create a snapshot from XML")
def _snapshot_create(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    # virsh's optional string options, which may also be given in place: the place is hidden
    p.add_argument("xmlfile", nargs="?", metavar="XMLFILE", help=argparse.SUPPRESS)
    p.add_argument("--xmlfile", dest="xmlfile_opt", metavar="XMLFILE", help="domain snapshot XML")
    p.add_argument("--redefine", action="store_true", help="redefine metadata for existing snapshot")
    p.add_argument("--current", action="store_true", help="with redefine, set current snapshot")
    _add_create_flags(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = _create_flags(args)
        if args.redefine:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
        if args.current:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
        source = args.xmlfile_opt or args.xmlfile
        xml = read_file(source) if source else "<domainsnapshot/>"
        _create(lookup(conn, args), xml, flags, source)
    return run


def _memspec(spec: str) -> str:
    """virsh's --memspec '[file=]name[,snapshot=type]' as a <memory> element."""
    fields = _split_spec(spec)
    file = snapshot = None
    for n, (key, value) in enumerate(fields):
        if key is None and n == 0:
            file = value
        elif key == "file":
            file = value
        elif key == "snapshot":
            snapshot = value
        else:
            raise CommandError("unable to parse memspec: " + spec)
    if not file and snapshot != "no":
        raise CommandError("unable to parse memspec: " + spec)
    attrs = (f" snapshot={quoteattr(snapshot)}" if snapshot else "") + (f" file={quoteattr(file)}" if file else "")
    return f"  <memory{attrs}/>\n"


def _diskspec(spec: str) -> str:
    """virsh's --diskspec 'disk[,snapshot=type][,driver=type][,stype=type][,file=name]' as a <disk>."""
    fields = _split_spec(spec)
    if not fields or fields[0][0] is not None:
        raise CommandError("unable to parse diskspec: " + spec)
    name = fields[0][1]
    opts: dict[str, str] = {}
    for key, value in fields[1:]:
        if key not in ("snapshot", "driver", "stype", "file"):
            raise CommandError("unable to parse diskspec: " + spec)
        opts[key] = value
    head = f"    <disk name={quoteattr(name)}"
    if "snapshot" in opts:
        head += f" snapshot='{opts['snapshot']}'"
    if "stype" in opts:
        head += f" type='{opts['stype']}'"
    if "driver" not in opts and "file" not in opts:
        return head + "/>\n"
    out = head + ">\n"
    if "driver" in opts:
        out += f"      <driver type='{opts['driver']}'/>\n"
    if "file" in opts:
        attr = "dev" if opts.get("stype") == "block" else "file"
        out += f"      <source {attr}={quoteattr(opts['file'])}/>\n"
    return out + "    </disk>\n"


def _split_spec(spec: str) -> list[tuple[str | None, str]]:
    """'a,b=c' → [(None, 'a'), ('b', 'c')]; ',,' is a literal comma, as virsh's parser."""
    parts, cur, i = [], "", 0
    while i < len(spec):
        if spec[i] == "," and spec[i + 1:i + 2] == ",":
            cur += ","
            i += 2
            continue
        if spec[i] == ",":
            parts.append(cur)
            cur = ""
        else:
            cur += spec[i]
        i += 1
    parts.append(cur)
    out: list[tuple[str | None, str]] = []
    for part in parts:
        key, eq, value = part.partition("=")
        out.append((key, value) if eq else (None, part))
    return out


@command("snapshot-create-as", "Create a snapshot from a set of args")
def _snapshot_create_as(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    p.add_argument("name", nargs="?", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("description", nargs="?", metavar="DESCRIPTION", help=argparse.SUPPRESS)
    p.add_argument("--name", dest="name_opt", metavar="NAME", help="name of snapshot")
    p.add_argument("--description", dest="description_opt", metavar="DESCRIPTION", help="description of snapshot")
    p.add_argument("--print-xml", action="store_true", help="print XML document rather than create")
    _add_create_flags(p)
    p.add_argument("--memspec", metavar="MEMSPEC", help="memory attributes: [file=]name[,snapshot=type]")
    p.add_argument("--diskspec", action="append", default=[], metavar="DISKSPEC",
                   help="disk attributes: disk[,snapshot=type][,driver=type][,stype=type][,file=name]")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        name = args.name_opt or args.name
        desc = args.description_opt or args.description
        dom = lookup(conn, args)
        xml = "<domainsnapshot>\n"
        if name:
            xml += f"  <name>{escape(name)}</name>\n"
        if desc:
            xml += f"  <description>{escape(desc)}</description>\n"
        if args.memspec:
            xml += _memspec(args.memspec)
        if args.diskspec:
            xml += "  <disks>\n" + "".join(_diskspec(s) for s in args.diskspec) + "  </disks>\n"
        xml += "</domainsnapshot>\n"
        if args.print_xml:
            print(xml)
            print()
            return
        _create(dom, xml, _create_flags(args), None)
    return run


def _add_snapshot_arg(p: argparse.ArgumentParser, current_help: str = "", required: bool = False) -> None:
    """virsh's snapshot name: a required data option (<snapshotname>), or an optional string
    one ([--snapshotname <string>]); either may be given in place."""
    p.add_argument("snapshotname", nargs="?", metavar="SNAPSHOTNAME",
                   help="snapshot name" if required else argparse.SUPPRESS)
    p.add_argument("--snapshotname", dest="snapshotname_opt", metavar="SNAPSHOTNAME",
                   help=argparse.SUPPRESS if required else "snapshot name")
    if current_help:
        p.add_argument("--current", action="store_true", help=current_help)


def _snapshot(dom: Any, args: argparse.Namespace) -> Any:
    """virsh's virshLookupSnapshot: by name, or the current one with --current."""
    name = getattr(args, "snapshotname_opt", None) or args.snapshotname
    if getattr(args, "current", False) and name:
        raise CommandError("--snapshotname and --current are mutually exclusive")
    if name:
        return dom.snapshotLookupByName(name, 0)
    if getattr(args, "current", False):
        return dom.snapshotCurrent(0)
    raise CommandError("--snapshotname or --current is required")


def _parent_name(snap: Any) -> str | None:
    try:
        return snap.getParent(0).getName()
    except libvirtError as exc:
        if exc.get_error_code() == ErrorNumber.NO_DOMAIN_SNAPSHOT:
            return None
        raise


def _state_of(xml: str) -> str:
    from lxml import etree
    root = etree.fromstring(xml.encode())
    return (root.findtext("state") or "").strip()


@command("snapshot-info", "snapshot information")
def _snapshot_info(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    _add_snapshot_arg(p, "info on current snapshot")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        from lxml import etree
        dom = lookup(conn, args)
        snap = _snapshot(dom, args)
        xml = snap.getXMLDesc(0)
        root = etree.fromstring(xml.encode())
        state = (root.findtext("state") or "").strip()
        external = (root.find("memory") is not None and root.find("memory").get("snapshot") == "external") or \
            any(d.get("snapshot") == "external" for d in root.iterfind("disks/disk"))
        internal = (root.find("memory") is not None and root.find("memory").get("snapshot") == "internal") or \
            any(d.get("snapshot") == "internal" for d in root.iterfind("disks/disk"))
        rows = [("Name", snap.getName()), ("Domain", dom.name()),
                ("Current", "yes" if snap.isCurrent(0) else "no"), ("State", state),
                ("Location", "external" if external else "internal" if internal else "none"),
                ("Parent", _parent_name(snap) or "-"),
                ("Children", str(snap.numChildren(0))),
                ("Descendants", str(snap.numChildren(pyvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS))),
                ("Metadata", "yes" if snap.hasMetadata(0) else "no")]
        for label, value in rows:
            print(f"{label + ':':<15} {value}")
        print()
    return run


@command("snapshot-dumpxml", "Dump XML for a domain snapshot")
def _snapshot_dumpxml(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    _add_snapshot_arg(p, required=True)
    p.add_argument("--security-info", action="store_true", help="include security sensitive information in XML dump")
    p.add_argument("--xpath", metavar="STRING", help="xpath expression to filter the XML document")
    p.add_argument("--wrap", action="store_true", help="wrap xpath results in an common root element")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        if not (args.snapshotname_opt or args.snapshotname):
            raise _refused("command 'snapshot-dumpxml' requires <snapshotname> option")
        snap = _snapshot(dom, args)
        xml = snap.getXMLDesc(XML_SECURE if args.security_info else 0)
        if args.xpath is None:
            print(xml)
            return
        from .network_cmds import xpath_lines     # virsh's one --xpath layout
        print(xpath_lines(xml, args.xpath, args.wrap))
    return run


@command("snapshot-current", "Get or set the current snapshot")
def _snapshot_current(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    p.add_argument("--name", action="store_true", help="list the name, rather than the full xml")
    p.add_argument("--security-info", action="store_true", help="include security sensitive information in XML dump")
    _add_snapshot_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        name = args.snapshotname_opt or args.snapshotname
        if name:
            if args.name or args.security_info:
                raise CommandError("--name and --security-info are incompatible with --snapshotname"
                                   if args.name and args.security_info else
                                   f"Options --snapshotname and --{'name' if args.name else 'security-info'} "
                                   "are mutually exclusive")
            snap = dom.snapshotLookupByName(name, 0)
            xml = snap.getXMLDesc(XML_SECURE)
            dom.snapshotCreateXML(xml, pyvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
                                  | pyvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT)
            print(f"Snapshot {name} set as current")
            return
        if not dom.hasCurrentSnapshot(0):
            raise CommandError("domain has no current snapshot")
        snap = dom.snapshotCurrent(0)
        if args.name:
            print(snap.getName())
        else:
            print(snap.getXMLDesc(XML_SECURE if args.security_info else 0))
    return run


@command("snapshot-revert", "Revert a domain to a snapshot")
def _snapshot_revert(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    _add_snapshot_arg(p, "revert to current snapshot")
    p.add_argument("--running", action="store_true", help="after reverting, change state to running")
    p.add_argument("--paused", action="store_true", help="after reverting, change state to paused")
    p.add_argument("--force", action="store_true", help="try harder on risky reverts")
    p.add_argument("--reset-nvram", action="store_true", help="re-initialize NVRAM from its pristine template")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = 0
        if args.running:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
        if args.paused:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
        if args.reset_nvram:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RESET_NVRAM
        dom = lookup(conn, args)
        snap = _snapshot(dom, args)
        # virsh asks without FORCE first and adds it only where the daemon says it matters
        try:
            try:
                dom.revertToSnapshot(snap, flags)
            except libvirtError as exc:
                if not (args.force and exc.get_error_code() == ErrorNumber.SNAPSHOT_REVERT_RISKY):
                    raise
                dom.revertToSnapshot(snap, flags | pyvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)
        except libvirtError as exc:
            raise _failed(f"Failed to revert snapshot {snap.getName()}", exc)
        print(f"Domain snapshot {snap.getName()} reverted")
        print()
    return run


@command("snapshot-delete", "Delete a domain snapshot")
def _snapshot_delete(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    _add_snapshot_arg(p, "delete current snapshot")
    p.add_argument("--children", action="store_true", help="delete snapshot and all children")
    p.add_argument("--children-only", action="store_true", help="delete children but not snapshot")
    p.add_argument("--metadata", action="store_true", help="delete only libvirt metadata, leaving snapshot contents behind")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = 0
        if args.children:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN
        if args.children_only:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY
        if args.metadata:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY
        dom = lookup(conn, args)
        snap = _snapshot(dom, args)
        name = snap.getName()
        try:
            snap.delete(flags)
        except libvirtError as exc:
            raise _failed(f"Failed to delete snapshot {name}", exc)
        if args.children_only:
            print(f"Domain snapshot {name} children deleted")
        else:
            print(f"Domain snapshot {name} deleted")
        print()
    return run


@command("snapshot-parent", "Get the name of the parent of a snapshot")
def _snapshot_parent(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    _add_snapshot_arg(p, "find parent of current snapshot")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        snap = _snapshot(dom, args)
        parent = _parent_name(snap)
        if parent is None:
            raise CommandError(f"snapshot '{snap.getName()}' has no parent")
        print(parent)
    return run


# -- snapshot-list ------------------------------------------------------------------------
_LIST_FILTERS = (("roots", "ROOTS"), ("leaves", "LEAVES"), ("no_leaves", "NO_LEAVES"),
                 ("metadata", "METADATA"), ("no_metadata", "NO_METADATA"), ("inactive", "INACTIVE"),
                 ("active", "ACTIVE"), ("disk_only", "DISK_ONLY"), ("internal", "INTERNAL"),
                 ("external", "EXTERNAL"), ("topological", "TOPOLOGICAL"))


def _tree_lines(names: list[str], parents: list[str | None]) -> list[str]:
    """virsh's vshTreePrint: roots flush left, children under '  |' and '  +- '."""
    out: list[str] = []

    def walk(idx: int, lastdev: int, root: bool, indent: str) -> str:
        out.append(f"{indent}{'' if root else '+- '}{names[idx]}")
        if not root:
            indent += (" " if idx == lastdev else "|") + " "
        kids = [i for i, parent in enumerate(parents) if parent == names[idx]]
        nextlast = kids[-1] if kids else -1
        if kids:
            out.append(f"{indent}  |")
        indent += "  "
        for kid in kids:
            indent = walk(kid, nextlast, False, indent)
        indent = indent[:-2]
        if nextlast == -1 and idx == lastdev:
            out.append(indent)
        if not root:
            indent = indent[:-2]
        return indent

    for i, parent in enumerate(parents):
        if parent is None:
            walk(i, i, True, "")
    return out


@command("snapshot-list", "List snapshots for a domain")
def _snapshot_list(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    p.add_argument("--parent", action="store_true", help="add a column showing parent snapshot")
    p.add_argument("--roots", action="store_true", help="list only snapshots without parents")
    p.add_argument("--leaves", action="store_true", help="list only snapshots without children")
    p.add_argument("--no-leaves", action="store_true", help="list only snapshots that are not leaves (with children)")
    p.add_argument("--metadata", action="store_true", help="list only snapshots that have metadata that would prevent undefine")
    p.add_argument("--no-metadata", action="store_true", help="list only snapshots that have no metadata managed by libvirt")
    p.add_argument("--inactive", action="store_true", help="filter by snapshots taken while inactive")
    p.add_argument("--active", action="store_true", help="filter by snapshots taken while active (full system snapshots)")
    p.add_argument("--disk-only", action="store_true", help="filter by disk-only snapshots")
    p.add_argument("--internal", action="store_true", help="filter by internal snapshots")
    p.add_argument("--external", action="store_true", help="filter by external snapshots")
    p.add_argument("--tree", action="store_true", help="list snapshots in a tree")
    p.add_argument("--from", dest="from_", metavar="SNAPSHOT", help="limit list to children of given snapshot")
    p.add_argument("--current", action="store_true", help="limit list to children of current snapshot")
    p.add_argument("--descendants", action="store_true", help="with --from, list all descendants")
    p.add_argument("--name", action="store_true", help="list snapshot names only")
    p.add_argument("--topological", action="store_true", help="sort list topologically rather than by name")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        for a, b in (("parent", "roots"), ("parent", "tree"), ("roots", "tree"), ("tree", "name"),
                     ("roots", "from_"), ("roots", "current"), ("from_", "current")):
            if getattr(args, a) and getattr(args, b):
                raise CommandError(f"Options --{a.rstrip('_').replace('_', '-')} and "
                                   f"--{b.rstrip('_').replace('_', '-')} are mutually exclusive")
        flags = 0
        for attr, name in _LIST_FILTERS:
            if getattr(args, attr):
                flags |= getattr(pyvirt, f"VIR_DOMAIN_SNAPSHOT_LIST_{name}")
        dom = lookup(conn, args)
        start = None
        if args.current:
            start = dom.snapshotCurrent(0)
        elif args.from_:
            start = dom.snapshotLookupByName(args.from_, 0)
        if start is not None:
            if args.descendants or args.tree:
                flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS
            snaps = start.listAllChildren(flags)
        else:
            snaps = dom.listAllSnapshots(flags)
        if args.tree:
            entries = ([start] if start is not None else []) + snaps
            names = [s.getName() for s in entries]
            parents = [None if start is not None and n == 0 else _parent_name(s) for n, s in enumerate(entries)]
            parents = [p if p in names else None for p in parents]
            for line in _tree_lines(names, parents):
                print(line)
            print()
            return
        if args.name:
            for s in snaps:
                print(s.getName())
            print()
            return
        from lxml import etree
        rows = []
        for s in snaps:
            root = etree.fromstring(s.getXMLDesc(0).encode())
            created = int((root.findtext("creationTime") or "0").strip())
            when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(created))
            row = [s.getName(), when, (root.findtext("state") or "").strip()]
            if args.parent:
                row.append(root.findtext("parent/name") or "")
            rows.append(row)
        headers = ["Name", "Creation Time", "State"] + (["Parent"] if args.parent else [])
        print_table(headers, rows)
    return run


@command("snapshot-edit", "edit XML for a snapshot")
def _snapshot_edit(p: argparse.ArgumentParser) -> Handler:
    _add_domain(p)
    _add_snapshot_arg(p, "also set edited snapshot as current")
    p.add_argument("--rename", action="store_true", help="allow renaming an existing snapshot")
    p.add_argument("--clone", action="store_true", help="allow cloning to new name")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        from lxml import etree
        from .network_cmds import edit_xml
        if args.rename and args.clone:
            raise CommandError("Options --rename and --clone are mutually exclusive")
        dom = lookup(conn, args)
        name_given = bool(args.snapshotname_opt or args.snapshotname)
        snap = _snapshot(dom, args)
        name = snap.getName()
        flags = pyvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
        if args.current and name_given:
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
        elif snap.isCurrent(0):
            flags |= pyvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
        created: list[Any] = []

        def define(xml: str) -> None:
            new_name = (etree.fromstring(xml.encode()).findtext("name") or "").strip()
            if new_name != name and not (args.rename or args.clone):
                raise CommandError(f"Must use --rename or --clone to change {name} to {new_name}\n"
                                   f"Failed to update {name}")
            try:
                created.append(dom.snapshotCreateXML(xml, flags))
            except libvirtError as exc:
                raise _failed(f"Failed to update {name}", exc)
            if new_name != name and args.rename:
                snap.delete(pyvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)

        def current() -> str:
            return snap.getXMLDesc(XML_SECURE)

        if not edit_xml(current(), current, define):
            print(f"Snapshot {name} XML configuration not changed.\n")
            return
        new_name = created[0].getName()
        if new_name != name and args.clone:
            print(f"Snapshot {name} cloned to {new_name}.")
        elif new_name == name:
            print(f"Snapshot {name} edited.")
        print()             # a rename is silent in virsh 9.0: its blank line only
    return run
