"""Virtual network commands: net-list, net-info, net-define, net-create, net-start,
net-destroy, net-undefine, net-autostart, net-dumpxml, net-edit, net-uuid,
net-name, net-dhcp-leases, net-update — virsh 9.0's options, messages and layouts."""

from __future__ import annotations

import argparse
import os
import sys

from .registry import CommandError, Handler, command
from .output import print_table

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

# libvirt's values, written out: the first pyvirt.VIR_* name builds every constant (start-up time)
LIST_INACTIVE, LIST_ACTIVE = 1, 2                    # VIR_CONNECT_LIST_NETWORKS_*
LIST_PERSISTENT, LIST_TRANSIENT = 4, 8
LIST_AUTOSTART, LIST_NO_AUTOSTART = 16, 32
XML_INACTIVE = 1                                     # VIR_NETWORK_XML_INACTIVE
VALIDATE = 1                                         # VIR_NETWORK_DEFINE_VALIDATE, _CREATE_VALIDATE
AFFECT_LIVE, AFFECT_CONFIG = 1, 2                    # VIR_NETWORK_UPDATE_AFFECT_*
INVALID_ARG = 8                                      # VIR_ERR_INVALID_ARG

# virNetworkUpdateCommand and virNetworkUpdateSection by virsh's names (index = value)
UPDATE_COMMANDS = ("none", "modify", "delete", "add-last", "add-first")
UPDATE_SECTIONS = ("none", "bridge", "domain", "ip", "ip-dhcp-host", "ip-dhcp-range", "forward",
                   "forward-interface", "forward-pf", "portgroup", "dns-host", "dns-txt", "dns-srv")
LEASE_TYPES = {0: "ipv4", 1: "ipv6"}                 # virIPAddrType
UUID_STRING_LEN = 36


def _refused(message: str) -> CommandError:
    """An error virsh's option check gives before running the command (no blank line)."""
    err = CommandError(message)
    err.options_refused = True    # type: ignore[attr-defined]
    return err


def _failed(message: str, exc: Exception | None) -> CommandError:
    err = CommandError(message)
    err.__cause__ = exc
    return err


def add_network_arg(p: argparse.ArgumentParser, help: str = "network name or uuid") -> None:
    """virsh's <network> data option: in place or as --network."""
    p.add_argument("network", nargs="?", metavar="NETWORK", help=help)
    p.add_argument("--network", dest="network_opt", metavar="NETWORK", help=argparse.SUPPRESS)
    p.set_defaults(command_name=p.prog.split()[-1])


def _data(args: argparse.Namespace, name: str) -> str:
    """A required data option's value, or virsh's refusal naming it."""
    value = getattr(args, f"{name}_opt", None) or getattr(args, name)
    if value is None:
        raise _refused(f"command '{args.command_name}' requires <{name}> option")
    return value


def lookup(conn: Any, args: argparse.Namespace, by_uuid: bool = True, by_name: bool = True) -> Any:
    """virsh's virshCommandOptNetworkBy: a 36-character word is tried as a UUID, then the name."""
    from pyvirt.errors import libvirtError
    text = _data(args, "network")
    network, last = None, None
    if by_uuid and len(text) == UUID_STRING_LEN:
        try:
            network = conn.networkLookupByUUIDString(text)
        except libvirtError as exc:
            last = exc
    if network is None and by_name:
        try:
            network = conn.networkLookupByName(text)
        except libvirtError as exc:
            last = exc
    if network is None:
        raise _failed(f"failed to get network '{text}'", last)
    return network


MAX_XML_FILE = 10 * 1024 * 1024      # virsh's VSH_MAX_XML_FILE


