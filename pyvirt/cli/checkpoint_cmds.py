"""Checkpoint commands: checkpoint-create, checkpoint-create-as, checkpoint-list,
checkpoint-info, checkpoint-dumpxml, checkpoint-parent, checkpoint-delete,
checkpoint-edit — with virsh's options, messages and layouts."""

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
from .snapshot_cmds import _split_spec, _tree_lines, quoteattr

C = "VIR_DOMAIN_CHECKPOINT_"


def _flag(name: str) -> int:
    return getattr(pyvirt, C + name)


def _failed(what: str, exc: libvirtError) -> CommandError:
    err = CommandError(what)
    err.__cause__ = exc
    return err


def _add_checkpoint_arg(p: argparse.ArgumentParser, help_text: str = "checkpoint name") -> None:
    """virsh's [--checkpointname] <string>: an optional string option, also given in place."""
    p.add_argument("checkpointname", nargs="?", metavar="CHECKPOINTNAME", help=argparse.SUPPRESS)
    p.add_argument("--checkpointname", dest="checkpointname_opt", metavar="CHECKPOINTNAME", help=help_text)


def _checkpoint(dom: Any, name: str | None, option: str = "checkpointname") -> Any:
    """virsh's virshLookupCheckpoint."""
    if not name:
        raise CommandError(f"--{option} is required")
    return dom.checkpointLookupByName(name, 0)


def _named(dom: Any, args: argparse.Namespace) -> Any:
    return _checkpoint(dom, args.checkpointname_opt or args.checkpointname)


def _parent_name(chk: Any) -> str | None:
    """virsh's virshGetCheckpointParent: None for a root."""
    try:
        return chk.getParent(0).getName()
    except libvirtError as exc:
        if exc.get_error_code() == ErrorNumber.NO_DOMAIN_CHECKPOINT:
            return None
        raise _failed("unable to determine if checkpoint has parent", exc) from None


def _create(dom: Any, xml: str, flags: int, source: str | None) -> None:
    chk = dom.checkpointCreateXML(xml, flags)
    name = chk.getName()
    print(f"Domain checkpoint {name} created from '{source}'" if source else f"Domain checkpoint {name} created")


