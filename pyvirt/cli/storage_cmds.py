"""Storage pool commands: pool-* with virsh 9.0's options, messages and layouts, and what
the volume commands (:mod:`.volume_cmds`) share with them.

Lookups follow virsh's: a pool by UUID (a 36-character word) then by name; a
volume by name in the given pool, then by key, then by path, and refused when
it is not in the pool named.  Sizes are scaled as virsh scales them.
"""

from __future__ import annotations

import argparse
import sys

from .registry import CommandError, Handler, command
from .output import print_table

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

# libvirt's values, written out: the first pyvirt.VIR_* name builds every constant (start-up time)
LIST_INACTIVE, LIST_ACTIVE = 1, 2                    # VIR_CONNECT_LIST_STORAGE_POOLS_*
LIST_PERSISTENT, LIST_TRANSIENT = 4, 8
LIST_AUTOSTART, LIST_NO_AUTOSTART = 16, 32
# virStoragePoolType's names and their VIR_CONNECT_LIST_STORAGE_POOLS_<TYPE> bit
POOL_TYPE_FLAGS = {"dir": 64, "fs": 128, "netfs": 256, "logical": 512, "disk": 1024, "iscsi": 2048,
                   "iscsi-direct": 524288, "scsi": 4096, "mpath": 8192, "rbd": 16384, "sheepdog": 32768,
                   "gluster": 65536, "zfs": 131072, "vstorage": 262144}
POOL_STATES = ("inactive", "building", "running", "degraded", "inaccessible")   # virStoragePoolState
POOL_RUNNING, POOL_DEGRADED = 2, 3
VOL_TYPES = ("file", "block", "dir", "network", "netdir", "ploop")               # virStorageVolType
XML_INACTIVE = 1                                     # VIR_STORAGE_XML_INACTIVE
POOL_DEFINE_VALIDATE = 1                             # VIR_STORAGE_POOL_DEFINE_VALIDATE
CREATE_WITH_BUILD, CREATE_BUILD_OVERWRITE, CREATE_BUILD_NO_OVERWRITE = 1, 2, 4   # virStoragePoolCreateFlags
BUILD_NO_OVERWRITE, BUILD_OVERWRITE = 4, 8           # virStoragePoolBuildFlags
VOL_PREALLOC_METADATA, VOL_REFLINK, VOL_VALIDATE = 1, 2, 4    # virStorageVolCreateFlags
VOL_DELETE_WITH_SNAPSHOTS = 2                        # virStorageVolDeleteFlags
VOL_USE_ALLOCATION, VOL_GET_PHYSICAL = 0, 1          # virStorageVolInfoFlags
RESIZE_ALLOCATE, RESIZE_DELTA, RESIZE_SHRINK = 1, 2, 4      # virStorageVolResizeFlags
SPARSE_STREAM = 1                                    # VIR_STORAGE_VOL_{UP,DOWN}LOAD_SPARSE_STREAM
# virStorageVolWipeAlgorithm by virsh's names (index = value)
WIPE_ALGORITHMS = ("zero", "nnsa", "dod", "bsi", "gutmann", "schneier", "pfitzner7", "pfitzner33", "random",
                   "trim")
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


def _exclusive(args: argparse.Namespace, first: str, second: str) -> None:
    if getattr(args, first.replace("-", "_")) and getattr(args, second.replace("-", "_")):
        raise CommandError(f"Options --{first} and --{second} are mutually exclusive")


def _data_arg(p: argparse.ArgumentParser, name: str, help_text: str, metavar: str | None = None) -> None:
    """virsh's data option: in place or as --NAME."""
    p.add_argument(name.replace("-", "_"), nargs="?", metavar=metavar or name.upper(), help=help_text)
    p.add_argument(f"--{name}", dest=f"{name.replace('-', '_')}_opt", metavar=metavar or name.upper(),
                   help=argparse.SUPPRESS)
    p.set_defaults(command_name=p.prog.split()[-1])


def _data(args: argparse.Namespace, name: str, required: bool = True) -> str | None:
    """A data option's value, or virsh's refusal naming it when it is required."""
    key = name.replace("-", "_")
    value = getattr(args, f"{key}_opt", None) or getattr(args, key, None)
    if value is None and required:
        raise _refused(f"command '{args.command_name}' requires <{name}> option")
    return value


