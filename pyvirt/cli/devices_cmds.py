"""virsh's commands for devices and tuning (attach/detach/update devices, memory, vCPUs).

Each builds the device XML virsh would build (attach-disk, attach-interface,
change-media) or reads it from the domain (detach-disk, detach-interface),
picks the API call virsh picks for its flags, and prints virsh's messages.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from xml.sax.saxutils import escape

from lxml import etree

import pyvirt
from pyvirt.errors import libvirtError

from .domain_cmds import _failed, add_domain_arg, lookup, read_file
from .output import print_table
from .registry import CommandError, Handler, command

# virsh's scaled integers: suffix -> bytes per unit (the default unit is KiB for memory)
_SCALE = {"": 1024, "b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024 ** 2, "mib": 1024 ** 2,
          "mb": 1000 ** 2, "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3, "t": 1024 ** 4, "tib": 1024 ** 4,
          "tb": 1000 ** 4}
_SCALED_RE = re.compile(r"\s*(\d+)\s*([A-Za-z]*)\s*")


def quoteattr(value: str) -> str:
    """An attribute value as virsh's virBufferEscapeString writes it: single quotes."""
    return "'" + escape(value, {"'": "&apos;", '"': "&quot;"}) + "'"


def _arg(p: argparse.ArgumentParser, name: str, help: str) -> None:
    """A virsh data option: given in place or as --NAME."""
    p.add_argument(name, nargs="?", metavar=name.upper(), help=help)
    p.add_argument(f"--{name}", dest=f"{name}_opt", metavar=name.upper(), help=argparse.SUPPRESS)
    p.set_defaults(command_name=p.prog.split()[-1])    # for _get's message


# virsh names a missing integer option (VSH_OT_INT) as --NAME, a missing data option as <NAME>
_INT_OPTIONS = {"size", "count"}


def _get(args: argparse.Namespace, name: str, required: bool = True) -> str | None:
    value = getattr(args, f"{name}_opt") or getattr(args, name)
    if value is None and required:
        option = f"--{name}" if name in _INT_OPTIONS else f"<{name}>"
        refused = CommandError(f"command '{args.command_name}' requires {option} option")
        refused.options_refused = True      # refused before running, as virsh's option check: no blank line
        raise refused
    return value


def _affect(p: argparse.ArgumentParser, persistent: bool = True) -> None:
    if persistent:
        p.add_argument("--persistent", action="store_true", help="make live change persistent")
    p.add_argument("--config", action="store_true", help="affect next boot")
    p.add_argument("--live", action="store_true", help="affect running domain")
    p.add_argument("--current", action="store_true", help="affect current domain")


def _flags(args: argparse.Namespace, dom: pyvirt.virDomain | None) -> int:
    """virsh's VIR_DOMAIN_AFFECT_* from --config/--live/--current/--persistent."""
    persistent = getattr(args, "persistent", False)
    if args.current and (args.live or args.config):
        raise CommandError(f"Options --current and --{'live' if args.live else 'config'} are mutually exclusive")
    if persistent and args.current:
        raise CommandError("Options --persistent and --current are mutually exclusive")
    flags = 0
    if args.config or persistent:
        flags |= pyvirt.VIR_DOMAIN_AFFECT_CONFIG
    if args.live:
        flags |= pyvirt.VIR_DOMAIN_AFFECT_LIVE
    if persistent and dom is not None and dom.isActive() == 1:
        flags |= pyvirt.VIR_DOMAIN_AFFECT_LIVE
    return flags


def _explicit(args: argparse.Namespace) -> bool:
    return bool(args.config or args.live or args.current or getattr(args, "persistent", False))


def _apply(dom: pyvirt.virDomain, args: argparse.Namespace, xml: str, action: str) -> None:
    """virsh's choice: the Flags call when any flag was given, the plain one otherwise."""
    flags = _flags(args, dom)
    if action == "update":
        dom.updateDeviceFlags(xml, flags | (pyvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE if getattr(args, "force", False) else 0))
    elif flags or args.current:
        (dom.attachDeviceFlags if action == "attach" else dom.detachDeviceFlags)(xml, flags)
    else:
        (dom.attachDevice if action == "attach" else dom.detachDevice)(xml)


