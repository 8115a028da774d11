"""Capabilities of the host and of its QEMU binaries: ``getCapabilities``,
``getDomainCapabilities`` and ``getCPUModelNames``.

:mod:`.probe` asks a throwaway QEMU, :mod:`.cache` keeps its answers per
binary (on disk, invalidated when the binary changes), :mod:`.hostxml` and
:mod:`.domxml` write libvirt's XML from them.  One :class:`HostCaps` per
driver (:func:`for_driver`).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import weakref
from pathlib import Path
from typing import Any

from ....errors import ErrorDomain, ErrorNumber, error, libvirtError
from .. import hostinfo
from . import cpumap
from .cache import CapsCache
from .domxml import Request, domain_capabilities_xml
from .hostxml import HostFacts, capabilities_xml
from .probe import Probe, probe

log = logging.getLogger(__name__)

# libvirt's architecture names (virArch).
ARCHES = frozenset("""i686 x86_64 aarch64 armv6l armv7l armv7b alpha cris loongarch64 lm32 m68k microblaze
microblazeel mips mipsel mips64 mips64el or32 parisc parisc64 ppc ppcle ppc64 ppc64le ppcemb riscv32
riscv64 s390 s390x sh4 sh4eb sparc sparc64 unicore32 xtensa xtensaeb""".split())
# virArch in libvirt's enum order (the order of <guest> in the capabilities).
ARCH_ORDER = ("alpha armv6l armv7l armv7b aarch64 cris i686 itanium lm32 loongarch64 m68k microblaze "
              "microblazeel mips mipsel mips64 mips64el or32 parisc parisc64 ppc ppcle ppc64 ppc64le ppcemb "
              "riscv32 riscv64 s390 s390x sh4 sh4eb sparc sparc64 unicore32 x86_64 xtensa xtensaeb").split()
# virQEMUCapsArchToString: the QEMU target name of an arch, where it differs.
QEMU_TARGET = {"i686": "i386", "ppc64le": "ppc64", "armv6l": "arm", "armv7l": "arm", "armv7b": "arm"}
# libvirt's virt types (virDomainVirtType) besides the two QEMU serves.
OTHER_VIRT_TYPES = frozenset("""xen lxc uml openvz test vmware hyperv vbox phyp parallels bhyve vz
kqemu none""".split())


class HostCaps:
    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.cache = CapsCache(Path(driver.cfg.root) / "cache" / "qemu" / "capabilities", self._run_probe)

    async def _run_probe(self, emulator: str) -> Probe:
        workdir = self.cache.directory.parent
        workdir.mkdir(parents=True, exist_ok=True)
        accels = ["kvm", "tcg"] if self.driver.kvm else ["tcg"]
        return await probe(emulator, accels, workdir, self.driver.security.process_ids(),
                           timeout=self.driver.cfg.monitor_timeout)

    async def probe(self, emulator: str | None = None) -> Probe:
        binary = emulator or self.driver.cfg.emulator
        check_binary(binary)
        return await self.cache.get(binary)

    def emulator_for(self, arch: str) -> str | None:
        """virQEMUCapsFindBinaryForArch: ``qemu-system-TARGET`` for ``arch``, beside the
        configured emulator or on PATH (the configured one serves its own arch)."""
        name = f"qemu-system-{QEMU_TARGET.get(arch, arch)}"
        beside = Path(self.driver.cfg.emulator).parent / name
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
        return shutil.which(name)

    async def _other_guests(self, main: Probe | None) -> list[Probe]:
        """Probes of the other architectures' emulators found, those that answer."""
        found = []
        for arch in ARCH_ORDER:
            binary = self.emulator_for(arch)
            if binary is None or (main is not None and arch == main.arch) or \
                    os.path.realpath(binary) == os.path.realpath(self.driver.cfg.emulator):
                continue
            try:
                found.append(await self.probe(binary))
            except libvirtError as exc:
                log.warning("no guest capabilities for %s: %s", binary, exc)
        return found

    async def capabilities(self) -> str:
        """The host part always; a guest for every architecture whose emulator answered (as
        libvirt, which lists no guest for a binary it cannot probe), in virArch order."""
        try:
            p: Probe | None = await self.probe()
        except libvirtError as exc:
            log.warning("no guest capabilities for %s: %s", self.driver.cfg.emulator, exc)
            p = None
        guests = [g for g in [p, *await self._other_guests(p)] if g is not None]
        guests.sort(key=lambda g: ARCH_ORDER.index(g.arch) if g.arch in ARCH_ORDER else len(ARCH_ORDER))
        facts = HostFacts(self.driver.cfg.host_uuid, self.driver.kvm, self._dac_ids())
        return capabilities_xml(p, facts, guests)

    def _dac_ids(self):
        driver = self.driver.cfg.security_driver
        names = [driver] if isinstance(driver, str) else list(driver)
        return self.driver.security.process_ids() if "dac" in names or not names else None

    async def domain_capabilities(self, emulatorbin: str | None, arch: str | None, machine: str | None,
                                  virttype: str | None, flags: int) -> str:
        hostinfo.check_flags(flags, 0, "qemuConnectGetDomainCapabilities")
        if virttype is None:
            virttype = "kvm" if self.driver.kvm else "qemu"
        elif virttype not in ("kvm", "qemu"):
            if virttype in OTHER_VIRT_TYPES:
                binary = emulatorbin or self.driver.cfg.emulator
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            f"Emulator '{binary}' does not support virt type '{virttype}'")
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"unknown virttype: {virttype}")
        if arch is not None and arch not in ARCHES:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"unknown architecture: {arch}")
        if emulatorbin is None:
            p = await self.probe()
            if arch is not None and arch != p.arch:
                binary = self.emulator_for(arch)
                if binary is None:
                    raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                                f"unable to find any emulator to serve '{arch}' architecture")
                p = await self.probe(binary)
        else:
            if not emulatorbin.startswith("/"):
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            f"emulator binary path '{emulatorbin}' must be absolute")
            p = await self.probe(emulatorbin)
            if arch is not None and arch != p.arch:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            f"architecture from emulator '{p.arch}' doesn't match given architecture '{arch}'")
        if virttype == "kvm" and "kvm" not in p.accels:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"Emulator '{p.emulator}' does not support virt type 'kvm'")
        m = p.machine(machine)
        if m is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"the machine '{machine}' is not supported by emulator '{p.emulator}'")
        return domain_capabilities_xml(p, Request(virttype, m, p.arch), hostinfo.kvm_max_vcpus())

    async def cpu_model_names(self, arch: str, flags: int) -> list[str]:
        hostinfo.check_flags(flags, 0, "qemuConnectGetCPUModelNames")
        if arch not in ARCHES:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"cannot find architecture {arch}")
        return cpumap.model_names(arch)      # libvirt's own CPU map, not QEMU's list


def check_binary(binary: str) -> None:
    """What libvirt checks before probing a QEMU binary, with its errors: that it can be
    stat()ed, and that it is an executable file (not a directory)."""
    try:
        st = os.stat(binary)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                    f"Cannot check QEMU binary {binary}: {os.strerror(exc.errno or errno.ENOENT)}") from None
    reason = (errno.EISDIR if stat.S_ISDIR(st.st_mode) else
              errno.EACCES if not st.st_mode & 0o111 else None)
    if reason is not None:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                    f"QEMU binary {binary} is not executable: {os.strerror(reason)}")


_BY_DRIVER: "weakref.WeakKeyDictionary[Any, HostCaps]" = weakref.WeakKeyDictionary()


def for_driver(driver: Any) -> HostCaps:
    caps = _BY_DRIVER.get(driver)
    if caps is None:
        caps = _BY_DRIVER[driver] = HostCaps(driver)
    return caps


__all__ = ["HostCaps", "for_driver", "Probe"]
