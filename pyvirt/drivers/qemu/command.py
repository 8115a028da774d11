"""DomainDef → QEMU command line.  Pure: no I/O, golden-tested.

The driver first gives every device its alias (:func:`assign_aliases`, on
the live copy of the definition, so the status XML shows them) and picks
graphics ports; :func:`build_argv` then only translates.  Descriptors the
driver opens afterwards (the monitor socket, taps, secrets) appear as
placeholders it substitutes at launch.  Tables map XML values to QEMU
device models; anything without a mapping is refused with
CONFIG_UNSUPPORTED before QEMU is ever started.

No value from the XML can add an option.  Two rules make sure of it:

* options QEMU 7.2 takes as JSON are written as JSON: ``-blockdev``,
  ``-device``, ``-netdev`` and ``-object``;
* the others (``-name``, ``-machine``, ``-chardev``, ``-spice``, ``-vnc``)
  are built by :func:`qemu_opts`, which passes every value through
  :func:`opt_value` — QEMU reads ``,,`` as a literal comma, so a value can
  never end its option and start another.  A value in the leading
  (implied-key) place is also refused if it holds ``=``, which QEMU would
  read as a key.

Values that cannot be legal at all (a machine type or CPU model with
characters none has, an alias libvirt would not write, a listen address
that is neither an IP address nor a host name) are refused instead, before
anything runs.  Options that make QEMU run programs (``helper=``,
``script=``) are never written: bridged NICs get a tap descriptor the
daemon created itself.  Secrets never appear here either: a
:class:`~.secrets.SecretPlan` turns each into a ``secret`` object QEMU reads
from a descriptor.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...conf import DomainDef
from ...conf.address import OtherAddress, PCIAddress
from ...conf import pciaddr
from ...conf.controllers import controller_alias
from ...errors import ErrorDomain, ErrorNumber, error
from .clockargs import pm_globals, rtc_option, timer_options
from .secrets import SecretPlan

MONITOR_FD = "@MONITOR_FD@"
# Descriptors the driver opens after building (the tap of a bridged NIC and
# its vhost-net), named by the NIC's alias; :mod:`.tap` substitutes them.
TAP_FD = "@TAP_FD:{}@"
VHOST_FD = "@VHOST_FD:{}@"
DOMAIN_TYPES = ("kvm", "qemu")

NIC_MODELS = {None: "virtio-net-pci", "virtio": "virtio-net-pci", "e1000": "e1000",
              "e1000e": "e1000e", "rtl8139": "rtl8139"}
VIDEO_MODELS = {"vga": "VGA", "cirrus": "cirrus-vga", "qxl": "qxl-vga", "virtio": "virtio-vga",
                "bochs": "bochs-display", "default": "VGA"}
SECONDARY_VIDEO_MODELS = {"qxl": "qxl", "virtio": "virtio-gpu-pci"}
BALLOON_MODELS = {"virtio": "virtio-balloon-pci"}
DISK_DEVICE_BY_BUS = {"virtio": "virtio-blk-pci", "ide": "ide-hd", "sata": "ide-hd", "scsi": "scsi-hd",
                      "usb": "usb-storage"}
CDROM_DEVICE_BY_BUS = {"ide": "ide-cd", "sata": "ide-cd", "scsi": "scsi-cd"}
# <driver cache> -> (cache.writeback, cache.direct, cache.no-flush), qemuDomainDiskCachemodeFlags
DISK_CACHE_FLAGS = {"none": (True, True, False), "writeback": (True, False, False),
                    "writethrough": (False, False, False), "directsync": (False, True, False),
                    "unsafe": (True, False, True)}
# libvirt's disk formats that QEMU opens as a plain block driver over the file.
DISK_FORMATS = ("raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc", "vhdx", "cloop", "dmg",
                "bochs", "parallels")
INPUT_DEVICES = {("tablet", "usb"): "usb-tablet", ("mouse", "usb"): "usb-mouse",
                 ("keyboard", "usb"): "usb-kbd", ("tablet", "virtio"): "virtio-tablet-pci",
                 ("mouse", "virtio"): "virtio-mouse-pci", ("keyboard", "virtio"): "virtio-keyboard-pci"}
# <controller> type and model -> QEMU device (None: built into the machine, nothing to add).
CONTROLLER_DEVICES: dict[tuple[str, str | None], str | None] = {
    ("scsi", None): "virtio-scsi-pci", ("scsi", "virtio-scsi"): "virtio-scsi-pci",
    ("sata", None): "ich9-ahci",
    ("usb", None): "piix3-usb-uhci", ("usb", "piix3-uhci"): "piix3-usb-uhci",
    ("usb", "qemu-xhci"): "qemu-xhci", ("usb", "nec-xhci"): "nec-usb-xhci", ("usb", "none"): None,
    ("usb", "ich9-ehci1"): "ich9-usb-ehci1", ("usb", "ich9-uhci1"): "ich9-usb-uhci1",
    ("usb", "ich9-uhci2"): "ich9-usb-uhci2", ("usb", "ich9-uhci3"): "ich9-usb-uhci3",
    ("pci", "pci-root"): None, ("pci", "pcie-root"): None, ("virtio-serial", None): "virtio-serial-pci",
}
# libvirt's drive aliases: controller-bus-unit, from the index the target name gives.
DISK_ALIAS_BY_BUS = {"ide": lambda i: f"ide0-{i // 2}-{i % 2}", "sata": lambda i: f"sata0-0-{i}",
                     "scsi": lambda i: f"scsi0-0-0-{i}"}

# The characters libvirt accepts in a user alias (USER_ALIAS_CHARS); the
# aliases it generates use no others.
_ALIAS_RE = re.compile(r"[A-Za-z0-9_-]+")
# a virtio-serial port name as guests look for it: 'org.qemu.guest_agent.0'
_CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Machine types and CPU models are QEMU type names: 'pc-q35-7.2', 'Skylake-Client-v4'.
_QEMU_TYPE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


@dataclass(frozen=True)
class CommandContext:
    """What the command line depends on besides the definition."""

    emulator: str
    kvm_available: bool
    incoming: str | None = None       # "defer" for an incoming migration or a restore
    vhost_net: bool = False           # /dev/vhost-net can be opened: virtio NICs use it


def _unsupported(detail: str) -> Exception:
    return error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU, detail)


def _xml_error(detail: str) -> Exception:
    return error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN, detail)


# -- the one way values enter QEMU option strings -------------------------------

def opt_value(value: object) -> str:
    """``value`` as it must appear inside a ``key=value,...`` option string:
    QEMU (QemuOpts and keyval alike) reads ``,,`` as one literal comma."""
    return str(value).replace(",", ",,")


def qemu_opts(*items: str | tuple[str, object]) -> str:
    """An option string: a bare string is a value in the implied-key place
    (the backend or machine type), a pair is ``key=value``; every value is
    escaped by :func:`opt_value`."""
    parts = []
    for item in items:
        if isinstance(item, tuple):
            key, value = item
            parts.append(f"{key}={opt_value(value)}")
        else:
            if "=" in item:   # QEMU would read the part before '=' as a key
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                            f"'{item}' cannot lead a QEMU option string")
            parts.append(opt_value(item))
    return ",".join(parts)


def _json(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _device(driver: str, props: Mapping[str, Any]) -> list[str]:
    """A ``-device`` in QEMU's JSON form (typed values, nothing to escape)."""
    return ["-device", _json({"driver": driver, **props})]