def read_file(path: str) -> str:
    """virsh's virFileReadAll: opening and reading fail apart, a file over 10 MiB is
    refused (EOVERFLOW); bytes that are not UTF-8 are kept (as surrogates) for
    :func:`check_utf8` to refuse."""
    import errno
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CommandError(f"Failed to open file '{path}': {exc.strerror}") from None
    try:
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_XML_FILE:
                raise OSError(errno.EOVERFLOW, os.strerror(errno.EOVERFLOW))
            chunks.append(chunk)
    except OSError as exc:
        raise CommandError(f"Failed to read file '{path}': {exc.strerror}") from None
    finally:
        os.close(fd)
    # virsh hands the content on as a C string: it ends at the first NUL
    return b"".join(chunks).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def check_utf8(text: str, api: str) -> None:
    """A file that is not UTF-8 cannot travel as an RPC string: the refusal the daemon gives
    stock virsh's raw bytes (libvirt's INVALID_ARG), raised before sending."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        from pyvirt.errors import ErrorDomain, ErrorNumber, error
        reason = "invalid start byte"
        try:
            text.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = exc.reason
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                    f"{api}: a string argument is not valid UTF-8 ({reason})") from None


def _yes_no(value: int) -> str:
    return "yes" if value else "no"


# -- net-list ----------------------------------------------------------------------

_LIST_FILTERS = (("persistent", LIST_PERSISTENT), ("transient", LIST_TRANSIENT),
                 ("autostart", LIST_AUTOSTART), ("no_autostart", LIST_NO_AUTOSTART))


def list_flags(args: argparse.Namespace) -> int:
    """virsh net-list's flags for virConnectListAllNetworks."""
    flags = LIST_ACTIVE
    if args.inactive:
        flags = LIST_INACTIVE
    if args.all:
        flags = LIST_ACTIVE | LIST_INACTIVE
    for name, bit in _LIST_FILTERS:
        if getattr(args, name):
            flags |= bit
    return flags


def collect(conn: Any, flags: int) -> list[Any]:
    """The networks net-list shows, sorted by name ignoring case as virsh sorts them."""
    from pyvirt.errors import libvirtError
    try:
        nets = conn.listAllNetworks(flags)
    except libvirtError as exc:
        raise _failed("Failed to list networks", exc)
    return sorted(nets, key=lambda n: n.name().lower())


def list_rows(nets: list[Any]) -> list[list[str]]:
    """net-list's table rows: name, state, autostart, persistent."""
    from pyvirt.errors import libvirtError
    rows = []
    for net in nets:
        try:
            autostart = _yes_no(net.autostart())
        except libvirtError:
            autostart = "no autostart"
        rows.append([net.name(), "active" if net.isActive() else "inactive", autostart,
                     _yes_no(net.isPersistent())])
    return rows


def _add_list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inactive", action="store_true", help="list inactive networks")
    p.add_argument("--all", action="store_true", help="list inactive & active networks")
    p.add_argument("--persistent", action="store_true", help="list persistent networks")
    p.add_argument("--transient", action="store_true", help="list transient networks")
    p.add_argument("--autostart", action="store_true", help="list networks with autostart enabled")
    p.add_argument("--no-autostart", action="store_true", help="list networks with autostart disabled")
    p.add_argument("--uuid", action="store_true", help="list uuid's only")
    p.add_argument("--name", action="store_true", help="list network names only")
    p.add_argument("--table", action="store_true", help="list table (default)")


@command("net-list", "list networks")
def _net_list(p: argparse.ArgumentParser) -> Handler:
    _add_list_options(p)

    def run(conn: Any, args: argparse.Namespace) -> None:
        if args.table + args.name + args.uuid > 1:
            raise CommandError("Only one argument from --table, --name and --uuid may be specified.")
        nets = collect(conn, list_flags(args))
        if args.uuid or args.name:
            for net in nets:
                print(net.UUIDString() if args.uuid else net.name())
            print()
            return
        print_table(["Name", "State", "Autostart", "Persistent"], list_rows(nets))
    return run


# -- net-info, net-uuid, net-name, net-dumpxml ---------------------------------------

