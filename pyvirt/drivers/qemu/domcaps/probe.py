"""Ask one QEMU binary what it can do, as libvirt's capabilities probe does.

A throwaway QEMU (``-machine none -nodefaults -S``, its monitor on a socket
we listen on) answers the ``query-*`` commands once per accelerator; the
answers are kept as plain data (:class:`Probe`), so they can be cached on
disk and turned into capabilities XML without QEMU.  Nothing here runs on
every call: :mod:`.cache` decides when a probe is needed.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ....errors import ErrorDomain, ErrorNumber, error, libvirtError
from ....security import ProcessIds
from .. import process as procmod
from ..command import MONITOR_FD

log = logging.getLogger(__name__)

# Versioned CPU model names (EPYC-v1): libvirt lists the plain names only.
_VERSIONED = re.compile(r"-v\d+$")
# Properties of a full expansion that describe the model, not CPUID features.
_VENDOR_PROP = "vendor"


@dataclass
class Machine:
    name: str
    alias: str | None
    cpu_max: int
    is_default: bool
    deprecated: bool


@dataclass
class CPUModel:
    name: str
    usable: bool
    vendor: str                     # QEMU's vendor string (AuthenticAMD), "" when unknown
    features: list[str]             # the CPUID features the model turns on (static expansion)
    blockers: list[str]             # QEMU's unavailable-features


@dataclass
class AccelProbe:
    """What QEMU answered under one accelerator (``kvm`` or ``tcg``)."""
    accel: str
    host_vendor: str = ""
    host_features: list[str] = field(default_factory=list)   # of 'host' (kvm) or 'max' (tcg)
    known_features: list[str] = field(default_factory=list)  # every CPUID feature QEMU names
    models: list[CPUModel] = field(default_factory=list)


@dataclass
class Probe:
    emulator: str
    version: int                    # major * 1e6 + minor * 1e3 + micro
    package: str
    arch: str
    machines: list[Machine] = field(default_factory=list)
    types: list[str] = field(default_factory=list)        # qom-list-types, concrete
    commands: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)      # query-command-line-options
    tpm_types: list[str] = field(default_factory=list)
    accels: dict[str, AccelProbe] = field(default_factory=dict)
    displays: list[str] = field(default_factory=list)     # the QAPI DisplayType values of this build

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Probe":
        accels = {k: AccelProbe(v["accel"], v["host_vendor"], list(v["host_features"]),
                                list(v["known_features"]), [CPUModel(**m) for m in v["models"]])
                  for k, v in data.get("accels", {}).items()}
        return cls(data["emulator"], data["version"], data["package"], data["arch"],
                   [Machine(**m) for m in data["machines"]], list(data["types"]),
                   list(data["commands"]), list(data["options"]), list(data["tpm_types"]), accels,
                   list(data.get("displays", [])))

    def machine(self, name: str | None) -> Machine | None:
        """The machine type ``name`` names (an alias such as 'pc' gives its canonical type); None: the default."""
        for m in self.machines:
            if (name is None and m.is_default) or (name is not None and (m.name == name)):
                return m
        if name is not None:
            for m in self.machines:
                if m.alias == name:
                    return m
        return None


class _Quiet:
    """Monitor callbacks for a probe: its events matter to nobody."""

    def on_event(self, name: str, data: Any, timestamp: float) -> None:
        pass

    def on_eof(self, reason: str) -> None:
        pass


def _arch_of(emulator: str) -> str:
    name = Path(emulator).name
    arch = name[len("qemu-system-"):] if name.startswith("qemu-system-") else "x86_64"
    return "i686" if arch == "i386" else arch


async def probe(emulator: str, accels: list[str], workdir: Path, ids: ProcessIds | None,
                timeout: float = 30.0) -> Probe:
    """Run ``emulator`` once per accelerator and collect its answers."""
    result: Probe | None = None
    for accel in accels:
        with tempfile.TemporaryDirectory(prefix="probe-", dir=workdir) as tmp:
            argv = [emulator, "-S", "-no-user-config", "-nodefaults", "-nographic",
                    "-machine", f"none,accel={accel}",
                    "-chardev", f"socket,id=charmonitor,fd={MONITOR_FD},server=on,wait=off",
                    "-mon", "chardev=charmonitor,id=monitor,mode=control"]
            try:
                qp = await procmod.launch(argv, Path(tmp) / "qmp.sock", Path(tmp) / "qemu.log",
                                          f"probe-{accel}", _Quiet(), timeout=timeout, ids=ids)
            except libvirtError as exc:
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                            f"Failed to probe capabilities for {emulator}: {exc.get_error_message()}") from exc
            try:
                mon = qp.monitor
                if result is None:
                    result = await _common(mon, emulator)
                result.accels[accel] = await _accel(mon, accel)
            finally:
                await qp.stop(1.0)
                await qp.monitor.close()
    if result is None:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU, f"no accelerator to probe '{emulator}' with")
    return result


async def _common(mon: Any, emulator: str) -> Probe:
    ver = await mon.execute("query-version")
    q = ver["qemu"]
    version = q["major"] * 1000000 + q["minor"] * 1000 + q["micro"]
    p = Probe(emulator, version, ver.get("package", "").strip(), _arch_of(emulator))
    for m in await mon.execute("query-machines"):
        if m["name"] == "none":
            continue
        p.machines.append(Machine(m["name"], m.get("alias"), int(m.get("cpu-max", 1)),
                                  bool(m.get("is-default", False)), bool(m.get("deprecated", False))))
    p.types = sorted(t["name"] for t in await mon.execute("qom-list-types", {"abstract": False}))
    p.commands = sorted(c["name"] for c in await mon.execute("query-commands"))
    p.options = sorted(o["option"] for o in await mon.execute("query-command-line-options"))
    if "query-tpm-types" in p.commands:
        p.tpm_types = list(await mon.execute("query-tpm-types"))
    p.displays = _display_types(await mon.execute("query-qmp-schema"))
    return p


def _display_types(schema: list[dict[str, Any]]) -> list[str]:
    """DisplayType's values: the schema names its types by number, so find the enum by its
    members (only the UIs this build has are listed)."""
    for entry in schema:
        values = entry.get("values") or [m.get("name") for m in entry.get("members", []) if isinstance(m, dict)]
        if entry.get("meta-type") == "enum" and "egl-headless" in values and "none" in values:
            return [v for v in values if isinstance(v, str)]
    return []


async def _expand(mon: Any, kind: str, name: str) -> dict[str, Any]:
    try:
        reply = await mon.execute("query-cpu-model-expansion", {"type": kind, "model": {"name": name}})
    except libvirtError:
        return {}
    return reply.get("model", {}).get("props", {})


def _enabled(props: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in props.items() if v is True)


async def _accel(mon: Any, accel: str) -> AccelProbe:
    ap = AccelProbe(accel)
    host = "host" if accel == "kvm" else "max"
    full = await _expand(mon, "full", host)
    ap.host_vendor = str(full.get(_VENDOR_PROP, ""))
    static = await _expand(mon, "static", host)
    ap.host_features = _enabled(static)
    ap.known_features = sorted(k for k, v in static.items() if isinstance(v, bool))
    for d in await mon.execute("query-cpu-definitions"):
        name = d["name"]
        if _VERSIONED.search(name) or name in ("host", "max", "base"):
            continue
        blockers = list(d.get("unavailable-features", []))
        props = await _expand(mon, "full", name)
        ap.models.append(CPUModel(name, not blockers, str(props.get(_VENDOR_PROP, "")),
                                  _enabled(await _expand(mon, "static", name)), blockers))
    return ap
