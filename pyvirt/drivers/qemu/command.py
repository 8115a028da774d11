"""DomainDef → QEMU command line.  Pure: no I/O, golden-tested.

The driver first gives every device its alias (:func:`assign_aliases`, on
the live copy of the definition, so the status XML shows them) and picks
graphics ports; :func:`build_argv` then only translates.  Tables map XML
values to QEMU device models; anything without a mapping is refused with
CONFIG_UNSUPPORTED before QEMU is ever started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ...conf import DomainDef
from ...errors import ErrorDomain, ErrorNumber, error

MONITOR_FD = "@MONITOR_FD@"
DOMAIN_TYPES = ("kvm", "qemu")

NIC_MODELS = {None: "virtio-net-pci", "virtio": "virtio-net-pci", "e1000": "e1000",
              "e1000e": "e1000e", "rtl8139": "rtl8139"}
VIDEO_MODELS = {"vga": "VGA", "cirrus": "cirrus-vga", "qxl": "qxl-vga", "virtio": "virtio-vga",
                "bochs": "bochs-display", "default": "VGA"}
BALLOON_MODELS = {"virtio": "virtio-balloon-pci"}
DISK_DEVICE_BY_BUS = {"virtio": "virtio-blk-pci", "ide": "ide-hd", "sata": "ide-hd", "scsi": "scsi-hd"}
CDROM_DEVICE_BY_BUS = {"ide": "ide-cd", "sata": "ide-cd", "scsi": "scsi-cd"}
INPUT_DEVICES = {("tablet", "usb"): "usb-tablet", ("mouse", "usb"): "usb-mouse",
                 ("keyboard", "usb"): "usb-kbd", ("tablet", "virtio"): "virtio-tablet-pci",
                 ("mouse", "virtio"): "virtio-mouse-pci", ("keyboard", "virtio"): "virtio-keyboard-pci"}
# libvirt's drive aliases: controller-bus-unit, from the index the target name gives.
DISK_ALIAS_BY_BUS = {"ide": lambda i: f"ide0-{i // 2}-{i % 2}", "sata": lambda i: f"sata0-0-{i}",
                     "scsi": lambda i: f"scsi0-0-0-{i}"}


@dataclass(frozen=True)
class CommandContext:
    """What the command line depends on besides the definition."""

    emulator: str
    kvm_available: bool
    incoming: str | None = None       # "defer" for an incoming migration or a restore


def _unsupported(detail: str) -> Exception:
    return error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU, detail)


def assign_aliases(d: DomainDef) -> None:
    """Give each device the alias libvirt would (``virtio-disk0``, ``net0``, ...)."""
    virtio = 0
    for disk in d.devices.disks:
        if disk.alias:
            continue
        index = _target_index(disk.target_dev)
        if disk.target_bus == "virtio":
            disk.alias, virtio = f"virtio-disk{virtio}", virtio + 1
        else:
            disk.alias = DISK_ALIAS_BY_BUS.get(disk.target_bus, lambda i: f"{disk.target_bus}-disk{i}")(index)
    for i, nic in enumerate(d.devices.interfaces):
        nic.alias = nic.alias or f"net{i}"
    for i, serial in enumerate(d.devices.serials):
        serial.alias = serial.alias or f"serial{i}"
    for i, console in enumerate(d.devices.consoles):
        console.alias = console.alias or f"console{i}"
    for i, video in enumerate(d.devices.videos):
        video.alias = video.alias or f"video{i}"
    for i, dev in enumerate(d.devices.inputs):
        dev.alias = dev.alias or f"input{i}"
    if d.devices.memballoon is not None:
        d.devices.memballoon.alias = d.devices.memballoon.alias or "balloon0"


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


def _cpu(d: DomainDef, accel: str) -> list[str]:
    cpu = d.cpu
    if cpu is None or cpu.mode is None:
        return []
    if cpu.mode in ("host-passthrough", "host-model"):
        return ["-cpu", "host" if accel == "kvm" else "max"]
    if cpu.mode == "custom" and cpu.model:
        return ["-cpu", cpu.model]
    return []


def _machine(d: DomainDef, accel: str) -> list[str]:
    opts = [d.os.machine or "pc", "usb=off", "dump-guest-core=off"]
    if "acpi" not in d.features:
        opts.append("acpi=off")
    return ["-machine", ",".join(opts), "-accel", accel]


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


def _disks(d: DomainDef) -> list[str]:
    args: list[str] = []
    controllers: set[str] = set()
    for n, disk in enumerate(d.devices.disks, start=1):
        unit = _target_index(disk.target_dev)
        table = CDROM_DEVICE_BY_BUS if disk.device == "cdrom" else DISK_DEVICE_BY_BUS
        model = table.get(disk.target_bus)
        if model is None or disk.device not in ("disk", "cdrom"):
            raise _unsupported(f"disk '{disk.target_dev}': {disk.device} on bus '{disk.target_bus}' "
                               f"is not supported")
        device = [model]
        if disk.source is not None:
            storage, fmt = f"libvirt-{n}-storage", f"libvirt-{n}-format"
            args += ["-blockdev", json.dumps({
                "driver": "host_device" if disk.type == "block" else "file",
                "filename": disk.source, "node-name": storage,
                "auto-read-only": True, "discard": "unmap"}, separators=(",", ":"))]
            args += ["-blockdev", json.dumps({
                "node-name": fmt, "read-only": disk.readonly or disk.device == "cdrom",
                "driver": disk.driver_type or "raw", "file": storage}, separators=(",", ":"))]
            device.append(f"drive={fmt}")
        if disk.target_bus == "sata":
            if "sata" not in controllers:
                args += ["-device", "ich9-ahci,id=sata0"]
                controllers.add("sata")
            device.append(f"bus=sata0.{unit}")
        elif disk.target_bus == "ide":
            device.append(f"bus=ide.{unit // 2},unit={unit % 2}")
        elif disk.target_bus == "scsi":
            if "scsi" not in controllers:
                args += ["-device", "virtio-scsi-pci,id=scsi0"]
                controllers.add("scsi")
            device.append(f"bus=scsi0.0,scsi-id={unit}")
        device.append(f"id={disk.alias}")
        if disk.shareable and disk.target_bus == "virtio":
            device.append("share-rw=on")
        args += ["-device", ",".join(device)]
    return args


def _interfaces(d: DomainDef) -> list[str]:
    args: list[str] = []
    for i, nic in enumerate(d.devices.interfaces):
        netdev = f"hostnet{i}"
        if nic.type == "user":
            args += ["-netdev", f"user,id={netdev}"]
        elif nic.type == "bridge":
            args += ["-netdev", f"bridge,id={netdev},br={nic.source}"]
        else:
            raise _unsupported(f"interface type '{nic.type}' needs a virtual network, which pyvirt "
                               f"does not manage; use type 'user' or 'bridge'")
        model = NIC_MODELS.get(nic.model)
        if model is None:
            raise _unsupported(f"interface model '{nic.model}' is not supported")
        args += ["-device", f"{model},netdev={netdev},id={nic.alias},mac={nic.mac}"]
    return args


def _chardev(kind: str, alias: str, dev) -> str:
    chardev_id = f"char{alias}"
    if dev.type == "file":
        return f"file,id={chardev_id},path={dev.path},append=on"
    if dev.type == "pty":
        return f"pty,id={chardev_id}"
    if dev.type == "unix":
        server = "server=on,wait=off" if dev.mode != "connect" else "server=off"
        return f"socket,id={chardev_id},path={dev.path},{server}"
    if dev.type == "null":
        return f"null,id={chardev_id}"
    raise _unsupported(f"{kind} type '{dev.type}' is not supported")


def _serials(d: DomainDef) -> list[str]:
    args: list[str] = []
    for serial in d.devices.serials:
        args += ["-chardev", _chardev("serial", serial.alias, serial),
                 "-device", f"isa-serial,chardev=char{serial.alias},id={serial.alias},index={serial.target_port}"]
    # A <console type='serial'> is the first serial port shown again, as in libvirt.
    for console in d.devices.consoles:
        if console.target_type != "serial":
            raise _unsupported(f"console target type '{console.target_type}' is not supported")
        if not d.devices.serials:
            args += ["-chardev", _chardev("console", console.alias, console),
                     "-device", f"isa-serial,chardev=char{console.alias},id={console.alias}"]
    return args


def _graphics(d: DomainDef) -> list[str]:
    args: list[str] = []
    for g in d.devices.graphics:
        listen = next((l.address for l in g.listens if l.address), None) or "127.0.0.1"
        if g.port <= 0 and (g.type == "vnc" or g.tls_port <= 0):
            raise _unsupported(f"{g.type} graphics has no port: use autoport='yes' or give one")
        if g.type == "vnc":
            if not 5900 <= g.port <= 65535:
                raise _unsupported(f"vnc port {g.port} is outside 5900-65535")
            opt = f"{'[' + listen + ']' if ':' in listen else listen}:{g.port - 5900}"
            if g.passwd:
                opt += ",password=on"
            args += ["-vnc", opt]
        elif g.type == "spice":
            opts = [f"port={g.port}"] if g.port > 0 else []
            if g.tls_port > 0:
                opts.append(f"tls-port={g.tls_port}")
            opts.append(f"addr={listen}")
            opts.append("disable-ticketing=on" if not g.passwd else "password-secret=spicepw0")
            opts.append("seamless-migration=on")
            if g.passwd:
                args += ["-object", f"secret,id=spicepw0,data={g.passwd}"]
            args += ["-spice", ",".join(opts)]
        else:
            raise _unsupported(f"graphics type '{g.type}' is not supported")
    return args


def _video(d: DomainDef) -> list[str]:
    args: list[str] = []
    for video in d.devices.videos:
        if video.type == "none":
            continue
        model = VIDEO_MODELS.get(video.type)
        if model is None:
            raise _unsupported(f"video model '{video.type}' is not supported")
        opts = [model, f"id={video.alias}"]
        if video.type == "qxl":
            if video.ram:
                opts.append(f"ram_size={video.ram * 1024}")
            if video.vram:
                opts.append(f"vram_size={video.vram * 1024}")
        elif video.vram and video.type in ("vga", "default"):
            opts.append(f"vgamem_mb={max(1, video.vram // 1024)}")
        args += ["-device", ",".join(opts)]
    return args


def _inputs(d: DomainDef) -> list[str]:
    args: list[str] = []
    usb = False
    for dev in d.devices.inputs:
        if dev.bus == "ps2":
            continue   # built into the pc machine
        model = INPUT_DEVICES.get((dev.type, dev.bus))
        if model is None:
            raise _unsupported(f"input device '{dev.type}' on bus '{dev.bus}' is not supported")
        if dev.bus == "usb" and not usb:
            args += ["-device", "piix3-usb-uhci,id=usb"]
            usb = True
        extra = ",bus=usb.0" if dev.bus == "usb" else ""
        args += ["-device", f"{model},id={dev.alias}{extra}"]
    return args


def _balloon(d: DomainDef) -> list[str]:
    balloon = d.devices.memballoon
    if balloon is None or balloon.model == "none":
        return []
    model = BALLOON_MODELS.get(balloon.model)
    if model is None:
        raise _unsupported(f"memballoon model '{balloon.model}' is not supported")
    return ["-device", f"{model},id={balloon.alias}"]


def build_argv(d: DomainDef, ctx: CommandContext) -> list[str]:
    """The full argv for ``d`` (aliases and ports already assigned)."""
    accel = _accel(d, ctx)
    argv = [d.devices.emulator or ctx.emulator,
            "-name", f"guest={d.name},debug-threads=on",
            "-S",
            *_machine(d, accel),
            *_cpu(d, accel),
            "-m", f"size={d.memory_kib}k",
            "-overcommit", "mem-lock=off",
            "-smp", f"{d.vcpus},sockets={d.vcpus},cores=1,threads=1",
            "-uuid", d.uuid,
            "-no-user-config", "-nodefaults",
            "-chardev", f"socket,id=charmonitor,fd={MONITOR_FD},server=on,wait=off",
            "-mon", "chardev=charmonitor,id=monitor,mode=control",
            "-rtc", f"base={'localtime' if d.clock_offset == 'localtime' else 'utc'}",
            "-no-shutdown",
            "-boot", "strict=on"]
    if d.os.kernel:
        argv += ["-kernel", d.os.kernel]
    if d.os.initrd:
        argv += ["-initrd", d.os.initrd]
    if d.os.cmdline:
        argv += ["-append", d.os.cmdline]
    argv += _disks(d) + _interfaces(d) + _serials(d) + _graphics(d) + _video(d) + _inputs(d) + _balloon(d)
    if not d.devices.graphics:
        argv += ["-display", "none"]   # else QEMU falls back to a VNC server of its own
    if ctx.incoming:
        argv += ["-incoming", ctx.incoming]
    argv += ["-msg", "timestamp=on"]
    return argv