# -- validation of values that cannot be escaped ----------------------------------

def assign_aliases(d: DomainDef) -> None:
    """Give each device the alias libvirt would (``virtio-disk0``, ``net0``, ...),
    and refuse aliases libvirt would never write (they become QEMU ids)."""
    for disk in d.devices.disks:
        if disk.alias:
            continue
        index = _target_index(disk.target_dev)
        if disk.target_bus == "virtio":
            disk.alias = f"virtio-disk{index}"     # libvirt names it after the target: vdb is virtio-disk1
        else:
            disk.alias = DISK_ALIAS_BY_BUS.get(disk.target_bus, lambda i: f"{disk.target_bus}-disk{i}")(index)
    for i, nic in enumerate(d.devices.interfaces):
        nic.alias = nic.alias or f"net{i}"
    for ctrl in d.devices.controllers:
        if ctrl.type == "sata" and ctrl.index == 0 and pciaddr.is_q35(d):
            ctrl.alias = ctrl.alias or "ide"     # libvirt's alias of q35's built-in AHCI
        ctrl.alias = ctrl.alias or controller_alias(ctrl)
    for i, serial in enumerate(d.devices.serials):
        serial.alias = serial.alias or f"serial{i}"
    for i, console in enumerate(d.devices.consoles):
        # console 0 of type serial is serial port 0 shown again: libvirt gives it that port's alias
        if i == 0 and console.target_type == "serial" and d.devices.serials and not console.alias:
            console.alias = d.devices.serials[0].alias
        console.alias = console.alias or f"console{i}"
    for i, channel in enumerate(d.devices.channels):
        channel.alias = channel.alias or f"channel{i}"
    for i, video in enumerate(d.devices.videos):
        video.alias = video.alias or f"video{i}"
    for i, dev in enumerate(d.devices.inputs):
        dev.alias = dev.alias or f"input{i}"
    if d.devices.memballoon is not None:
        d.devices.memballoon.alias = d.devices.memballoon.alias or "balloon0"
    _check_aliases(d)