def info_fields(net: Any) -> list[tuple[str, str]]:
    """net-info's lines in virsh's order; Autostart says "no autostart" when it cannot be read,
    and Bridge is left out when the network has none."""
    from pyvirt.errors import libvirtError
    fields = [("Name", net.name()), ("UUID", net.UUIDString())]
    try:
        fields.append(("Active", _yes_no(net.isActive())))
    except libvirtError:        # virsh leaves the line out
        pass
    try:
        persistent = _yes_no(net.isPersistent())
    except libvirtError:
        persistent = "unknown"
    fields.append(("Persistent", persistent))
    try:
        autostart = _yes_no(net.autostart())
    except libvirtError:
        autostart = "no autostart"
    fields.append(("Autostart", autostart))
    try:
        fields.append(("Bridge", net.bridgeName()))
    except libvirtError:
        pass
    return fields


@command("net-info", "network information")
def _net_info(p: argparse.ArgumentParser) -> Handler:
    add_network_arg(p)

    def run(conn: Any, args: argparse.Namespace) -> None:
        for label, value in info_fields(lookup(conn, args)):
            print(f"{label + ':':<15} {value}")
        print()
    return run


@command("net-uuid", "convert a network name to network UUID")
def _net_uuid(p: argparse.ArgumentParser) -> Handler:
    add_network_arg(p, "network name")

    def run(conn: Any, args: argparse.Namespace) -> None:
        print(lookup(conn, args, by_uuid=False).UUIDString())
        print()
    return run


@command("net-name", "convert a network UUID to network name")
def _net_name(p: argparse.ArgumentParser) -> Handler:
    add_network_arg(p, "network uuid")

    def run(conn: Any, args: argparse.Namespace) -> None:
        print(lookup(conn, args, by_name=False).name())
        print()
    return run


def xpath_lines(xml: str, expr: str, wrap: bool) -> str:
    """virsh's --xpath on an XML document: the matching nodes, each on its own lines
    (re-indented, attributes as `` name="value"``), or one ``<nodes>`` element holding
    them; an expression that is not a node set is virsh's "Incorrect xpath"."""
    from lxml import etree
    from pyvirt.errors import ErrorDomain, ErrorNumber, error
    doc = etree.fromstring(xml.encode(), etree.XMLParser(remove_blank_text=True))
    try:
        found = doc.xpath(expr)
    except etree.XPathError:
        found = None
    if not isinstance(found, list):
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NONE, f"Incorrect xpath '{expr}'")
    if wrap:
        root = etree.Element("nodes")
        for node in found:
            if isinstance(node, etree._Element):
                root.append(_copy(node))
        return etree.tostring(root, pretty_print=True, encoding="unicode")
    out = []
    for node in found:
        if isinstance(node, etree._Element):
            out.append(etree.tostring(_copy(node), pretty_print=True, encoding="unicode"))
        elif getattr(node, "is_attribute", False):
            value = str(node).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            out.append(f' {node.attrname}="{value}"\n')
        else:
            out.append(f"{node}\n")
    return "".join(out)


def _copy(node: Any) -> Any:
    from copy import deepcopy
    clone = deepcopy(node)
    clone.tail = None
    return clone


@command("net-dumpxml", "network information in XML")
def _net_dumpxml(p: argparse.ArgumentParser) -> Handler:
    add_network_arg(p)
    p.add_argument("--inactive", action="store_true", help="show inactive defined XML")
    p.add_argument("--xpath", metavar="STRING", help="xpath expression to filter the XML document")
    p.add_argument("--wrap", action="store_true", help="wrap xpath results in an common root element")

    def run(conn: Any, args: argparse.Namespace) -> None:
        xml = lookup(conn, args).XMLDesc(XML_INACTIVE if args.inactive else 0)
        if args.xpath is None:
            sys.stdout.write(xml if xml.endswith("\n") else xml + "\n")
        else:
            sys.stdout.write(xpath_lines(xml, args.xpath, args.wrap))
        print()
    return run


# -- define, create, start, destroy, undefine, autostart ---------------------------