def _apply_and_report(dom: pyvirt.virDomain, args: argparse.Namespace, xml: str, action: str, noun: str) -> None:
    """attach-disk/-interface and detach-disk/-interface: apply, then virsh's two lines."""
    try:
        _apply(dom, args, xml, action)
    except libvirtError as exc:
        raise _failed(f"Failed to {action} {noun}", exc)
    print(f"{noun.capitalize()} {action}ed successfully")
    print()


def _domain_xml(dom: pyvirt.virDomain, args: argparse.Namespace) -> etree._Element:
    inactive = bool(getattr(args, "config", False) or getattr(args, "inactive", False))
    flags = pyvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return etree.fromstring(dom.XMLDesc(flags).encode())


def _device_xml(node: etree._Element) -> str:
    """The element as virsh dumps it (libxml2: double quotes, inner whitespace kept)."""
    return etree.tostring(node, encoding="unicode", with_tail=False)


# -- attach-device / detach-device / update-device ----------------------------------------

def _device_file_command(name: str, action: str, help: str, done: str) -> None:
    @command(name, help)
    def _setup(p: argparse.ArgumentParser) -> Handler:
        add_domain_arg(p)
        _arg(p, "file", "XML file")
        _affect(p)
        if action == "update":
            p.add_argument("--force", action="store_true", help="force device update")

        def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
            path = _get(args, "file")
            dom = lookup(conn, args)
            xml = read_file(path)
            try:
                _apply(dom, args, xml, action)
            except libvirtError as exc:
                raise _failed(f"Failed to {action} device from {path}", exc)
            print(done)
            print()
        return run


_device_file_command("attach-device", "attach", "attach device from an XML file", "Device attached successfully")
_device_file_command("detach-device", "detach", "detach device from an XML file", "Device detached successfully")
_device_file_command("update-device", "update", "update device from an XML file", "Device updated successfully")


@command("detach-device-alias", "detach device from an alias")
def _detach_device_alias(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "alias", "device alias")
    _affect(p, persistent=False)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        alias = _get(args, "alias")
        dom = lookup(conn, args)
        try:
            dom.detachDeviceAlias(alias, _flags(args, dom))
        except libvirtError as exc:
            raise _failed(f"Failed to detach device with alias {alias}", exc)
        print("Device detach request sent successfully")
        print()
    return run


# -- domif-setlink / domif-getlink --------------------------------------------------------------

_MAC_RE = re.compile(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}")


def _interfaces_named(root: etree._Element, iface: str) -> list[etree._Element]:
    """The <interface>s ``iface`` names: a MAC address (any case) or the host device."""
    if _MAC_RE.fullmatch(iface):
        mac = ":".join(f"{int(part, 16):02x}" for part in iface.split(":"))
        return [nic for nic in root.iterfind("devices/interface")
                if nic.find("mac") is not None and nic.find("mac").get("address") == mac]
    return [nic for nic in root.iterfind("devices/interface")
            if nic.find("target") is not None and nic.find("target").get("dev") == iface]


@command("domif-setlink", "set link state of a virtual interface")
def _domif_setlink(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "interface", "interface device (MAC Address)")
    _arg(p, "state", "new state of the device")
    p.add_argument("--config", action="store_true", help="affect next boot")
    p.add_argument("--persistent", dest="config", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--print-xml", action="store_true",
                   help="print XML document rather than set the interface link state")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        iface, state = _get(args, "interface"), _get(args, "state")
        dom = lookup(conn, args)
        if state not in ("up", "down"):
            raise CommandError(f"invalid link state '{state}'")
        # virsh: the live guest unless --config; an inactive one has only its config
        config = args.config or dom.isActive() == 0
        root = etree.fromstring(dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_INACTIVE if config else 0).encode())
        if root.find("devices/interface") is None:
            raise CommandError("Failed to extract interface information or no interfaces found")
        found = _interfaces_named(root, iface)
        if not found:
            raise CommandError(f"interface '{iface}' not found")
        nic = found[0]
        link = nic.find("link")
        if link is None:
            link = etree.SubElement(nic, "link")
        link.set("state", state)
        xml = _device_xml(nic)
        if args.print_xml:
            print(xml)
            return
        try:
            dom.updateDeviceFlags(xml, pyvirt.VIR_DOMAIN_AFFECT_CONFIG if config else pyvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirtError as exc:
            raise _failed("Failed to update interface link state", exc)
        print("Device updated successfully")
        print()
    return run


@command("domif-getlink", "get link state of a virtual interface")
def _domif_getlink(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "interface", "interface device (MAC Address)")
    p.add_argument("--config", action="store_true", help="Get persistent interface state")
    p.add_argument("--persistent", dest="config", action="store_true", help=argparse.SUPPRESS)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        iface = _get(args, "interface")
        dom = lookup(conn, args)
        root = etree.fromstring(dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_INACTIVE if args.config else 0).encode())
        found = _interfaces_named(root, iface)
        if not found:
            kind = "mac" if _MAC_RE.fullmatch(iface) else "dev"
            raise CommandError(f"Interface ({kind}: {iface}) not found.")
        if len(found) > 1:
            raise CommandError("multiple matching interfaces found")
        link = found[0].find("link")
        print(f"{iface} {link.get('state') if link is not None and link.get('state') else 'up'}")
    return run


