"""Save commands: save, restore, managedsave, managedsave-remove, save-image-dumpxml, save-image-define,
managedsave-dumpxml, managedsave-define,
with virsh's options and output (and the progress bar of ``migrate``)."""

from __future__ import annotations

import argparse
from typing import Any

import pyvirt
from pyvirt.errors import libvirtError

from .domain_cmds import add_domain_arg, lookup, read_file
from .migrate_cmds import run_with_progress
from .registry import CommandError, Handler, command


def _state_flags(p: argparse.ArgumentParser, after: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--running", action="store_true", help=f"set domain to be running on {after}")
    group.add_argument("--paused", action="store_true", help=f"set domain to be paused on {after}")


def _flags(args: argparse.Namespace) -> int:
    flags = 0
    if args.running:
        flags |= pyvirt.VIR_DOMAIN_SAVE_RUNNING
    if args.paused:
        flags |= pyvirt.VIR_DOMAIN_SAVE_PAUSED
    if getattr(args, "bypass_cache", False):
        flags |= pyvirt.VIR_DOMAIN_SAVE_BYPASS_CACHE
    return flags


def _failed(what: str, exc: libvirtError) -> CommandError:
    """virsh's two lines: what failed, then libvirt's message."""
    err = CommandError(what)
    err.__cause__ = exc
    return err


@command("save", "save a domain state to a file")
def _save(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("file", metavar="FILE", help="where to save the data")
    p.add_argument("--bypass-cache", action="store_true", help="avoid file system cache when saving")
    p.add_argument("--xml", metavar="FILE", help="filename containing updated XML for the target")
    _state_flags(p, "restore")
    p.add_argument("--verbose", action="store_true", help="display the progress of save")
    # virsh 11.2's option, and pyvirt's own: both go as saveParams parameters
    p.add_argument("--image-format", metavar="FORMAT",
                   help="format of the save image (raw, gzip, bzip2, xz, lzop, zstd); "
                        "default: the daemon's save_image_format")
    p.add_argument("--compat", metavar="READER",
                   help="refuse a format this reader cannot restore (libvirt-9.0: no zstd)")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        xml = read_file(args.xml) if args.xml else None
        flags = _flags(args)
        params: dict[str, str] = {"file": args.file}
        if xml:
            params["dxml"] = xml
        if args.image_format:
            params["image_format"] = args.image_format
        if args.compat:
            params["pyvirt.image_compat"] = args.compat

        def work() -> Any:
            if args.image_format or args.compat:
                return dom.saveParams(params, flags)
            return dom.saveFlags(args.file, xml, flags) if xml or flags else dom.save(args.file)
        try:
            run_with_progress(dom, work, args.verbose, "Save")
        except libvirtError as exc:
            raise _failed(f"Failed to save domain '{dom.name()}' to {args.file}", exc)
        print(f"\nDomain '{dom.name()}' saved to {args.file}\n")
    return run


@command("restore", "restore a domain from a saved state in a file")
def _restore(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("file", metavar="FILE", help="the state to restore")
    p.add_argument("--bypass-cache", action="store_true", help="avoid file system cache when restoring")
    p.add_argument("--xml", metavar="FILE", help="filename containing updated XML for the target")
    _state_flags(p, "restore")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        xml = read_file(args.xml) if args.xml else None
        flags = _flags(args)
        try:
            conn.restoreFlags(args.file, xml, flags) if xml or flags else conn.restore(args.file)
        except libvirtError as exc:
            raise _failed(f"Failed to restore domain from {args.file}", exc)
        print(f"Domain restored from {args.file}\n")
    return run


@command("managedsave", "managed save of a domain state")
def _managedsave(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--bypass-cache", action="store_true", help="avoid file system cache when saving")
    _state_flags(p, "next start")
    p.add_argument("--verbose", action="store_true", help="display the progress of save")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        flags = _flags(args)
        try:
            run_with_progress(dom, lambda: dom.managedSave(flags), args.verbose, "Managedsave")
        except libvirtError as exc:
            raise _failed(f"Failed to save domain '{dom.name()}' state", exc)
        print(f"\nDomain '{dom.name()}' state saved by libvirt\n")
    return run


@command("managedsave-remove", "Remove managed save of a domain")
def _managedsave_remove(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        try:
            if not dom.hasManagedSaveImage():
                print(f"Domain '{dom.name()}' has no manage save image; removal skipped")
                return
            dom.managedSaveRemove()
        except libvirtError as exc:
            raise _failed(f"Failed to remove managed save image for domain '{dom.name()}'", exc)
        print(f"Removed managedsave image for domain '{dom.name()}'")
    return run


@command("save-image-dumpxml", "saved state domain information in XML")
def _save_image_dumpxml(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("file", metavar="FILE", help="saved state file to read")
    p.add_argument("--security-info", action="store_true", help="include security sensitive information in XML dump")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = pyvirt.VIR_DOMAIN_XML_SECURE if args.security_info else 0   # = VIR_DOMAIN_SAVE_IMAGE_XML_SECURE
        try:
            print(conn.saveImageGetXMLDesc(args.file, flags))
        except libvirtError as exc:
            raise _failed(f"Failed to read the XML of the saved state {args.file}", exc)
    return run


@command("save-image-define", "redefine the XML for a domain's saved state file")
def _save_image_define(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("file", metavar="FILE", help="saved state file to modify")
    p.add_argument("xml", metavar="XML", help="filename containing updated XML for the target")
    # not exclusive, as in virsh: --running wins
    p.add_argument("--running", action="store_true", help="set domain to be running on restore")
    p.add_argument("--paused", action="store_true", help="set domain to be paused on restore")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        xml = read_file(args.xml)
        try:
            conn.saveImageDefineXML(args.file, xml, _flags(args))
        except libvirtError as exc:
            raise _failed(f"Failed to update {args.file}", exc)
        print(f"State file {args.file} updated.\n")
    return run


@command("managedsave-dumpxml", "Domain information of managed save state file in XML")
def _managedsave_dumpxml(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--security-info", action="store_true", help="include security sensitive information in XML dump")
    p.add_argument("--xpath", metavar="STRING", help="xpath expression to filter the XML document")
    p.add_argument("--wrap", action="store_true", help="wrap xpath results in an common root element")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        xml = dom.managedSaveGetXMLDesc(pyvirt.VIR_DOMAIN_XML_SECURE if args.security_info else 0)
        if args.xpath is None:
            print(xml if xml.endswith("\n") else xml + "\n", end="")
        else:
            from .network_cmds import xpath_lines      # only when asked: one-shot commands stay lean
            print(xpath_lines(xml, args.xpath, args.wrap), end="")
        print()
    return run


@command("managedsave-define", "redefine the XML for a domain's managed save state file")
def _managedsave_define(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("xml", metavar="XML", help="filename containing updated XML for the target")
    _state_flags(p, "start")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        xml = read_file(args.xml)
        dom = lookup(conn, args)
        try:
            dom.managedSaveDefineXML(xml, _flags(args))
        except libvirtError as exc:
            raise _failed(f"Failed to update {dom.name()} XML configuration", exc)
        print(f"Managed save state file of domain '{dom.name()}' updated.\n")
    return run