def read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"Failed to open file '{path}': {exc.strerror}") from None


def pretty_capacity(value: int) -> str:
    """virsh's vshPrettyCapacity, as "%.2lf %s"."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    scaled, unit = float(value), 0
    while scaled >= 1024 and unit < len(units) - 1:
        scaled /= 1024
        unit += 1
    return f"{scaled:.2f} {units[unit]}"


def _yes_no(value: int) -> str:
    return "yes" if value else "no"


# -- lookups -----------------------------------------------------------------------------

def lookup_pool(conn: Any, text: str, by_uuid: bool = True, by_name: bool = True) -> Any:
    """virsh's virshCommandOptPoolBy: a 36-character word is tried as a UUID, then the name."""
    from pyvirt.errors import libvirtError
    pool, last = None, None
    if by_uuid and len(text) == UUID_STRING_LEN:
        try:
            pool = conn.storagePoolLookupByUUIDString(text)
        except libvirtError as exc:
            last = exc
    if pool is None and by_name:
        try:
            pool = conn.storagePoolLookupByName(text)
        except libvirtError as exc:
            last = exc
    if pool is None:
        raise _failed(f"failed to get pool '{text}'", last)
    return pool


def pool_arg(conn: Any, args: argparse.Namespace, by_uuid: bool = True, by_name: bool = True) -> Any:
    return lookup_pool(conn, _data(args, "pool"), by_uuid, by_name)   # type: ignore[arg-type]


def lookup_vol(conn: Any, text: str, pool_text: str | None, pool_option: str | None = "pool",
               by_name: bool = True) -> Any:
    """virsh's virshCommandOptVolBy: by name in the pool given, then by key, then by path; a
    pool given must be active and hold the volume found."""
    from pyvirt.errors import libvirtError
    pool = None
    if pool_text is not None:
        pool = lookup_pool(conn, pool_text)
        if pool.isActive() != 1:
            raise CommandError(f"pool '{pool_text}' is not active")
    vol, last = None, None
    attempts = []
    if pool is not None and by_name:
        attempts.append(lambda: pool.storageVolLookupByName(text))
    attempts += [lambda: conn.storageVolLookupByKey(text), lambda: conn.storageVolLookupByPath(text)]
    for attempt in attempts:
        try:
            vol = attempt()
            break
        except libvirtError as exc:
            last = exc
    if vol is None:
        if pool is not None or pool_option is None:
            raise _failed(f"failed to get vol '{text}'", last)
        raise _failed(f"failed to get vol '{text}', specifying --{pool_option} might help", last)
    if pool is not None:
        try:
            owner = vol.storagePoolLookupByVolume()
        except libvirtError:
            owner = None
        if owner is not None and owner.name() != pool.name():
            raise CommandError(f"Requested volume '{text}' is not in pool '{pool.name()}'")
    return vol


def vol_arg(conn: Any, args: argparse.Namespace) -> Any:
    return lookup_vol(conn, _data(args, "vol"), getattr(args, "pool", None))   # type: ignore[arg-type]


def _add_vol_args(p: argparse.ArgumentParser, help_text: str = "vol name, key or path") -> None:
    _data_arg(p, "vol", help_text)
    p.add_argument("--pool", metavar="STRING", help="pool name or uuid")


def parse_size(text: str) -> int:
    """virsh's virshVolSize: a number with an optional scale suffix (virScaleInteger:
    k/K, KiB = 1024, KB = 1000, ... up to E; b/byte/bytes), bytes by default."""
    from pyvirt.errors import ErrorDomain, ErrorNumber, error
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0:
        raise ValueError(text)
    value, suffix = int(text[:digits]), text[digits:]
    if not suffix or suffix.lower() in ("b", "byte", "bytes"):
        scale = 1
    else:
        if len(suffix) == 1 or suffix[1:].lower() == "ib":
            base = 1024
        elif len(suffix) == 2 and suffix[1] in "bB":
            base = 1000
        else:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"unknown suffix '{suffix}'")
        power = "kmgtpe".find(suffix[0].lower())
        if power < 0:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"unknown suffix '{suffix}'")
        scale = base ** (power + 1)
    if value > (2**64 - 1) // scale:
        from pyvirt.errors import libvirtError
        # VIR_ERR_OVERFLOW, with virErrorMsg's prefix
        raise libvirtError(f"numerical overflow: value too large: {value}{suffix}", 70, ErrorDomain.NONE)
    return value * scale