def _from_file(name: str, help_text: str, api: str, verb: str) -> None:
    """net-define and net-create: a network from an XML file (``--validate``: the schema)."""
    @command(name, help_text)
    def setup(p: argparse.ArgumentParser) -> Handler:
        p.add_argument("file", nargs="?", metavar="FILE", help="file containing an XML network description")
        p.add_argument("--file", dest="file_opt", metavar="FILE", help=argparse.SUPPRESS)
        p.add_argument("--validate", action="store_true", help="validate the XML against the schema")
        p.set_defaults(command_name=name)

        def run(conn: Any, args: argparse.Namespace) -> None:
            from pyvirt.errors import libvirtError
            path = _data(args, "file")
            xml = read_file(path)
            try:
                check_utf8(xml, "vir" + api[:1].upper() + api[1:] + ("Flags" if args.validate else ""))
                if args.validate:
                    net = getattr(conn, api + "Flags")(xml, VALIDATE)
                else:
                    net = getattr(conn, api)(xml)
            except libvirtError as exc:
                raise _failed(f"Failed to {verb} network from {path}", exc)
            print(f"Network {net.name()} {verb}d from {path}\n")
        return run


_from_file("net-define", "define an inactive persistent virtual network or modify an existing persistent "
           "one from an XML file", "networkDefineXML", "define")
_from_file("net-create", "create a network from an XML file", "networkCreateXML", "create")


def _simple(name: str, help_text: str, act: str, fail: str, done: str) -> None:
    """Commands that look a network up, call one method and print one line."""
    @command(name, help_text)
    def setup(p: argparse.ArgumentParser) -> Handler:
        add_network_arg(p)

        def run(conn: Any, args: argparse.Namespace) -> None:
            from pyvirt.errors import libvirtError
            net = lookup(conn, args)
            text = _data(args, "network")       # virsh names the network as it was given
            try:
                getattr(net, act)()
            except libvirtError as exc:
                raise _failed(f"Failed to {fail} network {text}", exc)
            print(f"Network {text} {done}\n")
        return run


_simple("net-start", "start a (previously defined) inactive network", "create", "start", "started")
_simple("net-destroy", "destroy (stop) a network", "destroy", "destroy", "destroyed")
_simple("net-undefine", "undefine a persistent network", "undefine", "undefine", "has been undefined")


@command("net-autostart", "autostart a network")
def _net_autostart(p: argparse.ArgumentParser) -> Handler:
    add_network_arg(p)
    p.add_argument("--disable", action="store_true", help="disable autostarting")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        net = lookup(conn, args)
        text = _data(args, "network")
        try:
            net.setAutostart(0 if args.disable else 1)
        except libvirtError as exc:
            raise _failed(f"failed to {'unmark' if args.disable else 'mark'} network {text} as autostarted", exc)
        print(f"Network {text} {'unmarked' if args.disable else 'marked'} as autostarted\n")
    return run


# -- net-edit ------------------------------------------------------------------------

# virsh runs the editor directly when its command and the file name use only these
# characters, through ``sh -c`` otherwise (vshEditFile)
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+/.,:@")


def run_editor(path: str) -> None:
    """$VISUAL, else $EDITOR, else vi, on ``path``, on this terminal."""
    import subprocess
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    if set(editor) <= _PLAIN:
        argv = [editor, path]
    else:
        if not set(path) <= _PLAIN:
            raise CommandError(f"{path}: temporary filename contains shell meta or other unacceptable "
                               "characters (is $TMPDIR wrong?)")
        argv = ["sh", "-c", f"{editor} {path}"]
    try:
        status = subprocess.run(argv).returncode
    except OSError as exc:
        raise CommandError(f"{editor}: {exc.strerror}") from None
    if status != 0:
        raise CommandError(f"{' '.join(argv)}: command failed (exit status {status})")


