"""``<domainCapabilities>`` for one emulator, machine type and virt type, from a probe.

Every enum lists what this QEMU build has (its QOM types, commands and
options), in the order libvirt 9.0 prints them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from .. import hostinfo
from . import cpumodel
from .probe import Machine, Probe


@dataclass
class Request:
    virttype: str                  # 'kvm' or 'qemu'
    machine: Machine
    arch: str


def _enum(name: str, values: list[str], indent: str) -> list[str]:
    if not values:
        return [f"{indent}<enum name='{name}'/>"]
    return ([f"{indent}<enum name='{name}'>"] + [f"{indent}  <value>{v}</value>" for v in values]
            + [f"{indent}</enum>"])


def _present(probe: Probe, pairs: list[tuple[str, str]]) -> list[str]:
    """The libvirt names whose QOM type this QEMU has."""
    types = set(probe.types)
    return [name for name, qom in pairs if qom in types]


def _device(name: str, enums: list[tuple[str, list[str]]]) -> list[str]:
    lines = [f"    <{name} supported='yes'>"]
    for ename, values in enums:
        lines += _enum(ename, values, "      ")
    return lines + [f"    </{name}>"]


def _cpu(probe: Probe, req: Request) -> list[str]:
    lines = ["  <cpu>"]
    kvm = req.virttype == "kvm"
    if kvm:
        lines += ["    <mode name='host-passthrough' supported='yes'>"]
        lines += _enum("hostPassthroughMigratable", ["on", "off"], "      ") + ["    </mode>"]
    else:
        lines.append("    <mode name='host-passthrough' supported='no'/>")
    lines += ["    <mode name='maximum' supported='yes'>"]
    lines += _enum("maximumMigratable", ["on", "off"], "      ") + ["    </mode>"]
    ap = probe.accels.get("kvm" if kvm else "tcg")
    definitions = {m.name: m for m in probe.accels["tcg"].models} if "tcg" in probe.accels else {}
    hm = cpumodel.host_model(ap, definitions) if ap is not None else None
    if hm is None:
        lines.append("    <mode name='host-model' supported='no'/>")
    else:
        lines += ["    <mode name='host-model' supported='yes'>",
                  f"      <model fallback='forbid'>{hm.name}</model>",
                  f"      <vendor>{hostinfo.vendor_name(hm.vendor)}</vendor>"]
        lines += [f"      <feature policy='require' name='{cpumodel.libvirt_name(f)}'/>" for f in hm.require]
        lines += [f"      <feature policy='disable' name='{cpumodel.libvirt_name(f)}'/>" for f in hm.disable]
        lines.append("    </mode>")
    if ap is None or not ap.models:
        lines.append("    <mode name='custom' supported='no'/>")
    else:
        lines.append("    <mode name='custom' supported='yes'>")
        for m in ap.models:
            vendor = hostinfo.vendor_name(cpumodel.model_vendor(m, definitions))
            lines.append(f"      <model usable='{'yes' if m.usable else 'no'}' vendor='{vendor}'>{m.name}</model>")
        lines.append("    </mode>")
    return lines + ["  </cpu>"]


def _devices(probe: Probe, req: Request) -> list[str]:
    types = set(probe.types)
    i440fx = req.machine.name.startswith("pc-i440fx") or req.machine.name == "isapc"
    # IDE only where the machine has an IDE controller (i440fx's PIIX); q35 has SATA instead
    disk_bus = [("ide", "ide-hd" if i440fx else "-"), ("fdc", "isa-fdc"), ("scsi", "scsi-hd"),
                ("virtio", "virtio-blk-pci"), ("usb", "usb-storage"), ("sata", "ich9-ahci")]
    virtio_models = lambda base: [n for n, t in (("virtio", base), ("virtio-transitional", base + "-transitional"),  # noqa: E731
                                                 ("virtio-non-transitional", base + "-non-transitional"))
                                  if t in types]
    displays = set(probe.displays)
    graphics = [n for n, ok in (("sdl", "sdl" in displays), ("vnc", "vnc" in probe.options),
                                ("spice", "spice" in probe.options), ("egl-headless", "egl-headless" in displays),
                                ("dbus", "dbus" in displays)) if ok]
    video = _present(probe, [("vga", "VGA"), ("cirrus", "cirrus-vga"), ("vmvga", "vmware-svga"),
                             ("qxl", "qxl-vga"), ("virtio", "virtio-vga")]) + ["none"] + \
        _present(probe, [("bochs", "bochs-display"), ("ramfb", "ramfb")])
    pci_backend = ["vfio"] if os.path.exists("/dev/vfio/vfio") else []
    tpm_backends = [b for b in probe.tpm_types if b != "emulator" or shutil.which("swtpm")]
    lines = ["  <devices>"]
    lines += _device("disk", [("diskDevice", ["disk", "cdrom", "floppy", "lun"]),
                              ("bus", _present(probe, disk_bus)), ("model", virtio_models("virtio-blk-pci"))])
    lines += _device("graphics", [("type", graphics)])
    lines += _device("video", [("modelType", video)])
    lines += _device("hostdev", [("mode", ["subsystem"]),
                                 ("startupPolicy", ["default", "mandatory", "requisite", "optional"]),
                                 ("subsysType", ["usb", "pci", "scsi"]), ("capsType", []),
                                 ("pciBackend", pci_backend)])
    lines += _device("rng", [("model", virtio_models("virtio-rng-pci")),
                             ("backendModel", _present(probe, [("random", "rng-random"), ("egd", "rng-egd"),
                                                               ("builtin", "rng-builtin")]))])
    lines += _device("filesystem", [("driverType", _present(probe, [("path", "virtio-9p-pci"),
                                                                    ("handle", "virtio-9p-pci"),
                                                                    ("virtiofs", "vhost-user-fs-pci")]))])
    lines += _device("tpm", [("model", _present(probe, [("tpm-tis", "tpm-tis"), ("tpm-crb", "tpm-crb")])),
                             ("backendModel", tpm_backends)])
    if "usb-redir" in types:
        lines += _device("redirdev", [("bus", ["usb"])])
    lines += _device("channel", [("type", ["pty", "unix"] + (["spicevmc"] if "spice" in probe.options else []))])
    return lines + ["  </devices>"]


def _features(probe: Probe, req: Request) -> list[str]:
    types, commands = set(probe.types), set(probe.commands)
    yes_no = lambda ok: "yes" if ok else "no"  # noqa: E731
    lines = ["  <features>", "    <gic supported='no'/>",
             f"    <vmcoreinfo supported='{yes_no('vmcoreinfo' in types)}'/>",
             f"    <genid supported='{yes_no('vmgenid' in types)}'/>",
             "    <backingStoreInput supported='yes'/>",
             f"    <backup supported='{yes_no('blockdev-backup' in commands)}'/>",
             "    <sev supported='no'/>", "    <sgx supported='no'/>"]
    lines += ["    <hyperv supported='yes'>"] + _enum("features", ["spinlocks", "vendor_id"], "      ") \
        + ["    </hyperv>"]
    return lines + ["  </features>"]


def domain_capabilities_xml(probe: Probe, req: Request, kvm_max_vcpus: int) -> str:
    types = set(probe.types)
    max_vcpus = req.machine.cpu_max
    if req.virttype == "kvm":
        max_vcpus = min(max_vcpus, kvm_max_vcpus)
    lines = ["<domainCapabilities>", f"  <path>{probe.emulator}</path>", f"  <domain>{req.virttype}</domain>",
             f"  <machine>{req.machine.name}</machine>", f"  <arch>{req.arch}</arch>",
             f"  <vcpu max='{max_vcpus}'/>",
             f"  <iothreads supported='{'yes' if 'iothread' in types else 'no'}'/>",
             "  <os supported='yes'>", "    <enum name='firmware'/>", "    <loader supported='yes'>"]
    lines += _enum("type", ["rom", "pflash"], "      ") + _enum("readonly", ["yes", "no"], "      ") \
        + _enum("secure", ["no"], "      ")
    lines += ["    </loader>", "  </os>"]
    lines += _cpu(probe, req)
    backing = _present(probe, [("file", "memory-backend-file"), ("anonymous", "memory-backend-ram"),
                               ("memfd", "memory-backend-memfd")])
    lines += ["  <memoryBacking supported='yes'>"] + _enum("sourceType", backing, "    ") + ["  </memoryBacking>"]
    lines += _devices(probe, req)
    lines += _features(probe, req)
    lines.append("</domainCapabilities>")
    return "\n".join(lines) + "\n"