def _size(text: str) -> int:
    from pyvirt.errors import libvirtError
    try:
        return parse_size(text)
    except ValueError:
        raise CommandError(f"Malformed size {text}") from None
    except libvirtError as exc:
        raise _failed(f"Malformed size {text}", exc)


def _ull(text: str | None, option: str) -> int:
    """virsh's vshCommandOptULongLong (``--length`` wraps a negative value, as virsh's Wrap variant)."""
    if text is None:
        return 0
    try:
        value = int(text, 0) if text.strip() == text else None
    except ValueError:
        value = None
    if value is not None and option == "length" and -2**63 <= value < 0:
        value += 2**64
    if value is None or not 0 <= value < 2**64:
        raise CommandError(f"Numeric value '{text}' for <{option}> option is malformed or out of range")
    return value


# -- pool-list ---------------------------------------------------------------------------

_LIST_FILTERS = (("persistent", LIST_PERSISTENT), ("transient", LIST_TRANSIENT),
                 ("autostart", LIST_AUTOSTART), ("no_autostart", LIST_NO_AUTOSTART))


def pool_list_flags(args: argparse.Namespace) -> int:
    """virsh pool-list's flags for virConnectListAllStoragePools."""
    _exclusive(args, "all", "inactive")
    flags = LIST_ACTIVE
    if args.inactive:
        flags = LIST_INACTIVE
    if args.all:
        flags = LIST_ACTIVE | LIST_INACTIVE
    for name, bit in _LIST_FILTERS:
        if getattr(args, name):
            flags |= bit
    if args.type:
        for word in split_list(args.type):
            if word not in POOL_TYPE_FLAGS:
                raise CommandError(f"Invalid pool type '{word}'")
            flags |= POOL_TYPE_FLAGS[word]
    return flags


def split_list(text: str) -> list[str]:
    """virsh's vshStringToArray: comma-separated, ``,,`` for a literal comma."""
    return [part.replace("\0", ",") for part in text.replace(",,", "\0").split(",")]


def collect_pools(conn: Any, flags: int) -> list[Any]:
    """The pools pool-list shows, sorted by name ignoring case as virsh sorts them."""
    from pyvirt.errors import libvirtError
    try:
        pools = conn.listAllStoragePools(flags)
    except libvirtError as exc:
        raise _failed("Failed to list pools", exc)
    return sorted(pools, key=lambda p: p.name().lower())


def pool_rows(pools: list[Any], details: bool) -> list[list[str]]:
    """pool-list's rows: name, state, autostart (and persistent, capacity, allocation,
    available with ``details``), in virsh's words."""
    from pyvirt.errors import libvirtError
    rows = []
    for pool in pools:
        try:
            autostart = _yes_no(pool.autostart())
        except libvirtError:
            autostart = "no autostart"
        row = [pool.name(), "", autostart]
        if details:
            try:
                row.append(_yes_no(pool.isPersistent()))
            except libvirtError:
                row.append("unknown")
        try:
            state, capacity, allocation, available = pool.info()
        except libvirtError:
            print("error: Could not retrieve pool information", file=sys.stderr)
            row[1] = "unknown"
            if details:
                row += ["unknown"] * 3
            rows.append(row)
            continue
        if details:
            row[1] = POOL_STATES[state] if 0 <= state < len(POOL_STATES) else "unknown"
            if state in (POOL_RUNNING, POOL_DEGRADED):
                row += [pretty_capacity(capacity), pretty_capacity(allocation), pretty_capacity(available)]
            else:
                row += ["-", "-", "-"]
        else:
            row[1] = "active" if pool.isActive() else "inactive"
        rows.append(row)
    return rows


def _add_pool_list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inactive", action="store_true", help="list inactive pools")
    p.add_argument("--all", action="store_true", help="list inactive & active pools")
    p.add_argument("--transient", action="store_true", help="list transient pools")
    p.add_argument("--persistent", action="store_true", help="list persistent pools")
    p.add_argument("--autostart", action="store_true", help="list pools with autostart enabled")
    p.add_argument("--no-autostart", action="store_true", help="list pools with autostart disabled")
    p.add_argument("--type", metavar="STRING", help="only list pool of specified type(s) (if supported)")
    p.add_argument("--details", action="store_true", help="display extended details for pools")
    p.add_argument("--uuid", action="store_true", help="list UUID of active pools only")
    p.add_argument("--name", action="store_true", help="list name of active pools only")