def edit_xml(doc: str, reread: Any, define: Any) -> bool:
    """virsh's edit cycle: the document into a temporary file, the editor on it, and the
    result defined unless unchanged (False) or changed meanwhile by someone else."""
    import tempfile
    fd, path = tempfile.mkstemp(prefix="virsh", suffix=".xml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(doc)
        run_editor(path)
        edited = read_file(path)
    finally:
        os.unlink(path)
    if edited == doc:
        return False
    if reread() != doc:
        raise CommandError("The XML configuration was changed by another user.")
    define(edited)
    return True


@command("net-edit", "edit XML configuration for a network")
def _net_edit(p: argparse.ArgumentParser) -> Handler:
    add_network_arg(p)

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        net = lookup(conn, args)
        defined: list[Any] = []

        def define(xml: str) -> None:
            try:
                check_utf8(xml, "virNetworkDefineXML")
                defined.append(conn.networkDefineXML(xml))
            except libvirtError as exc:
                raise _failed("Failed.", exc)

        def current() -> str:
            try:
                return net.XMLDesc(XML_INACTIVE)
            except libvirtError as exc:
                # a driver without VIR_NETWORK_XML_INACTIVE (virsh retries without it)
                if exc.get_error_code() != INVALID_ARG:
                    raise
                return net.XMLDesc(0)

        if not edit_xml(current(), current, define):
            print(f"Network {net.name()} XML configuration not changed.\n")
            return
        print(f"Network {defined[0].name()} XML configuration edited.\n")
    return run


# -- net-dhcp-leases -----------------------------------------------------------------

def lease_rows(leases: list[dict[str, Any]]) -> list[list[str]]:
    """net-dhcp-leases' rows from libvirt-python's lease dicts, sorted by MAC as virsh
    sorts them; the expiry time in local time, absent values as ``-``."""
    import time
    rows = []
    for lease in sorted(leases, key=lambda item: (item.get("mac") or "").lower()):
        expiry = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(lease["expirytime"])))
        address = f"{lease['ipaddr']}/{int(lease['prefix'])}" if lease.get("ipaddr") is not None else None
        cells = (expiry, lease.get("mac"), LEASE_TYPES.get(lease.get("type")), address,
                 lease.get("hostname"), lease.get("clientid"))
        rows.append(["-" if cell is None else str(cell) for cell in cells])
    return rows


LEASE_HEADERS = ["Expiry Time", "MAC address", "Protocol", "IP address", "Hostname", "Client ID or DUID"]


@command("net-dhcp-leases", "print lease info for a given network")
def _net_dhcp_leases(p: argparse.ArgumentParser) -> Handler:
    add_network_arg(p)
    p.add_argument("--mac", metavar="STRING", help="MAC address")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        net = lookup(conn, args)
        try:
            leases = net.DHCPLeases(args.mac, 0)
        except libvirtError as exc:
            raise _failed(f"Failed to get leases info for {_data(args, 'network')}", exc)
        print_table(LEASE_HEADERS, lease_rows(leases))
    return run


# -- net-update ----------------------------------------------------------------------

def update_command(word: str) -> int:
    if word == "add":           # virsh: a synonym for add-last
        return UPDATE_COMMANDS.index("add-last")
    if word in UPDATE_COMMANDS[1:]:
        return UPDATE_COMMANDS.index(word)
    raise CommandError(f"unrecognized command name '{word}'")


def update_section(word: str) -> int:
    if word in UPDATE_SECTIONS[1:]:
        return UPDATE_SECTIONS.index(word)
    raise CommandError(f"unrecognized section name '{word}'")


def parse_int(text: str | None, option: str, default: int) -> int:
    """virsh's VSH_OT_INT: a C int, else its "malformed or out of range" error."""
    if text is None:
        return default
    try:
        value = int(text, 0) if text.strip() == text else None
    except ValueError:
        value = None
    if value is None or not -2**31 <= value < 2**31:
        raise CommandError(f"Numeric value '{text}' for <{option}> option is malformed or out of range")
    return value