def _check_aliases(d: DomainDef) -> None:
    devs = d.devices
    seen: set[str] = set()
    mirrored = devs.consoles[:1] if devs.consoles and devs.serials and \
        devs.consoles[0].alias == devs.serials[0].alias else []     # serial port 0 shown as console 0
    consoles = [c for c in devs.consoles if not any(c is m for m in mirrored)]
    for dev in (*devs.disks, *devs.interfaces, *devs.serials, *consoles, *devs.channels, *devs.videos,
                *devs.inputs, *([devs.memballoon] if devs.memballoon else []),
                # pci.N names a bus, not a device; a USB companion shows its master's alias
                *(c for c in devs.controllers if c.type != "pci" and c.master_startport is None)):
        alias = dev.alias
        if not _ALIAS_RE.fullmatch(alias):
            raise _xml_error(f"device alias '{alias}' has invalid characters "
                             "(allowed: letters, digits, '_' and '-')")
        if alias in seen:
            raise _xml_error(f"non unique alias detected: {alias}")
        seen.add(alias)


def _check_listen(g) -> str:
    listen = next((l.address for l in g.listens if l.address), None) or "127.0.0.1"
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        if len(listen) > 253 or not _HOSTNAME_RE.fullmatch(listen):
            raise _xml_error(f"{g.type} listen address '{listen}' is neither an IP address "
                             "nor a host name") from None
    return listen


def _accel(d: DomainDef, ctx: CommandContext) -> str:
    if d.type == "kvm":
        if not ctx.kvm_available:
            raise _unsupported("domain type 'kvm' needs /dev/kvm, which cannot be opened on this host; "
                               "use type 'qemu' for software emulation")
        return "kvm"
    if d.type == "qemu":
        return "tcg"
    raise _unsupported(f"domain type '{d.type}' is not supported by the qemu driver "
                       f"(supported: {', '.join(DOMAIN_TYPES)})")


# libvirt's x86 feature names that QEMU spells differently (virQEMUCapsCPUFeaturesX86)
CPU_FEATURE_QEMU_NAMES = {"cmp_legacy": "cmp-legacy", "ds_cpl": "ds-cpl", "fxsr_opt": "fxsr-opt",
                          "kvm_pv_eoi": "kvm-pv-eoi", "kvm_pv_unhalt": "kvm-pv-unhalt", "lahf_lm": "lahf-lm",
                          "nodeid_msr": "nodeid-msr", "pclmuldq": "pclmulqdq", "perfctr_core": "perfctr-core",
                          "perfctr_nb": "perfctr-nb", "tsc_adjust": "tsc-adjust"}
_CPU_FEATURE_VALUE = {"force": "on", "require": "on", "disable": "off", "forbid": "off"}


def _cpu_features(cpu: Any) -> str:
    """``,name=on|off`` per <feature> (optional ones are left to QEMU), as libvirt writes them."""
    out = ""
    for policy, name in cpu.features:
        if policy not in _CPU_FEATURE_VALUE:
            continue
        if not _QEMU_TYPE_NAME_RE.fullmatch(name):
            raise _unsupported(f"CPU feature '{name}' is not supported by hypervisor")
        out += f",{CPU_FEATURE_QEMU_NAMES.get(name, name)}={_CPU_FEATURE_VALUE[policy]}"
    return out


def _cpu(d: DomainDef, accel: str) -> list[str]:
    cpu = d.cpu
    if cpu is None or cpu.mode is None:
        return []
    if cpu.mode in ("host-passthrough", "host-model", "maximum"):
        model = "host" if accel == "kvm" and cpu.mode != "maximum" else "max"
        if cpu.migratable and cpu.mode != "host-model":
            model += f",migratable={cpu.migratable}"
        return ["-cpu", model + _cpu_features(cpu)]
    if cpu.mode == "custom" and cpu.model:
        # -cpu splits features off at the first comma and knows no escape.
        if not _QEMU_TYPE_NAME_RE.fullmatch(cpu.model):
            raise _unsupported(f"CPU model '{cpu.model}' is not supported by hypervisor")
        return ["-cpu", cpu.model + _cpu_features(cpu)]
    return []


def _loader(d: DomainDef) -> list[str]:
    """libvirt's -bios for a ROM firmware image; pflash (varstores, secure boot) is not built here."""
    loader = d.os.loader
    if loader is None:
        return []
    if loader.type != "rom" or loader.path is None or (loader.readonly, loader.secure, loader.stateless) != \
            (None, None, None):
        raise _unsupported("<os><loader>: only a ROM image (type='rom' with a path, no other attribute) "
                           "is supported; pflash firmware and <nvram> are not")
    return ["-bios", loader.path]