# -- disks ------------------------------------------------------------------------------------

@command("attach-disk", "attach disk device")
def _attach_disk(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "source", "source of disk device")
    _arg(p, "target", "target of disk device")
    for opt, text in (("targetbus", "bus of the disk's target (virtio, scsi, usb, sata, ...)"),
                      ("driver", "disk driver name (qemu)"),
                      ("subdriver", "image format of the source (raw, qcow2, ...)"),
                      ("cache", "host cache mode (none, writeback, ...)"),
                      ("type", "disk device type: disk, cdrom or floppy"),
                      ("mode", "readonly or shareable"),
                      ("sourcetype", "source type: file or block"),
                      ("serial", "serial number the guest sees"),
                      ("alias", "user alias of the device")):
        p.add_argument(f"--{opt}", metavar="STRING", help=text)
    p.add_argument("--print-xml", action="store_true", help="print XML document rather than attach the disk")
    _affect(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        _flags(args, None)   # the option conflicts, before anything else
        source, target = _get(args, "source"), _get(args, "target")
        stype = args.sourcetype
        if stype is not None and stype not in ("file", "block", "network"):
            raise CommandError(f"Unknown source type: '{stype}'")
        if stype is None:
            try:
                is_block = args.driver not in ("file", "tap") and stat.S_ISBLK(os.stat(source).st_mode)
            except OSError:
                is_block = False
            stype = "block" if is_block else "file"
        if args.mode is not None and args.mode not in ("readonly", "shareable"):
            raise CommandError(f"No support for {args.mode} in command 'attach-disk'")
        xml = _disk_xml(args, source, target, stype)
        if args.print_xml:
            print(xml)
            return
        dom = lookup(conn, args)
        _apply_and_report(dom, args, xml, "attach", "disk")
    return run


def _disk_xml(args: argparse.Namespace, source: str, target: str, stype: str) -> str:
    """The XML virsh's attach-disk builds, byte for byte."""
    attrs = f" type='{stype}'" + (f" device={quoteattr(args.type)}" if args.type else "")
    driver = "".join(f" {name}={quoteattr(value)}" for name, value in
                     (("name", args.driver), ("type", args.subdriver), ("cache", args.cache)) if value)
    lines = [f"<disk{attrs}>"]
    if driver:
        lines.append(f"  <driver{driver}/>")
    lines.append(f"  <source {'dev' if stype == 'block' else 'file'}={quoteattr(source)}/>")
    lines.append(f"  <target dev='{target}'" + (f" bus='{args.targetbus}'" if args.targetbus else "") + "/>")
    if args.mode:
        lines.append(f"  <{args.mode}/>")
    if args.serial:
        lines.append(f"  <serial>{args.serial}</serial>")
    if args.alias:
        lines.append(f"  <alias name='{args.alias}'/>")
    lines.append("</disk>")
    return "\n".join(lines) + "\n"


def _disk_source(disk: etree._Element) -> str | None:
    src = disk.find("source")
    if src is None:
        return None
    return src.get("file") or src.get("dev") or src.get("name") or src.get("volume")


def _find_disk(root: etree._Element, path: str) -> etree._Element | None:
    """virsh's match: the target name or the source path."""
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        if (target is not None and target.get("dev") == path) or _disk_source(disk) == path:
            return disk
    return None


@command("detach-disk", "detach disk device")
def _detach_disk(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "target", "target of disk device")
    _affect(p)
    p.add_argument("--print-xml", action="store_true", help="print XML document rather than detach the disk")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        target = _get(args, "target")
        dom = lookup(conn, args)
        disk = _find_disk(_domain_xml(dom, args), target)
        if disk is None:
            raise CommandError("Failed to get disk information")
        xml = _device_xml(disk)
        if args.print_xml:
            print(xml)
            return
        _apply_and_report(dom, args, xml, "detach", "disk")
    return run


@command("change-media", "Change media of CD or floppy drive")
def _change_media(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "path", "Fully-qualified path or target of disk device")
    p.add_argument("--source", metavar="SOURCE", help="source of the media")
    for opt, text in (("eject", "remove the media"), ("insert", "put media in an empty drive"),
                      ("update", "replace the media, or eject without a source"),
                      ("force", "change the media even if the guest has locked the tray"),
                      ("block", "the source is a block device"),
                      ("print-xml", "print the disk XML rather than change the media")):
        p.add_argument(f"--{opt}", action="store_true", help=text)
    _affect(p, persistent=False)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        path = _get(args, "path")
        actions = [a for a in ("eject", "insert", "update") if getattr(args, a)]
        if len(actions) > 1:
            raise CommandError(f"Options --{actions[0]} and --{actions[1]} are mutually exclusive")
        action = actions[0] if actions else ("update" if args.source else "eject")
        if action == "eject" and args.source:
            raise CommandError("Options --eject and --source are mutually exclusive")
        dom = lookup(conn, args)
        root = _domain_xml(dom, args)
        disk = _find_disk(root, path)
        if disk is None:
            raise CommandError("Failed to get disk information")
        if action == "insert" and not args.source:
            raise CommandError("No source is specified for inserting media")
        if disk.get("device") not in ("cdrom", "floppy"):
            raise CommandError("The disk device is not removable")
        current = disk.find("source")
        if action == "insert" and current is not None and _disk_source(disk):
            raise CommandError("The disk already has media")
        for old in disk.findall("source"):
            disk.remove(old)
        if action != "eject":
            kind = "block" if args.block else "file"
            disk.set("type", kind)
            new = etree.Element("source", {"dev" if kind == "block" else "file": args.source})
            target = disk.find("target")
            if target is None:
                disk.append(new)
            else:      # before the target, indented like it (as virsh's libxml2 edit leaves it)
                before = target.getprevious()
                new.tail = (before.tail if before is not None else disk.text) or ""
                target.addprevious(new)
        xml = _device_xml(disk)
        if args.print_xml:
            print(xml)
            return
        flags = _flags(args, dom) | (pyvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE if args.force else 0)
        try:
            dom.updateDeviceFlags(xml, flags)
        except libvirtError as exc:
            raise _failed({"eject": "Failed to eject media", "insert": "Failed to insert media",
                           "update": "Failed to update media"}[action], exc)
        print({"eject": "Successfully ejected media.", "insert": "Successfully inserted media.",
               "update": "Successfully updated media."}[action])
    return run


@command("domblklist", "list all domain blocks")
def _domblklist(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--inactive", action="store_true", help="get inactive rather than running configuration")
    p.add_argument("--details", action="store_true", help="additionally display the type and device value")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        root = _domain_xml(lookup(conn, args), args)
        rows = []
        for disk in root.iterfind("devices/disk"):
            target = disk.find("target")
            cells = [target.get("dev", "") if target is not None else "", _disk_source(disk) or "-"]
            if args.details:
                cells = [disk.get("type", ""), disk.get("device", "")] + cells
            rows.append(cells)
        headers = ["Type", "Device", "Target", "Source"] if args.details else ["Target", "Source"]
        print_table(headers, rows)
    return run


# -- interfaces --------------------------------------------------------------------------------

# virsh knows these interface types (virDomainNetType); attach-interface builds only some.
_NET_TYPES = ("user", "ethernet", "vhostuser", "server", "client", "mcast", "network", "bridge",
              "internal", "direct", "hostdev", "udp", "vdpa", "null", "vds")


@command("attach-interface", "attach network interface")
def _attach_interface(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "type", "network interface type")
    _arg(p, "source", "source of network interface")
    for opt, text in (("target", "name of the host's tap device"), ("mac", "MAC address of the interface"),
                      ("script", "script that sets up the host's end"), ("model", "device model (virtio, e1000, ...)"),
                      ("alias", "user alias of the device")):
        p.add_argument(f"--{opt}", metavar="STRING", help=text)
    _affect(p)
    p.add_argument("--print-xml", action="store_true", help="print XML document rather than attach the interface")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        _flags(args, None)
        ntype, source = _get(args, "type"), _get(args, "source")
        if ntype not in _NET_TYPES:
            raise CommandError(f"No support for {ntype} in command 'attach-interface'")
        lines = [f"<interface type='{ntype}'>"]
        if ntype in ("network", "bridge"):
            lines.append(f"  <source {ntype}='{source}'/>")
        elif ntype == "direct":
            lines.append(f"  <source dev='{source}'/>")
        else:
            raise CommandError(f"No support for {ntype} in command 'attach-interface'")
        for element, attr, value in (("target", "dev", args.target), ("mac", "address", args.mac),
                                     ("script", "path", args.script), ("model", "type", args.model),
                                     ("alias", "name", args.alias)):
            if value is not None:
                lines.append(f"  <{element} {attr}='{value}'/>")
        xml = "\n".join(lines + ["</interface>"]) + "\n"
        if args.print_xml:
            print(xml)
            return
        dom = lookup(conn, args)
        _apply_and_report(dom, args, xml, "attach", "interface")
    return run


@command("detach-interface", "detach network interface")
def _detach_interface(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "type", "network interface type")
    p.add_argument("--mac", metavar="STRING", help="MAC address of the interface to detach")
    _affect(p)
    p.add_argument("--print-xml", action="store_true", help="print XML document rather than detach the interface")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        ntype = _get(args, "type")
        dom = lookup(conn, args)
        root = _domain_xml(dom, args)
        found = [nic for nic in root.iterfind("devices/interface") if nic.get("type") == ntype]
        if not found:
            raise CommandError(f"No interface found whose type is {ntype}\nFailed to detach interface")
        if args.mac:
            mac = args.mac.lower()
            found = [nic for nic in found if (nic.find("mac") is not None
                                              and nic.find("mac").get("address", "").lower() == mac)]
            if not found:
                raise CommandError(f"No interface with MAC address {args.mac} was found\n"
                                   "Failed to detach interface")
        elif len(found) > 1:
            raise CommandError(f"Domain has {len(found)} interfaces. Please specify which one to detach "
                               "using --mac\nFailed to detach interface")
        xml = _device_xml(found[0])
        if args.print_xml:
            print(xml)
            return
        _apply_and_report(dom, args, xml, "detach", "interface")
    return run


@command("domiflist", "list all domain virtual interfaces")
def _domiflist(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--inactive", action="store_true", help="get inactive rather than running configuration")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        root = _domain_xml(lookup(conn, args), args)
        rows = []
        for nic in root.iterfind("devices/interface"):
            def attr(tag: str, name: str) -> str:
                node = nic.find(tag)
                return node.get(name) if node is not None and node.get(name) else "-"
            src = nic.find("source")
            # virsh's XPath union string(): the first of these attributes in document order
            # (a network NIC's live <source network='n' bridge='virbr0'/> shows 'n')
            source = next((v for k, v in (src.attrib.items() if src is not None else ())
                           if k in ("bridge", "dev", "network", "name", "path") and v), "-")
            rows.append([attr("target", "dev"), nic.get("type", ""), source, attr("model", "type"),
                         attr("mac", "address")])
        print_table(["Interface", "Type", "Source", "Model", "MAC"], rows)
    return run


# -- memory and vCPUs ------------------------------------------------------------------------------

def _kib(text: str, option: str) -> int:
    match = _SCALED_RE.fullmatch(text)
    scale = _SCALE.get(match.group(2).lower()) if match else None
    if match is None or scale is None:
        raise CommandError(f"Scaled numeric value '{text}' for <{option}> option is malformed or out of range")
    return (int(match.group(1)) * scale + 1023) // 1024


@command("setmem", "change memory allocation")
def _setmem(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "size", "new memory size, as scaled integer (default KiB)")
    _affect(p, persistent=False)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = _flags(args, None)
        dom = lookup(conn, args)
        kib = _kib(_get(args, "size"), "size")
        if _explicit(args):        # virsh prints only libvirt's error here
            dom.setMemoryFlags(kib, flags)
        else:
            dom.setMemory(kib)
        print()     # virsh ends the command with an empty line
    return run


@command("setmaxmem", "change maximum memory limit")
def _setmaxmem(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "size", "new maximum memory size, as scaled integer (default KiB)")
    _affect(p, persistent=False)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = _flags(args, None)
        dom = lookup(conn, args)
        kib = _kib(_get(args, "size"), "size")
        try:
            if _explicit(args):
                dom.setMemoryFlags(kib, flags | pyvirt.VIR_DOMAIN_MEM_MAXIMUM)
            else:
                dom.setMaxMemory(kib)
        except libvirtError as exc:
            raise _failed("Unable to change MaxMemorySize", exc)
        print()     # virsh ends the command with an empty line
    return run


@command("setvcpus", "change number of virtual CPUs")
def _setvcpus(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _arg(p, "count", "number of virtual CPUs")
    p.add_argument("--maximum", action="store_true", help="set maximum limit on next boot")
    p.add_argument("--guest", action="store_true", help="modify cpu state in the guest")
    p.add_argument("--hotpluggable", action="store_true", help="make added vcpus hot(un)pluggable")
    _affect(p, persistent=False)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = _flags(args, None)
        if args.guest and args.config:
            raise CommandError("Options --guest and --config are mutually exclusive")
        if args.maximum and not args.config:
            raise CommandError("Option --config is required by option --maximum")
        text = _get(args, "count")
        if not text.isdigit():
            raise CommandError(f"Numeric value '{text}' for <count> option is malformed or out of range")
        count = int(text)
        if count == 0:
            raise CommandError("Can't set 0 processors for a VM")
        flags |= ((pyvirt.VIR_DOMAIN_VCPU_MAXIMUM if args.maximum else 0)
                  | (pyvirt.VIR_DOMAIN_VCPU_GUEST if args.guest else 0)
                  | (pyvirt.VIR_DOMAIN_VCPU_HOTPLUGGABLE if args.hotpluggable else 0))
        dom = lookup(conn, args)
        # virsh prints only libvirt's error here
        if flags or args.current:
            dom.setVcpusFlags(count, flags)
        else:
            dom.setVcpus(count)
        print()     # virsh ends the command with an empty line
    return run


@command("vcpucount", "domain vcpu counts")
def _vcpucount(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--maximum", action="store_true", help="get maximum count of vcpus")
    p.add_argument("--active", action="store_true", help="get number of currently active vcpus")
    p.add_argument("--guest", action="store_true", help="report number of vcpus used by the guest")
    p.add_argument("--config", action="store_true", help="get value from persistent config")
    p.add_argument("--live", action="store_true", help="get value from running domain")
    p.add_argument("--current", action="store_true", help="get value according to current domain state")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        which = [("maximum", pyvirt.VIR_DOMAIN_VCPU_MAXIMUM), ("current", 0)]
        where = [("config", pyvirt.VIR_DOMAIN_AFFECT_CONFIG), ("live", pyvirt.VIR_DOMAIN_AFFECT_LIVE)]
        if args.maximum or args.active or args.config or args.live or args.current or args.guest:
            flags = ((pyvirt.VIR_DOMAIN_VCPU_MAXIMUM if args.maximum else 0)
                     | (pyvirt.VIR_DOMAIN_VCPU_GUEST if args.guest else 0)
                     | (pyvirt.VIR_DOMAIN_AFFECT_CONFIG if args.config else 0)
                     | (pyvirt.VIR_DOMAIN_AFFECT_LIVE if args.live else 0))
            print(dom.vcpusFlags(flags))
            print()
            return
        for label, extra in which:
            for place, affect in where:
                if affect == pyvirt.VIR_DOMAIN_AFFECT_LIVE and dom.isActive() != 1:
                    continue
                if affect == pyvirt.VIR_DOMAIN_AFFECT_CONFIG and dom.isPersistent() != 1:
                    continue      # a transient domain has no config to count
                print(f"{label:<12} {place:<12} {dom.vcpusFlags(extra | affect):3d}")
        print()
    return run