@command("pool-list", "list pools")
def _pool_list(p: argparse.ArgumentParser) -> Handler:
    _add_pool_list_options(p)

    def run(conn: Any, args: argparse.Namespace) -> None:
        flags = pool_list_flags(args)
        _exclusive(args, "details", "uuid")
        _exclusive(args, "details", "name")
        pools = collect_pools(conn, flags)
        if args.uuid or args.name:
            for pool in pools:
                if args.uuid:
                    sys.stdout.write(f"{pool.UUIDString():<36}" + (" " if args.name else "\n"))
                if args.name:
                    sys.stdout.write(f"{pool.name():<20}\n")
            print()
            return
        if args.details:
            print_table(["Name", "State", "Autostart", "Persistent", "Capacity", "Allocation", "Available"],
                        pool_rows(pools, True))
        else:
            print_table(["Name", "State", "Autostart"], pool_rows(pools, False))
    return run


# -- pool-info, pool-uuid, pool-name, pool-dumpxml, pool-capabilities ---------------------

def pool_info_fields(pool: Any, as_bytes: bool) -> list[tuple[str, str]]:
    """pool-info's lines in virsh's order; the sizes only for a running or degraded pool."""
    from pyvirt.errors import libvirtError
    fields = [("Name", pool.name()), ("UUID", pool.UUIDString())]
    state, capacity, allocation, available = pool.info()
    fields.append(("State", POOL_STATES[state] if 0 <= state < len(POOL_STATES) else "unknown"))
    try:
        fields.append(("Persistent", _yes_no(pool.isPersistent())))
    except libvirtError:
        fields.append(("Persistent", "unknown"))
    try:
        fields.append(("Autostart", _yes_no(pool.autostart())))
    except libvirtError:
        fields.append(("Autostart", "no autostart"))
    if state in (POOL_RUNNING, POOL_DEGRADED):
        for label, value in (("Capacity", capacity), ("Allocation", allocation), ("Available", available)):
            fields.append((label, str(value) if as_bytes else pretty_capacity(value)))
    return fields


def _print_fields(fields: list[tuple[str, str]]) -> None:
    for label, value in fields:
        print(f"{label + ':':<15} {value}")
    print()