@command("checkpoint-create", "Create a checkpoint from XML")
def _checkpoint_create(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("xmlfile", nargs="?", metavar="XMLFILE", help=argparse.SUPPRESS)
    p.add_argument("--xmlfile", dest="xmlfile_opt", metavar="XMLFILE", help="domain checkpoint XML")
    p.add_argument("--redefine", action="store_true", help="redefine metadata for existing checkpoint")
    p.add_argument("--redefine-validate", action="store_true", help="validate the redefined checkpoint")
    p.add_argument("--quiesce", action="store_true", help="quiesce guest's file systems")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        if args.redefine_validate and not args.redefine:
            raise CommandError("Option --redefine is required by option --redefine-validate")
        flags = sum(_flag(name) for attr, name in (("redefine", "CREATE_REDEFINE"),
                                                   ("redefine_validate", "CREATE_REDEFINE_VALIDATE"),
                                                   ("quiesce", "CREATE_QUIESCE")) if getattr(args, attr))
        dom = lookup(conn, args)
        source = args.xmlfile_opt or args.xmlfile
        xml = read_file(source) if source else "<domaincheckpoint/>"
        _create(dom, xml, flags, source)
    return run


def _diskspec(spec: str) -> str:
    """virsh's --diskspec 'disk[,checkpoint=type][,bitmap=name]' as a <disk>: the first field
    is the disk, whatever it holds; each other one is given at most once."""
    parts = [value if key is None else f"{key}={value}" for key, value in _split_spec(spec)]
    if not spec:
        raise CommandError("unable to parse diskspec: " + spec)
    opts: dict[str, str] = {}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        if key not in ("checkpoint", "bitmap") or key in opts or "=" not in part:
            raise CommandError("unable to parse diskspec: " + spec)
        opts[key] = value
    out = f"    <disk name={quoteattr(parts[0])}"
    for key in ("checkpoint", "bitmap"):       # written as given, as virsh does
        if key in opts:
            out += f" {key}='{opts[key]}'"
    return out + "/>\n"


@command("checkpoint-create-as", "Create a checkpoint from a set of args")
def _checkpoint_create_as(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("name", nargs="?", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("description", nargs="?", metavar="DESCRIPTION", help=argparse.SUPPRESS)
    p.add_argument("--name", dest="name_opt", metavar="NAME", help="name of checkpoint")
    p.add_argument("--description", dest="description_opt", metavar="DESCRIPTION",
                   help="description of checkpoint")
    p.add_argument("--print-xml", action="store_true", help="print XML document rather than create")
    p.add_argument("--quiesce", action="store_true", help="quiesce guest's file systems")
    p.add_argument("--diskspec", action="append", default=[], metavar="DISKSPEC",
                   help="disk attributes: disk[,checkpoint=type][,bitmap=name]")
    p.parse_args = p.parse_intermixed_args      # type: ignore[method-assign]

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        name = args.name_opt or args.name
        desc = args.description_opt or args.description
        dom = lookup(conn, args)
        xml = "<domaincheckpoint>\n"
        if name:
            xml += f"  <name>{escape(name, {chr(39): '&apos;', chr(34): '&quot;'})}</name>\n"
        if desc:
            xml += f"  <description>{escape(desc, {chr(39): '&apos;', chr(34): '&quot;'})}</description>\n"
        if args.diskspec:
            xml += "  <disks>\n" + "".join(_diskspec(s) for s in args.diskspec) + "  </disks>\n"
        xml += "</domaincheckpoint>\n"
        if args.print_xml:
            print(xml)
            print()
            return
        _create(dom, xml, _flag("CREATE_QUIESCE") if args.quiesce else 0, None)
    return run


@command("checkpoint-info", "checkpoint information")
def _checkpoint_info(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _add_checkpoint_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        chk = _named(dom, args)
        print(f"{'Name:':<15} {chk.getName()}")
        print(f"{'Domain:':<15} {dom.name()}")
        parent = _parent_name(chk)
        print(f"{'Parent:':<15} {parent or '-'}")
        print(f"{'Children:':<15} {len(chk.listAllChildren(0))}")
        print(f"{'Descendants:':<15} {len(chk.listAllChildren(_flag('LIST_DESCENDANTS')))}")
        print()
    return run


@command("checkpoint-dumpxml", "Dump XML for a domain checkpoint")
def _checkpoint_dumpxml(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _add_checkpoint_arg(p)
    p.add_argument("--security-info", action="store_true", help="include security sensitive information in XML dump")
    p.add_argument("--no-domain", action="store_true", help="exclude <domain> from XML")
    p.add_argument("--size", action="store_true", help="include backup size estimate in XML dump")
    p.add_argument("--xpath", metavar="STRING", help="xpath expression to filter the XML document")
    p.add_argument("--wrap", action="store_true", help="wrap xpath results in an common root element")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = sum(_flag(name) for attr, name in (("security_info", "XML_SECURE"), ("no_domain", "XML_NO_DOMAIN"),
                                                   ("size", "XML_SIZE")) if getattr(args, attr))
        dom = lookup(conn, args)
        xml = _named(dom, args).getXMLDesc(flags)
        if args.xpath is None:
            print(xml)
            return
        from .network_cmds import xpath_lines     # virsh's one --xpath layout
        print(xpath_lines(xml, args.xpath, args.wrap))
    return run


@command("checkpoint-parent", "Get the name of the parent of a checkpoint")
def _checkpoint_parent(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _add_checkpoint_arg(p, "find parent of checkpoint name")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        chk = _named(dom, args)
        parent = _parent_name(chk)
        if parent is None:
            raise CommandError(f"checkpoint '{chk.getName()}' has no parent")
        print(parent)
    return run


@command("checkpoint-delete", "Delete a domain checkpoint")
def _checkpoint_delete(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _add_checkpoint_arg(p)
    p.add_argument("--children", action="store_true", help="delete checkpoint and all children")
    p.add_argument("--children-only", action="store_true", help="delete children but not checkpoint")
    p.add_argument("--metadata", action="store_true",
                   help="delete only libvirt metadata, leaving checkpoint contents behind")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        chk = _named(dom, args)
        name = chk.getName()
        flags = sum(_flag(flag) for attr, flag in (("children", "DELETE_CHILDREN"),
                                                   ("children_only", "DELETE_CHILDREN_ONLY"),
                                                   ("metadata", "DELETE_METADATA_ONLY")) if getattr(args, attr))
        try:
            chk.delete(flags)
        except libvirtError as exc:
            raise _failed(f"Failed to delete checkpoint {name}", exc) from None
        print(f"Domain checkpoint {name} children deleted" if args.children_only else
              f"Domain checkpoint {name} deleted")
        print()
    return run


@command("checkpoint-list", "List checkpoints for a domain")
def _checkpoint_list(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--parent", action="store_true", help="add a column showing parent checkpoint")
    p.add_argument("--roots", action="store_true", help="list only checkpoints without parents")
    p.add_argument("--leaves", action="store_true", help="list only checkpoints without children")
    p.add_argument("--no-leaves", action="store_true",
                   help="list only checkpoints that are not leaves (with children)")
    p.add_argument("--tree", action="store_true", help="list checkpoints in a tree")
    p.add_argument("--from", dest="from_", metavar="FROM", help="limit list to children of given checkpoint")
    p.add_argument("--descendants", action="store_true", help="with --from, list all descendants")
    p.add_argument("--name", action="store_true", help="list checkpoint names only")
    p.add_argument("--topological", action="store_true", help="sort list topologically rather than by name")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        for a, b in (("tree", "name"), ("parent", "roots"), ("parent", "tree"), ("roots", "tree"),
                     ("roots", "from_")):
            if getattr(args, a) and getattr(args, b):
                raise CommandError(f"Options --{a} and --{b.rstrip('_')} are mutually exclusive")
        flags = 0
        for attr, option, name in (("leaves", "leaves", "LEAVES"), ("no_leaves", "no-leaves", "NO_LEAVES")):
            if getattr(args, attr):
                if args.tree:
                    raise CommandError(f"--{option} and --tree are mutually exclusive")
                flags |= _flag("LIST_" + name)
        if args.topological:
            flags |= _flag("LIST_TOPOLOGICAL")
        if args.roots:
            flags |= _flag("LIST_ROOTS")
        if args.descendants:
            if not args.from_:
                raise CommandError("--descendants requires --from")
            flags |= _flag("LIST_DESCENDANTS")
        dom = lookup(conn, args)
        start = _checkpoint(dom, args.from_, "from") if args.from_ is not None else None
        chks = start.listAllChildren(flags) if start is not None else dom.listAllCheckpoints(flags)
        parents: list[str | None] = []
        if args.tree:
            parents = [_parent_name(c) for c in chks]
            if start is not None:         # --from with --tree: the start too, as a root
                chks, parents = [*chks, start], [*parents, None]
        if not args.topological:          # virsh sorts by name, case-insensitively (roots first in a tree)
            order = sorted(range(len(chks)), key=lambda i: chks[i].getName().lower())
            chks, parents = [chks[i] for i in order], [parents[i] for i in order] if parents else []
        if args.tree:
            for line in _tree_lines([c.getName() for c in chks], parents):
                print(line)
            print()
            return
        if args.name:
            for c in chks:
                print(c.getName())
            print()
            return
        from lxml import etree
        rows = []
        for c in chks:
            root = etree.fromstring(c.getXMLDesc(0).encode())
            created = int((root.findtext("creationTime") or "0").strip())
            row = [c.getName(), time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(created))]
            if args.parent:
                row.append(root.findtext("parent/name") or "")
            rows.append(row)
        print_table(["Name", "Creation Time"] + (["Parent"] if args.parent else []), rows)
    return run


@command("checkpoint-edit", "edit XML for a checkpoint")
def _checkpoint_edit(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _add_checkpoint_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        from .network_cmds import edit_xml
        dom = lookup(conn, args)
        chk = _named(dom, args)
        name = chk.getName()
        created: list[Any] = []

        def current() -> str:
            return chk.getXMLDesc(_flag("XML_SECURE"))

        def define(xml: str) -> None:
            try:
                created.append(dom.checkpointCreateXML(xml, _flag("CREATE_REDEFINE")))
            except libvirtError as exc:
                raise _failed(f"Failed to update {name}", exc) from None

        if not edit_xml(current(), current, define):
            print(f"Checkpoint {name} XML configuration not changed.\n")
            return
        edited = created[0].getName()
        if edited != name:       # virsh refuses a rename: the copy made goes again
            created[0].delete(_flag("DELETE_METADATA_ONLY"))
            raise CommandError(f"Cannot rename checkpoint {name} to {edited}\nFailed to update {name}")
        print(f"Checkpoint {name} edited.\n")
    return run