@command("net-update", "update parts of an existing network's configuration")
def _net_update(p: argparse.ArgumentParser) -> Handler:
    add_network_arg(p)
    for name, help_text in (
            ("command", "type of update (add-first, add-last (add), delete, or modify)"),
            ("section", "which section of network configuration to update"),
            ("xml", "name of file containing xml (or, if it starts with '<', the complete xml element "
                    "itself) to add/modify, or to be matched for search")):
        p.add_argument(name, nargs="?", metavar=name.upper(), help=help_text)
        p.add_argument(f"--{name}", dest=f"{name}_opt", metavar=name.upper(), help=argparse.SUPPRESS)
    p.add_argument("--parent-index", metavar="NUMBER", help="which parent object to search through")
    p.add_argument("--config", action="store_true", help="affect next network startup")
    p.add_argument("--live", action="store_true", help="affect running network")
    p.add_argument("--current", action="store_true", help="affect current state of network")
    # virsh fills its data options in order wherever the flags are; argparse does that
    # for several optional positionals only when it parses them apart from the flags
    p.parse_args = p.parse_intermixed_args      # type: ignore[method-assign]

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        for name in ("network", "command", "section", "xml"):
            _data(args, name)
        if args.current and (args.live or args.config):
            raise CommandError(f"Options --current and --{'live' if args.live else 'config'} "
                               "are mutually exclusive")
        net = lookup(conn, args)
        cmd = update_command(_data(args, "command"))
        section = update_section(_data(args, "section"))
        parent = parse_int(args.parent_index, "parent-index", -1)
        xml = _data(args, "xml")
        if not xml.startswith("<"):
            xml = read_file(xml)
        flags = (AFFECT_CONFIG if args.config else 0) | (AFFECT_LIVE if args.live else 0)
        try:
            check_utf8(xml, "virNetworkUpdate")
            net.update(cmd, section, parent, xml, flags)
        except libvirtError as exc:
            raise _failed(f"Failed to update network {net.name()}", exc)
        if args.config:
            what = "persistent config and live state" if args.live else "persistent config"
        elif args.live or net.isActive():
            what = "live state"
        else:
            what = "persistent config"
        print(f"Updated network {net.name()} {what}")
    return run


# -- net-event -----------------------------------------------------------------------

NETWORK_EVENT_NAMES = ("lifecycle",)                            # VIR_NETWORK_EVENT_ID_*, virsh's names
LIFECYCLE_WORDS = ("Defined", "Undefined", "Started", "Stopped")  # virNetworkEventLifecycleType


def lifecycle_text(network: str, event: int) -> str:
    word = LIFECYCLE_WORDS[event] if 0 <= event < len(LIFECYCLE_WORDS) else "unknown"
    return f"event 'lifecycle' for network {network}: {word}\n"


def _timestamp() -> str:
    """virTimeStringNowRaw: 'YYYY-MM-DD HH:MM:SS.mmm+0000' in UTC."""
    import time
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}+0000"


@command("net-event", "Network Events")
def _net_event(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--network", dest="network_opt", metavar="NETWORK", help="filter by network name or uuid")
    p.add_argument("--event", help="which event type to wait for")
    p.add_argument("--loop", action="store_true", help="loop until timeout or interrupt, rather than one-shot")
    p.add_argument("--timeout", metavar="NUMBER", help="timeout seconds")
    p.add_argument("--list", action="store_true", help="list valid event types")
    p.add_argument("--timestamp", action="store_true", help="show timestamp for each printed event")
    p.set_defaults(network=None, command_name="net-event")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from .eventwatch import EventWatch
        if args.list:
            print("\n".join(NETWORK_EVENT_NAMES) + "\n")
            return
        if not args.event:
            raise CommandError("either --list or --event <type> is required")
        if args.event not in NETWORK_EVENT_NAMES:
            raise CommandError(f"unknown event type {args.event}")
        timeout = None
        if args.timeout is not None:
            timeout = parse_int(args.timeout, "timeout", 0)
            if timeout <= 0:
                raise CommandError(f"Numeric value '{args.timeout}' for <timeout> option is malformed or out of range")
        net = lookup(conn, args) if args.network_opt else None
        watch = EventWatch(args.loop)

        def on_event(_conn: Any, network: Any, event: int, _detail: int, _opaque: Any) -> None:
            prefix = f"{_timestamp()}: " if args.timestamp else ""
            watch.show(prefix + lifecycle_text(network.name(), event))

        callback = conn.networkEventRegisterAny(net, NETWORK_EVENT_NAMES.index(args.event), on_event, None)
        watch.wait(timeout, lambda: conn.networkEventDeregisterAny(callback))
    return run