@command("pool-info", "storage pool information")
def _pool_info(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name or uuid")
    p.add_argument("--bytes", action="store_true", help="Return pool info in bytes")

    def run(conn: Any, args: argparse.Namespace) -> None:
        pool = pool_arg(conn, args)
        _print_fields(pool_info_fields(pool, args.bytes))
    return run


@command("pool-uuid", "convert a pool name to pool UUID")
def _pool_uuid(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name or uuid")

    def run(conn: Any, args: argparse.Namespace) -> None:
        print(pool_arg(conn, args, by_uuid=False).UUIDString())
        print()
    return run


@command("pool-name", "convert a pool UUID to pool name")
def _pool_name(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name or uuid")

    def run(conn: Any, args: argparse.Namespace) -> None:
        print(pool_arg(conn, args, by_name=False).name())
        print()
    return run


def _print_xml(xml: str, xpath: str | None = None, wrap: bool = False) -> None:
    if xpath is None:
        sys.stdout.write(xml if xml.endswith("\n") else xml + "\n")
    else:
        from .network_cmds import xpath_lines
        sys.stdout.write(xpath_lines(xml, xpath, wrap))
    print()


def _add_xpath_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--xpath", metavar="STRING", help="xpath expression to filter the XML document")
    p.add_argument("--wrap", action="store_true", help="wrap xpath results in an common root element")


@command("pool-dumpxml", "pool information in XML")
def _pool_dumpxml(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name or uuid")
    p.add_argument("--inactive", action="store_true", help="show inactive defined XML")
    _add_xpath_options(p)

    def run(conn: Any, args: argparse.Namespace) -> None:
        xml = pool_arg(conn, args).XMLDesc(XML_INACTIVE if args.inactive else 0)
        _print_xml(xml, args.xpath, args.wrap)
    return run


@command("pool-capabilities", "storage pool capabilities")
def _pool_capabilities(p: argparse.ArgumentParser) -> Handler:
    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        try:
            xml = conn.getStoragePoolCapabilities(0)
        except libvirtError as exc:
            raise _failed("failed to get storage pool capabilities", exc)
        sys.stdout.write(xml + "\n")      # virsh prints the XML, which ends in a newline, with one more
        print()
    return run


# -- define, create, build, start, destroy, delete, undefine, refresh, autostart ------------

def _add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--build", action="store_true", help="build the pool as normal")
    p.add_argument("--no-overwrite", action="store_true", help="do not overwrite any existing data")
    p.add_argument("--overwrite", action="store_true", help="overwrite any existing data")


def _create_flags(args: argparse.Namespace) -> int:
    """virStoragePoolCreateFlags of --build, --overwrite, --no-overwrite."""
    _exclusive(args, "overwrite", "no-overwrite")
    return ((CREATE_WITH_BUILD if args.build else 0) | (CREATE_BUILD_OVERWRITE if args.overwrite else 0)
            | (CREATE_BUILD_NO_OVERWRITE if args.no_overwrite else 0))


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")


# pool-define-as / pool-create-as options beyond name and type, in virsh's order
_POOL_AS_OPTIONS = (
    ("source-host", "source-host for underlying storage"),
    ("source-path", "source path for underlying storage"),
    ("source-dev", "source device for underlying storage"),
    ("source-name", "source name for underlying storage"),
    ("target", "target for underlying storage"),
    ("source-format", "format for underlying storage"),
    ("auth-type", "auth type to be used for underlying storage"),
    ("auth-username", "auth username to be used for underlying storage"),
    ("secret-usage", "auth secret usage to be used for underlying storage"),
    ("secret-uuid", "auth secret UUID to be used for underlying storage"),
    ("adapter-name", "adapter name to be used for underlying storage"),
    ("adapter-wwnn", "adapter wwnn to be used for underlying storage"),
    ("adapter-wwpn", "adapter wwpn to be used for underlying storage"),
    ("adapter-parent", "adapter parent scsi_hostN to be used for underlying vHBA storage"),
    ("adapter-parent-wwnn", "adapter parent scsi_hostN wwnn to be used for underlying vHBA storage"),
    ("adapter-parent-wwpn", "adapter parent scsi_hostN wwpn to be used for underlying vHBA storage"),
    ("adapter-parent-fabric-wwn", "adapter parent scsi_hostN fabric_wwn to be used for underlying vHBA storage"),
    ("source-protocol-ver", "nfsvers value for NFS pool mount option"),
    ("source-initiator", "initiator iqn for underlying storage"),
)


def build_pool_xml(args: argparse.Namespace) -> tuple[str, str]:
    """virsh's virshBuildPoolXML: (name, XML) from pool-define-as / pool-create-as options."""
    name, kind = _data(args, "name"), _data(args, "type")
    o = {opt: getattr(args, opt.replace("-", "_")) for opt, _ in _POOL_AS_OPTIONS}
    if o["secret-usage"] and o["secret-uuid"]:
        raise CommandError("Options --secret-usage and --secret-uuid are mutually exclusive")
    if (o["adapter-wwnn"] is None) != (o["adapter-wwpn"] is None):
        raise CommandError("Either both --adapter-wwnn and --adapter-wwpn must be provided or neither")
    lines = [f"<pool type='{_esc(kind)}'>", f"  <name>{_esc(name)}</name>"]   # type: ignore[arg-type]
    if any(o[k] for k in ("source-host", "source-path", "source-dev", "source-initiator", "source-format",
                          "source-name", "adapter-name")) or (o["adapter-wwnn"] and o["adapter-wwpn"]):
        lines.append("  <source>")
        if o["source-host"]:
            lines.append(f"    <host name='{_esc(o['source-host'])}'/>")
        if o["source-path"]:
            lines.append(f"    <dir path='{_esc(o['source-path'])}'/>")
        if o["source-dev"]:
            lines.append(f"    <device path='{_esc(o['source-dev'])}'/>")
        if o["source-initiator"]:
            lines += ["    <initiator>", f"      <iqn name='{_esc(o['source-initiator'])}'/>", "    </initiator>"]
        if o["adapter-wwnn"] and o["adapter-wwpn"]:
            adapter = f"    <adapter type='fc_host' wwnn='{_esc(o['adapter-wwnn'])}' wwpn='{_esc(o['adapter-wwpn'])}'"
            for key, attr in (("adapter-parent", "parent"), ("adapter-parent-wwnn", "parent_wwnn"),
                              ("adapter-parent-wwpn", "parent_wwpn"),
                              ("adapter-parent-fabric-wwn", "parent_fabric_wwn")):
                if o[key]:
                    adapter += f" {attr}='{_esc(o[key])}'"
            lines.append(adapter + "/>")
        elif o["adapter-name"]:
            lines.append(f"    <adapter type='scsi_host' name='{_esc(o['adapter-name'])}'/>")
        if o["auth-type"] and o["auth-username"] and (o["secret-usage"] or o["secret-uuid"]):
            lines.append(f"    <auth type='{_esc(o['auth-type'])}' username='{_esc(o['auth-username'])}'>")
            secret = (f"usage='{_esc(o['secret-usage'])}'" if o["secret-usage"]
                      else f"uuid='{_esc(o['secret-uuid'])}'")
            lines += [f"      <secret {secret}/>", "    </auth>"]
        if o["source-format"]:
            lines.append(f"    <format type='{_esc(o['source-format'])}'/>")
        if o["source-name"]:
            lines.append(f"    <name>{_esc(o['source-name'])}</name>")
        if o["source-protocol-ver"]:
            lines.append(f"    <protocol ver='{_esc(o['source-protocol-ver'])}'/>")
        lines.append("  </source>")
    if o["target"]:
        lines += ["  <target>", f"    <path>{_esc(o['target'])}</path>", "  </target>"]
    lines.append("</pool>")
    return name, "\n".join(lines) + "\n"    # type: ignore[return-value]


def _pool_as(name: str, help_text: str, create: bool) -> None:
    @command(name, help_text)
    def setup(p: argparse.ArgumentParser) -> Handler:
        _data_arg(p, "name", "name of the pool")
        _data_arg(p, "type", "type of the pool")
        p.set_defaults(command_name=name)
        p.add_argument("--print-xml", action="store_true", help="print XML document, but don't define/create")
        for opt, help_opt in _POOL_AS_OPTIONS:
            p.add_argument(f"--{opt}", metavar="STRING", help=help_opt)
        if create:
            _add_build_options(p)

        def run(conn: Any, args: argparse.Namespace) -> None:
            from pyvirt.errors import libvirtError
            flags = _create_flags(args) if create else 0
            pool_name, xml = build_pool_xml(args)
            if args.print_xml:
                sys.stdout.write(xml)
                print()
                return
            try:
                if create:
                    conn.storagePoolCreateXML(xml, flags)
                else:
                    conn.storagePoolDefineXML(xml, 0)
            except libvirtError as exc:
                raise _failed(f"Failed to {'create' if create else 'define'} pool {pool_name}", exc)
            print(f"Pool {pool_name} {'created' if create else 'defined'}\n")
        return run


_pool_as("pool-define-as", "define a pool from a set of args", create=False)
_pool_as("pool-create-as", "create a pool from a set of args", create=True)


@command("pool-define", "define an inactive persistent storage pool or modify an existing persistent one "
         "from an XML file")
def _pool_define(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "file", "file containing an XML pool description")
    p.add_argument("--validate", action="store_true", help="validate the XML against the schema")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        path = _data(args, "file")
        xml = read_file(path)     # type: ignore[arg-type]
        try:
            pool = conn.storagePoolDefineXML(xml, POOL_DEFINE_VALIDATE if args.validate else 0)
        except libvirtError as exc:
            raise _failed(f"Failed to define pool from {path}", exc)
        print(f"Pool {pool.name()} defined from {path}\n")
    return run


@command("pool-create", "create a pool from an XML file")
def _pool_create(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "file", "file containing an XML pool description")
    _add_build_options(p)

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        flags = _create_flags(args)
        path = _data(args, "file")
        xml = read_file(path)     # type: ignore[arg-type]
        try:
            pool = conn.storagePoolCreateXML(xml, flags)
        except libvirtError as exc:
            raise _failed(f"Failed to create pool from {path}", exc)
        print(f"Pool {pool.name()} created from {path}\n")
    return run


def _pool_simple(name: str, help_text: str, act: Any, fail: str, done: str, extra: Any = None) -> None:
    """Commands that look a pool up, call one method and print one line naming it as given."""
    @command(name, help_text)
    def setup(p: argparse.ArgumentParser) -> Handler:
        _data_arg(p, "pool", "pool name or uuid")
        if extra is not None:
            extra(p)

        def run(conn: Any, args: argparse.Namespace) -> None:
            from pyvirt.errors import libvirtError
            pool = pool_arg(conn, args)
            text = _data(args, "pool")
            call = act(args)
            try:
                call(pool)
            except libvirtError as exc:
                raise _failed(f"Failed to {fail} pool {text}", exc)
            print(f"Pool {text} {done}\n")
        return run


def _build_flags(args: argparse.Namespace) -> int:
    # virsh leaves the two flags' conflict to the driver here (unlike pool-start's)
    return (BUILD_NO_OVERWRITE if args.no_overwrite else 0) | (BUILD_OVERWRITE if args.overwrite else 0)


def _build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-overwrite", action="store_true", help="do not overwrite any existing data")
    p.add_argument("--overwrite", action="store_true", help="overwrite any existing data")


def _start(args: argparse.Namespace) -> Any:
    flags = _create_flags(args)
    return lambda pool: pool.create(flags)


def _build(args: argparse.Namespace) -> Any:
    flags = _build_flags(args)
    return lambda pool: pool.build(flags)


_pool_simple("pool-build", "build a pool", _build, "build", "built", _build_options)
_pool_simple("pool-start", "start a (previously defined) inactive pool", _start, "start", "started",
             _add_build_options)
_pool_simple("pool-destroy", "destroy (stop) a pool", lambda a: lambda pool: pool.destroy(), "destroy", "destroyed")
_pool_simple("pool-delete", "delete a pool", lambda a: lambda pool: pool.delete(0), "delete", "deleted")
_pool_simple("pool-undefine", "undefine an inactive pool", lambda a: lambda pool: pool.undefine(), "undefine",
             "has been undefined")
_pool_simple("pool-refresh", "refresh a pool", lambda a: lambda pool: pool.refresh(0), "refresh", "refreshed")


@command("pool-autostart", "autostart a pool")
def _pool_autostart(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name or uuid")
    p.add_argument("--disable", action="store_true", help="disable autostarting")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        pool = pool_arg(conn, args)
        text = _data(args, "pool")
        try:
            pool.setAutostart(0 if args.disable else 1)
        except libvirtError as exc:
            raise _failed(f"failed to {'unmark' if args.disable else 'mark'} pool {text} as autostarted", exc)
        print(f"Pool {text} {'unmarked' if args.disable else 'marked'} as autostarted\n")
    return run


@command("pool-edit", "edit XML configuration for a storage pool")
def _pool_edit(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name or uuid")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        from .network_cmds import edit_xml
        pool = pool_arg(conn, args)
        defined: list[Any] = []

        def define(xml: str) -> None:
            try:
                defined.append(conn.storagePoolDefineXML(xml, 0))
            except libvirtError as exc:
                raise _failed("Failed.", exc)

        def current() -> str:
            return pool.XMLDesc(XML_INACTIVE)

        if not edit_xml(current(), current, define):
            print(f"Pool {pool.name()} XML configuration not changed.\n")
            return
        print(f"Pool {defined[0].name()} XML configuration edited.\n")
    return run


# -- find-storage-pool-sources, find-storage-pool-sources-as -------------------------------------

def _print_sources(conn: Any, kind: str, spec: str | None) -> None:
    from pyvirt.errors import libvirtError
    try:
        found = conn.findStoragePoolSources(kind, spec, 0)
    except libvirtError as exc:
        raise _failed(f"Failed to find any {kind} pool sources", exc)
    sys.stdout.write(found)
    print()


@command("find-storage-pool-sources", "discover potential storage pool sources")
def _find_sources(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "type", "type of storage pool sources to discover")
    p.add_argument("--srcSpec", dest="src_spec", metavar="STRING", help="optional file of source xml to query for pools")

    def run(conn: Any, args: argparse.Namespace) -> None:
        kind = _data(args, "type")
        spec = read_file(args.src_spec) if args.src_spec is not None else None
        _print_sources(conn, kind, spec)     # type: ignore[arg-type]
    return run


@command("find-storage-pool-sources-as", "find potential storage pool sources")
def _find_sources_as(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "type", "type of storage pool sources to find")
    p.add_argument("--host", metavar="STRING", help="optional host to query")
    p.add_argument("--port", metavar="STRING", help="optional port to query")
    p.add_argument("--initiator", metavar="STRING", help="optional initiator IQN to use for query")

    def run(conn: Any, args: argparse.Namespace) -> None:
        kind = _data(args, "type")
        spec = None
        if args.host:      # virsh's <source> for the query: the host (and port), the initiator
            port = f" port='{_esc(args.port)}'" if args.port else ""
            lines = ["<source>", f"  <host name='{_esc(args.host)}'{port}/>"]
            if args.initiator:
                lines += ["  <initiator>", f"    <iqn name='{_esc(args.initiator)}'/>", "  </initiator>"]
            spec = "\n".join(lines + ["</source>"]) + "\n"
        _print_sources(conn, kind, spec)     # type: ignore[arg-type]
    return run


# -- pool-event ------------------------------------------------------------------------

POOL_EVENT_NAMES = ("lifecycle", "refresh")                      # VIR_STORAGE_POOL_EVENT_ID_*, virsh's names
POOL_LIFECYCLE_WORDS = ("Defined", "Undefined", "Started", "Stopped", "Created", "Deleted")


def pool_event_text(pool: str, event_id: int, event: int = 0) -> str:
    """virsh's line for one storage pool event (virStoragePoolEventLifecycleType words)."""
    if event_id == 0:
        word = POOL_LIFECYCLE_WORDS[event] if 0 <= event < len(POOL_LIFECYCLE_WORDS) else "unknown"
        return f"event 'lifecycle' for storage pool {pool}: {word}\n"
    return f"event '{POOL_EVENT_NAMES[event_id]}' for storage pool {pool}\n"


@command("pool-event", "Storage Pool Events")
def _pool_event(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--pool", dest="pool_opt", metavar="POOL", help="filter by storage pool name or uuid")
    p.add_argument("--event", help="which event type to wait for")
    p.add_argument("--loop", action="store_true", help="loop until timeout or interrupt, rather than one-shot")
    p.add_argument("--timeout", metavar="NUMBER", help="timeout seconds")
    p.add_argument("--list", action="store_true", help="list valid event types")
    p.add_argument("--timestamp", action="store_true", help="show timestamp for each printed event")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from .eventwatch import EventWatch
        from .network_cmds import _timestamp, parse_int
        if args.list:
            print("\n".join(POOL_EVENT_NAMES) + "\n")
            return
        if not args.event:
            raise CommandError("either --list or --event <type> is required")
        if args.event not in POOL_EVENT_NAMES:
            raise CommandError(f"unknown event type {args.event}")
        timeout = None
        if args.timeout is not None:
            timeout = parse_int(args.timeout, "timeout", 0)
            if timeout <= 0:
                raise CommandError(f"Numeric value '{args.timeout}' for <timeout> option is malformed or out of range")
        pool = lookup_pool(conn, args.pool_opt) if args.pool_opt else None
        event_id = POOL_EVENT_NAMES.index(args.event)
        watch = EventWatch(args.loop)

        def show(pool_obj: Any, event: int = 0) -> None:
            prefix = f"{_timestamp()}: " if args.timestamp else ""
            watch.show(prefix + pool_event_text(pool_obj.name(), event_id, event))

        if event_id == 0:
            def on_event(_conn: Any, pool_obj: Any, event: int, _detail: int, _opaque: Any) -> None:
                show(pool_obj, event)
        else:
            def on_event(_conn: Any, pool_obj: Any, _opaque: Any) -> None:   # type: ignore[misc]
                show(pool_obj)

        callback = conn.storagePoolEventRegisterAny(pool, event_id, on_event, None)
        watch.wait(timeout, lambda: conn.storagePoolEventDeregisterAny(callback))
    return run
