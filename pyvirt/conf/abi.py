"""Guest ABI stability: what may not change when a running guest moves.

Migration (and restore, and ``--xml`` on migrate) may hand the destination a
different definition, but the guest must keep seeing the same machine: same
CPUs, memory, devices and device models.  Host-side details may differ: names,
disk source paths, disk cache mode, graphics listen address, ports and
passwords, title, description, lifecycle actions, emulator path, aliases.

Each check is a row in a table (what it is called, how to read it), so the
list of guest-visible properties is written once and read like a spec.
Device classes are compared by count first; per-device rows only run when
the counts match, so one missing disk gives one message, not ten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ErrorDomain, ErrorNumber, error
from .domain import DomainDef

__all__ = ["check_abi_stability", "ensure_abi_stable"]

Getter = Callable[[Any], object]

# (what, getter) for the domain as a whole.
DOMAIN_CHECKS: tuple[tuple[str, Getter], ...] = (
    ("domain virt type", lambda d: d.type),
    ("domain uuid", lambda d: d.uuid),
    ("vCPU count", lambda d: d.vcpus),
    # hot-plugged vCPUs (only when the maximum agrees: else that is the one difference)
    ("vCPUs online", lambda d: d.current_vcpus),
    ("memory size", lambda d: f"{d.memory_kib} KiB"),
    ("OS type", lambda d: d.os.type),
    ("architecture", lambda d: d.os.arch),
    ("machine type", lambda d: d.os.machine),
    ("feature set", lambda d: " ".join(d.features) or None),
    ("vmport state", lambda d: d.vmport),
    ("timers", lambda d: " ".join(f"{t.name}({t.present or ''},{t.tickpolicy or ''},{t.track or ''})"
                                  for t in d.timers) or None),
    ("power management", lambda d: " ".join(f"{k}={v}" for k, v in sorted(d.pm.items())) or None),
    ("CPU mode", lambda d: d.cpu.mode if d.cpu else None),
    ("CPU model", lambda d: d.cpu.model if d.cpu else None),
    ("CPU vendor", lambda d: d.cpu.vendor if d.cpu else None),
    # libvirt's numbers: 0 for a CPU without a topology
    *((f"CPU {part}", lambda d, i=i: d.cpu.topology[i] if d.cpu and d.cpu.topology else 0)
      for i, part in enumerate(("sockets", "dies", "cores", "threads"))),
    ("memballoon model", lambda d: d.devices.memballoon.model if d.devices.memballoon else None),
)

# device class -> (label, list getter, how to name one device, per-device checks)
DeviceTable = tuple[str, Callable[[DomainDef], Sequence[Any]], Callable[[int, Any], str],
                    tuple[tuple[str, Getter], ...]]


def _address(dev: Any) -> object:
    return getattr(dev, "address", None)


# Rows compared only when both definitions give a value: a definition without
# addresses leaves them to the destination, one with them fixes the bus layout.
WHEN_BOTH_GIVEN = ("address",)


def _numbered(kind: str) -> Callable[[int, Any], str]:
    return lambda index, _dev: f"{kind} #{index}"


DEVICE_CHECKS: tuple[DeviceTable, ...] = (
    ("disk", lambda d: d.devices.disks, lambda _i, disk: f"disk {disk.target_dev}", (
        ("", lambda x: x.target_dev),
        ("bus", lambda x: x.target_bus),
        ("device type", lambda x: x.device),
        ("readonly", lambda x: "yes" if x.readonly else "no"),
        ("address", _address),
    )),
    ("controller", lambda d: d.devices.controllers, lambda _i, c: f"controller {c.type}{c.index}", (
        ("model", lambda x: x.model),
        ("address", _address),
    )),
    ("interface", lambda d: d.devices.interfaces, _numbered("interface"), (
        # Stricter than libvirt, which lets the host-side type change (network <-> bridge).
        ("type", lambda x: x.type),
        # libvirt's own sentences (virDomainNetDefCheckABIStability): "=" names no device
        ("=network card mac", lambda x: x.mac),
        ("=network card model", lambda x: x.model),
        ("address", _address),
    )),
    ("serial", lambda d: d.devices.serials, _numbered("serial"), (
        ("target port", lambda x: x.target_port),
        ("target type", lambda x: x.target_type),
    )),
    ("console", lambda d: d.devices.consoles, _numbered("console"), (
        ("target type", lambda x: x.target_type),
        ("target port", lambda x: x.target_port),
    )),
    ("channel", lambda d: d.devices.channels, _numbered("channel"), (
        ("target type", lambda x: x.target_type),
        ("target name", lambda x: x.target_name),
        ("address", _address),
    )),
    ("graphics", lambda d: d.devices.graphics, _numbered("graphics"), (
        ("type", lambda x: x.type),
    )),
    ("video", lambda d: d.devices.videos, _numbered("video"), (
        ("model", lambda x: x.type),
        ("ram", lambda x: x.ram),
        ("vram", lambda x: x.vram),
        ("vgamem", lambda x: x.vgamem),
        ("heads", lambda x: x.heads),
        ("address", _address),
    )),
    ("input", lambda d: d.devices.inputs, _numbered("input"), (
        ("type", lambda x: x.type),
        ("bus", lambda x: x.bus),
    )),
)


def _show(value: object) -> str:
    return "none" if value is None else str(value)


def _differs(what: str, old: object, new: object) -> str:
    return f"Target {what} {_show(new)} does not match source {_show(old)}"


def check_abi_stability(old: DomainDef, new: DomainDef) -> list[str]:
    """What in ``new`` (destination) would change the guest ``old`` (source) sees."""
    problems = [_differs(what, get(old), get(new)) for what, get in DOMAIN_CHECKS
                if get(old) != get(new) and not (what == "vCPUs online" and old.vcpus != new.vcpus)]
    for kind, devices, name, checks in DEVICE_CHECKS:
        src, dst = devices(old), devices(new)
        if len(src) != len(dst):
            problems.append(_differs(f"{kind} count", len(src), len(dst)))
            continue
        for index, (a, b) in enumerate(zip(src, dst)):
            label = name(index, a)
            for what, get in checks:
                if what in WHEN_BOTH_GIVEN and (get(a) is None or get(b) is None):
                    continue
                if get(a) != get(b):
                    # an empty 'what' names the device itself ("Target disk vdb ... source vda");
                    # one starting with '=' is libvirt's wording, used as it is
                    shown = what[1:] if what.startswith("=") else f"{label} {what}" if what else kind
                    problems.append(_differs(shown, get(a), get(b)))
    return problems


def ensure_abi_stable(old: DomainDef, new: DomainDef) -> None:
    """Raise CONFIG_UNSUPPORTED listing every difference, if there is any."""
    problems = check_abi_stability(old, new)
    if problems:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN,
                    "guest ABI would change: " + "; ".join(problems))