def check_unbuilt(d: DomainDef) -> None:
    """Refuse what the definition keeps but this driver cannot give QEMU, rather than start
    a guest without it: a CPU's vendor (libvirt checks it against the host's CPU) and its
    topology (vCPU hot-plug here places each vCPU in a socket of its own)."""
    if d.cpu is not None and d.cpu.vendor is not None:
        raise _unsupported("<cpu><vendor> is not supported by this driver")
    if d.cpu is not None and d.cpu.topology is not None:
        raise _unsupported("<cpu><topology> is not supported by this driver")


def check_nic_scripts(nic: Any) -> None:
    """libvirt runs scripts for ethernet NICs only and refuses them elsewhere; this driver
    runs none, so it refuses them everywhere."""
    if nic.script is not None and nic.type != "ethernet":
        raise _unsupported(f"scripts are not supported on interfaces of type {nic.type}")
    if nic.type == "ethernet" and (nic.script is not None or nic.downscript is not None):
        raise _unsupported("<interface type='ethernet'>: <script> and <downscript> are not supported "
                           "by this driver")


def _machine(d: DomainDef, ctx: CommandContext, accel: str) -> list[str]:
    machine = d.os.machine or "pc"
    if not _QEMU_TYPE_NAME_RE.fullmatch(machine):
        raise _unsupported(f"Emulator '{d.devices.emulator or ctx.emulator}' does not support "
                           f"machine type '{machine}'")
    opts: list[str | tuple[str, object]] = [machine, ("usb", "off"),
                                            *([("vmport", d.vmport)] if d.vmport else []),
                                            ("dump-guest-core", "off")]
    if "acpi" not in d.features:
        opts.append(("acpi", "off"))
    return ["-machine", qemu_opts(*opts), "-accel", accel]


def _target_index(dev: str) -> int:
    """hda → 0, hdc → 2, sdb → 1, vdaa → 26: the drive index libvirt derives
    from the target name, which fixes an IDE/SATA disk's bus and unit."""
    letters = dev.lstrip("hsvx").removeprefix("d")
    index = 0
    for ch in letters:
        if not "a" <= ch <= "z":
            return 0
        index = index * 26 + (ord(ch) - ord("a") + 1)
    return max(index - 1, 0)


# -- devices ------------------------------------------------------------------------

def root_bus(d: DomainDef) -> str:
    """The name of a guest's PCI root bus: ``pcie.0`` on q35, ``pci.0`` elsewhere."""
    return "pcie.0" if pciaddr.is_q35(d) else "pci.0"


def pci_props(dev: Any, root: str = "pci.0") -> dict[str, Any]:
    """``bus``/``addr`` of a device the definition placed on a PCI bus (none: QEMU picks).
    Bus N is the bus of PCI controller N (``pci.N``, as libvirt names them); 0 is the root."""
    addr = getattr(dev, "address", None)
    if not isinstance(addr, PCIAddress):
        return {}
    if addr.domain != 0:
        raise _unsupported(f"PCI address {addr}: only PCI domain 0 is supported")
    props: dict[str, Any] = {"bus": root if addr.bus == 0 else f"pci.{addr.bus}", "addr": addr.qemu_addr}
    if addr.multifunction == "on":
        props["multifunction"] = True
    return props


def usb_props(dev: Any) -> dict[str, Any]:
    """``bus``/``port`` of a USB device (the port from its <address type='usb'>, when given)."""
    props: dict[str, Any] = {"bus": "usb.0"}
    addr = getattr(dev, "address", None)
    if isinstance(addr, OtherAddress) and addr.type == "usb":
        attrs = dict(addr.attrs)
        if attrs.get("bus", "0") != "0":
            raise _unsupported(f"USB bus '{attrs.get('bus')}': only bus 0 (the first USB controller) is supported")
        port = attrs.get("port")
        if port is not None:
            if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", port):
                raise _xml_error(f"Cannot parse <address> 'port' attribute '{port}'")
            props["port"] = port
    return props


def boot_indexes(d: DomainDef) -> dict[int, int]:
    """id(device) -> bootindex from <os><boot dev=...>, as libvirt 9.0 gives them: the
    first disk, CD-ROM and NIC get their kind's place in the boot order."""
    wanted = {"hd": "disk", "cdrom": "cdrom", "fd": "floppy"}
    order = {kind: i + 1 for i, kind in reversed(list(enumerate(d.os.boot)))}
    found: dict[int, int] = {}
    for boot, device in wanted.items():
        if boot not in order:
            continue
        disk = next((x for x in d.devices.disks if x.device == device
                     or (device == "disk" and x.device == "lun")), None)
        if disk is not None:
            found[id(disk)] = order[boot]
    if "network" in order and d.devices.interfaces:
        found[id(d.devices.interfaces[0])] = order["network"]
    return found


def controller_props(ctrl: Any, root: str = "pci.0") -> tuple[str, dict[str, Any]] | None:
    """QEMU's device model and properties for one <controller> (None: built into the machine)."""
    if ctrl.type == "ide" and ctrl.index == 0:
        return None
    if ctrl.type == "sata" and ctrl.index == 0 and root == "pcie.0":
        return None       # the q35 machine's own AHCI (00:1f.2)
    if ctrl.type == "pci" and ctrl.model == "pcie-root-port":
        if ctrl.target_chassis is None or ctrl.target_port is None:
            raise _unsupported(f"pcie-root-port controller {ctrl.index} needs <target chassis= port=>")
        return "pcie-root-port", {"port": ctrl.target_port, "chassis": ctrl.target_chassis,
                                  "id": ctrl.alias, **pci_props(ctrl, root)}
    if (ctrl.type, ctrl.model) not in CONTROLLER_DEVICES:
        raise _unsupported(f"{ctrl.type} controller model '{ctrl.model or 'default'}' is not supported")
    model = CONTROLLER_DEVICES[(ctrl.type, ctrl.model)]
    if model is None:
        return None
    if ctrl.master_startport is not None:   # a USB companion: no bus of its own, its master's ports
        return model, {"masterbus": f"{ctrl.alias}.0", "firstport": ctrl.master_startport,
                       **pci_props(ctrl, root)}
    return model, {"id": ctrl.alias, **pci_props(ctrl, root)}


def controller_device(ctrl: Any, root: str = "pci.0") -> list[str]:
    """The ``-device`` of one <controller> (empty for those built into the machine)."""
    found = controller_props(ctrl, root)
    return [] if found is None else _device(*found)


def _controllers(d: DomainDef) -> list[str]:
    args: list[str] = []
    # PCI controllers first: the buses the other controllers sit on (libvirt's order)
    for ctrl in sorted(d.devices.controllers, key=lambda c: c.type != "pci"):
        args += controller_device(ctrl, root_bus(d))
    return args


def _has_controller(d: DomainDef, ctype: str) -> bool:
    return any(c.type == ctype and c.model != "none" for c in d.devices.controllers)


def _error_policy_props(disk: Any) -> dict[str, str]:
    """QEMU's werror/rerror from <driver error_policy/rerror_policy>, as libvirt maps them:
    reads follow error_policy unless rerror_policy says otherwise; 'enospace' is QEMU's
    'enospc' and for writes only."""
    write = getattr(disk, "driver_error_policy", None)
    read = getattr(disk, "driver_rerror_policy", None)
    if write == "enospace":
        write = "enospc"
    elif read is None:
        read = write
    return {k: v for k, v in (("werror", write), ("rerror", read)) if v is not None}


def disk_device_props(disk: Any, drive: str | None, root: str = "pci.0") -> tuple[str, dict[str, Any]]:
    """The QEMU device model and properties of one disk (its controller already present)."""
    unit = _target_index(disk.target_dev)
    table = CDROM_DEVICE_BY_BUS if disk.device == "cdrom" else DISK_DEVICE_BY_BUS
    model = table.get(disk.target_bus)
    if model is None or disk.device not in ("disk", "cdrom"):
        raise _unsupported(f"disk '{disk.target_dev}': {disk.device} on bus '{disk.target_bus}' "
                           f"is not supported")
    props: dict[str, Any] = {}
    if drive is not None:
        props["drive"] = drive
    if disk.target_bus == "sata":
        props["bus"] = f"sata0.{unit}"
    elif disk.target_bus == "ide":
        props.update({"bus": f"ide.{unit // 2}", "unit": unit % 2})
    elif disk.target_bus == "scsi":
        props.update({"bus": "scsi0.0", "scsi-id": unit})
    elif disk.target_bus == "usb":
        props.update({**usb_props(disk), "removable": False})
    props["id"] = disk.alias
    flags = _cache_flags(disk)
    if flags is not None and disk.device != "cdrom":
        # the guest sees this one: the disk's volatile write cache (virtio-blk's WCE, SCSI's WCE bit)
        props["write-cache"] = "on" if flags[0] else "off"
    props.update(_error_policy_props(disk))
    if disk.shareable and disk.target_bus == "virtio":
        props["share-rw"] = True
    if disk.target_bus == "virtio":
        props.update(pci_props(disk, root))
    return model, props


def _cache_flags(disk: Any) -> tuple[bool, bool, bool] | None:
    """(writeback, direct, no-flush) of the disk's <driver cache> (None: QEMU's default)."""
    cache = getattr(disk, "driver_cache", None)
    if cache in (None, "default"):
        return None
    if cache not in DISK_CACHE_FLAGS:
        raise _unsupported(f"disk '{disk.target_dev}': unknown disk cache mode '{cache}'")
    return DISK_CACHE_FLAGS[cache]


def disk_blockdevs(disk: Any, n: int) -> tuple[list[dict[str, Any]], str | None]:
    """The storage and format nodes of one disk (``libvirt-N-*``), and the node its device uses."""
    fmt_name = disk.driver_type or "raw"
    if fmt_name not in DISK_FORMATS:
        raise _unsupported(f"disk '{disk.target_dev}': unknown driver format value '{fmt_name}'")
    if disk.source is None:
        return [], None
    storage, fmt = f"libvirt-{n}-storage", f"libvirt-{n}-format"
    flags = _cache_flags(disk)
    cache = {"cache": {"direct": flags[1], "no-flush": flags[2]}} if flags is not None else {}
    return [{"driver": "host_device" if disk.storage_type == "block" else "file",
             "filename": disk.source, "node-name": storage, **cache,
             "auto-read-only": True, "discard": "unmap"},
            {"node-name": fmt, "read-only": disk.readonly or disk.device == "cdrom", **cache,
             "driver": fmt_name, "file": storage}], fmt

def _disks(d: DomainDef) -> list[str]:
    args: list[str] = []
    boot = boot_indexes(d)
    # Guests defined without <controller> elements get the controller their disks need.
    controllers = {t for t in ("sata", "scsi", "usb") if _has_controller(d, t)}
    for n, disk in enumerate(d.devices.disks, start=1):
        model, props = disk_device_props(disk, None, root_bus(d))
        nodes, drive = disk_blockdevs(disk, n)
        for node in nodes:
            args += ["-blockdev", _json(node)]
        if drive is not None:
            props = {"drive": drive, **props}
        if id(disk) in boot:
            props["bootindex"] = boot[id(disk)]
        if disk.target_bus == "sata" and "sata" not in controllers:
            args += _device("ich9-ahci", {"id": "sata0"})
            controllers.add("sata")
        elif disk.target_bus == "scsi" and "scsi" not in controllers:
            args += _device("virtio-scsi-pci", {"id": "scsi0"})
            controllers.add("scsi")
        elif disk.target_bus == "usb" and "usb" not in controllers:
            args += _device("piix3-usb-uhci", {"id": "usb"})
            controllers.add("usb")
        args += _device(model, props)
    return args


def _interfaces(d: DomainDef, ctx: CommandContext) -> list[str]:
    args: list[str] = []
    boot = boot_indexes(d)
    for i, nic in enumerate(d.devices.interfaces):
        netdev = f"hostnet{i}"
        model = NIC_MODELS.get(nic.model)
        if model is None:
            raise _unsupported(f"interface model '{nic.model}' is not supported")
        check_nic_scripts(nic)
        if nic.type == "user":
            args += ["-netdev", _json({"type": "user", "id": netdev})]
        elif nic.type in ("bridge", "network", "ethernet"):
            # Never '-netdev bridge': it runs qemu-bridge-helper.  The daemon made
            # the tap and put it on the bridge; QEMU only gets the descriptor.
            tap: dict[str, Any] = {"type": "tap", "fd": TAP_FD.format(nic.alias)}
            if ctx.vhost_net and model == "virtio-net-pci":
                tap.update(vhost=True, vhostfd=VHOST_FD.format(nic.alias))
            args += ["-netdev", _json({**tap, "id": netdev})]
        else:
            raise _unsupported(f"interface type '{nic.type}' is not supported")
        props: dict[str, Any] = {"netdev": netdev, "id": nic.alias, "mac": nic.mac}
        if id(nic) in boot:
            props["bootindex"] = boot[id(nic)]
        args += _device(model, {**props, **pci_props(nic, root_bus(d))})
    return args


def _chardev(kind: str, alias: str, dev, d: DomainDef | None = None) -> str:
    chardev_id = ("id", f"char{alias}")
    if dev.type == "spicevmc":
        # the SPICE server's agent channel: only with SPICE graphics to serve it
        if d is None or not any(g.type == "spice" for g in d.devices.graphics):
            raise _unsupported(f"{kind} type 'spicevmc' needs SPICE graphics")
        return qemu_opts("spicevmc", chardev_id, ("name", "vdagent"))
    if dev.type == "file":
        return qemu_opts("file", chardev_id, ("path", dev.path), ("append", "on"))
    if dev.type == "pty":
        return qemu_opts("pty", chardev_id)
    if dev.type == "unix":
        server = [("server", "on"), ("wait", "off")] if dev.mode != "connect" else [("server", "off")]
        return qemu_opts("socket", chardev_id, ("path", dev.path), *server)
    if dev.type == "null":
        return qemu_opts("null", chardev_id)
    raise _unsupported(f"{kind} type '{dev.type}' is not supported")


def _serials(d: DomainDef) -> list[str]:
    args: list[str] = []
    for serial in d.devices.serials:
        args += ["-chardev", _chardev("serial", serial.alias, serial, d),
                 *_device("isa-serial", {"chardev": f"char{serial.alias}", "id": serial.alias,
                                         "index": serial.target_port})]
    args += _channels(d)
    # A <console type='serial'> is the first serial port shown again, as in libvirt;
    # a virtio one is a port of the virtio-serial controller.
    for console in d.devices.consoles:
        if console.target_type == "virtio":
            args += ["-chardev", _chardev("console", console.alias, console, d),
                     *_device("virtconsole", {"chardev": f"char{console.alias}", "id": console.alias})]
            continue
        if console.target_type != "serial":
            raise _unsupported(f"console target type '{console.target_type}' is not supported")
        if not d.devices.serials:
            args += ["-chardev", _chardev("console", console.alias, console, d),
                     *_device("isa-serial", {"chardev": f"char{console.alias}", "id": console.alias})]
    return args


def _channels(d: DomainDef) -> list[str]:
    """virtio-serial ports (``virtserialport``), each on its <address type='virtio-serial'>."""
    args: list[str] = []
    for channel in d.devices.channels:
        if channel.target_type != "virtio":
            raise _unsupported(f"channel target type '{channel.target_type}' is not supported")
        if not channel.target_name or not _CHANNEL_NAME_RE.fullmatch(channel.target_name):
            raise _xml_error(f"channel target name '{channel.target_name or ''}' is not a port name")
        if channel.type == "unix" and not channel.path:
            # libvirt makes a socket under its channel directory for it (and leaves that path out
            # of migratable XML).  pyvirt makes none: the port is there for the guest as with
            # libvirt (the same device, the same migration state), but nothing on the host
            # answers it (pyvirt does not speak the guest agent).
            chardev = qemu_opts("null", ("id", f"char{channel.alias}"))
        else:
            chardev = _chardev("channel", channel.alias, channel, d)
        props: dict[str, Any] = {}
        addr = channel.address
        if isinstance(addr, OtherAddress) and addr.type == "virtio-serial":
            attrs = dict(addr.attrs)
            try:
                controller, bus, port = (int(attrs.get(k, "0"), 0) for k in ("controller", "bus", "port"))
            except ValueError:
                raise _xml_error(f"invalid virtio-serial address of channel '{channel.target_name}'") from None
            props = {"bus": f"virtio-serial{controller}.{bus}", "nr": port}
        args += ["-chardev", chardev,
                 *_device("virtserialport", {**props, "chardev": f"char{channel.alias}", "id": channel.alias,
                                             "name": channel.target_name})]
    return args


def _graphics(d: DomainDef, secrets: SecretPlan) -> list[str]:
    args: list[str] = []
    for i, g in enumerate(d.devices.graphics):
        if g.port <= 0 and (g.type == "vnc" or g.tls_port <= 0):
            raise _unsupported(f"{g.type} graphics has no port: use autoport='yes' or give one")
        if g.type == "vnc":
            listen = _check_listen(g)
            if not 5900 <= g.port <= 65535:
                raise _unsupported(f"vnc port {g.port} is outside 5900-65535")
            host = f"[{listen}]" if ":" in listen else listen
            # The password is set over QMP once QEMU runs (driver._set_graphics_passwords).
            args += ["-vnc", qemu_opts(f"{host}:{g.port - 5900}",
                                       *([("password", "on")] if g.passwd else []))]
        elif g.type == "spice":
            listen = _check_listen(g)
            opts: list[tuple[str, object]] = [("port", g.port)] if g.port > 0 else []
            if g.tls_port > 0:
                opts.append(("tls-port", g.tls_port))
            opts.append(("addr", listen))
            if g.passwd:
                secret_id = f"graphics{i}-secret"
                args += secrets.object_args(secret_id, g.passwd)
                opts.append(("password-secret", secret_id))
            else:
                opts.append(("disable-ticketing", "on"))
            opts.append(("seamless-migration", "on"))
            args += ["-spice", qemu_opts(*opts)]
        else:
            raise _unsupported(f"graphics type '{g.type}' is not supported")
    return args


def _video(d: DomainDef) -> list[str]:
    args: list[str] = []
    for n, video in enumerate(d.devices.videos):
        if video.type == "none":
            continue
        # a secondary card has no VGA part: QEMU's plain model (libvirt's qemuDeviceVideoGetModel)
        model = SECONDARY_VIDEO_MODELS.get(video.type) if n > 0 else VIDEO_MODELS.get(video.type)
        if model is None:
            raise _unsupported(f"video model '{video.type}' is not supported")
        props: dict[str, Any] = {"id": video.alias, **pci_props(video, root_bus(d))}
        if video.type == "qxl":
            props["max_outputs"] = video.heads or 1
            if video.ram:
                props["ram_size"] = video.ram * 1024
            if video.vram:
                props["vram_size"] = video.vram * 1024
            props["vram64_size_mb"] = 0
            if video.vgamem:
                props["vgamem_mb"] = video.vgamem // 1024
        elif video.vram and video.type in ("vga", "default"):
            props["vgamem_mb"] = max(1, video.vram // 1024)
        args += _device(model, props)
    return args


def _inputs(d: DomainDef) -> list[str]:
    args: list[str] = []
    usb = _has_controller(d, "usb") or any(disk.target_bus == "usb" for disk in d.devices.disks)
    for dev in d.devices.inputs:
        if dev.bus == "ps2":
            continue   # built into the pc machine
        model = INPUT_DEVICES.get((dev.type, dev.bus))
        if model is None:
            raise _unsupported(f"input device '{dev.type}' on bus '{dev.bus}' is not supported")
        if dev.bus == "usb" and not usb:
            args += _device("piix3-usb-uhci", {"id": "usb"})
            usb = True
        args += _device(model, {"id": dev.alias,
                                **(usb_props(dev) if dev.bus == "usb" else pci_props(dev, root_bus(d)))})
    return args


def _balloon(d: DomainDef) -> list[str]:
    balloon = d.devices.memballoon
    if balloon is None or balloon.model == "none":
        return []
    model = BALLOON_MODELS.get(balloon.model)
    if model is None:
        raise _unsupported(f"memballoon model '{balloon.model}' is not supported")
    return _device(model, {"id": balloon.alias, **pci_props(balloon, root_bus(d))})


def _smp(d: DomainDef) -> str:
    """vCPUs online at boot, and (when fewer) the maximum hot-plug may reach."""
    maxcpus = f",maxcpus={d.vcpus}" if d.current_vcpus < d.vcpus else ""
    return f"{d.current_vcpus}{maxcpus},sockets={d.vcpus},cores=1,threads=1"


def build_argv(d: DomainDef, ctx: CommandContext, secrets: SecretPlan | None = None) -> list[str]:
    """The full argv for ``d`` (aliases and ports already assigned).

    Secrets go into ``secrets`` (a throw-away plan when None), which the
    caller hands to QEMU as descriptors at launch.
    """
    _check_aliases(d)
    check_unbuilt(d)
    secrets = SecretPlan() if secrets is None else secrets
    accel = _accel(d, ctx)
    argv = [d.devices.emulator or ctx.emulator,
            "-name", qemu_opts(("guest", d.name), ("debug-threads", "on")),
            "-S",
            *_machine(d, ctx, accel),
            *_cpu(d, accel),
            *_loader(d),
            "-m", f"size={d.memory_kib}k",
            "-overcommit", "mem-lock=off",
            "-smp", _smp(d),
            "-uuid", d.uuid,
            "-no-user-config", "-nodefaults",
            "-chardev", f"socket,id=charmonitor,fd={MONITOR_FD},server=on,wait=off",
            "-mon", "chardev=charmonitor,id=monitor,mode=control",
            "-rtc", rtc_option(d),
            *timer_options(d),
            *pm_globals(d),
            "-no-shutdown",
            "-boot", "strict=on"]
    # -kernel, -initrd and -append set machine properties verbatim (QEMU 7.2
    # parses nothing in them), as libvirt passes them.
    if d.os.kernel:
        argv += ["-kernel", d.os.kernel]
    if d.os.initrd:
        argv += ["-initrd", d.os.initrd]
    if d.os.cmdline:
        argv += ["-append", d.os.cmdline]
    if d.os.dtb:
        argv += ["-dtb", d.os.dtb]
    # libvirt's order (qemuBuildCommandLine), so that QEMU creates the devices in the same order
    argv += (_controllers(d) + _disks(d) + _interfaces(d, ctx) + _serials(d) + _inputs(d) + _graphics(d, secrets)
             + _video(d) + _balloon(d))
    if not d.devices.graphics:
        argv += ["-display", "none"]   # else QEMU falls back to a VNC server of its own
    if ctx.incoming:
        argv += ["-incoming", ctx.incoming]
    argv += ["-msg", "timestamp=on"]
    return argv
