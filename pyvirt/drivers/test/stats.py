"""The test host's statistics, vCPU changes, metadata, sysinfo and save images.

Figures are libvirt's test driver's: fixed CPU times, memory statistics
derived from the current balloon, the domain statistics' state group only,
an I/O error code per disk.  A save image is libvirt's test format (the
``TestGuestMagic`` header, the XML's length in host byte order, the XML),
so an image saved by libvirt's test driver restores here and back.
"""

from __future__ import annotations

import asyncio
import copy
import os
import struct
import time

from ...conf import metadata as metadata_xml
from ...driver import DomainEvent
from ...enums import EventID, EventStartedDetail, EventStoppedDetail, RunningReason, ShutoffReason
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef
from ..domainlist import DomainObj
from . import tuning

_T = ErrorDomain.TEST
SAVE_MAGIC = b"TestGuestMagic\0"       # libvirt writes the C string with its terminating NUL
TIME_SECONDS = 627319920          # virDomainGetTime and memory stats' last_update on libvirt's test host
DOMAIN_CPU_STATS = (("cpu_time", 4, 48772617035), ("user_time", 4, 5540000000),
                    ("system_time", 4, 6460000000))            # VIR_TYPED_PARAM_ULLONG
NODE_CPU_STATS = (("user", 9797400000), ("kernel", 34678723400000), ("idle", 87264900000),
                  ("iowait", 763600000))
SYSINFO_XML = """<sysinfo type='smbios'>
  <bios>
    <entry name='vendor'>LENOVO</entry>
    <entry name='version'>G4ETA1WW (2.61 )</entry>
    <entry name='date'>05/07/2014</entry>
    <entry name='release'>2.61</entry>
  </bios>
</sysinfo>
"""
VCPU_LIVE, VCPU_CONFIG, VCPU_MAXIMUM = 1, 2, 4
STATS_STATE, STATS_IOTHREAD = 1, 128      # VIR_DOMAIN_STATS_STATE, _IOTHREAD
SAVE_RUNNING, SAVE_PAUSED = 2, 4         # virDomainSaveRestoreFlags
DUMP_CRASH, DUMP_FORMAT_RAW = 1, 0       # virDomainCoreDumpFlags, virDomainCoreDumpFormat


def _not_running() -> Exception:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")


class StatsAPI:
    """Mixed into TestConnection (which supplies _obj, _active, host)."""

    async def domain_memory_stats(self, dom: DomainRef, maxStats: int, flags: int) -> list[tuple[int, int]]:
        check_flags(flags, 0, "testDomainMemoryStats", _T)
        obj = self._active(dom)
        cur = obj.current.current_memory_kib
        # libvirt's order: actual, swap in/out, faults, unused, available, usable, last update,
        # disk caches, hugetlb, rss (virDomainMemoryStatTags numbers)
        stats = [(6, cur), (0, 0), (1, 0), (2, 0), (3, 0), (4, cur // 2), (5, cur), (8, cur // 2),
                 (9, TIME_SECONDS), (10, cur // 8), (11, 0), (12, 0), (7, cur // 2)]
        return stats[:max(maxStats, 0)]

    async def domain_get_vcpus(self, dom: DomainRef, maxinfo: int, maplen: int) -> tuple[list, bytes]:
        obj = self._obj(dom)
        if not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN,
                        "cannot list vcpus for an inactive domain")
        cpu_time = time.time_ns() // 10000      # a clock-based figure, as libvirt's test driver's
        ni = self.host.node_info
        every = list(range(ni[4] * ni[5] * ni[6] * ni[7]))       # VIR_NODEINFO_MAXCPUS
        pins = tuning.live_tune(obj).vcpupin
        count = min(maxinfo, obj.current.current_vcpus)
        info, maps = [], b""
        for n in range(count):          # running, on the last CPU it may use
            cpus = pins.get(n, every)
            info.append((n, 1, cpu_time, max(cpus) if cpus else -1))
            maps += tuning.cpumap_of(cpus, maplen)
        return info, maps

    async def domain_get_cpu_stats(self, dom: DomainRef, nparams: int, start_cpu: int, ncpus: int,
                                   flags: int) -> tuple[list, int]:
        check_flags(flags, 4, "testDomainGetCPUStats", _T)     # VIR_TYPED_PARAM_STRING_OKAY
        self._active(dom)
        if start_cpu != -1:
            raise error(ErrorNumber.NO_SUPPORT, ErrorDomain.DOMAIN, "per-CPU statistics of the test host")
        if nparams == 0:
            return [], len(DOMAIN_CPU_STATS)
        return list(DOMAIN_CPU_STATS[:nparams]), min(nparams, len(DOMAIN_CPU_STATS))

    async def node_get_cpu_stats(self, cpu: int, nparams: int, flags: int) -> tuple[list, int]:
        check_flags(flags, 0, "testNodeGetCPUStats", _T)
        if cpu != -1 and not 0 <= cpu < self.host.node_info[2]:
            raise error(ErrorNumber.INVALID_ARG, _T, "Invalid cpuNum in testNodeGetCPUStats")
        if nparams == 0:
            return [], len(NODE_CPU_STATS)
        return list(NODE_CPU_STATS[:nparams]), min(nparams, len(NODE_CPU_STATS))

    async def domain_get_disk_errors(self, dom: DomainRef, maxerrors: int,
                                     flags: int) -> tuple[list[tuple[str, int]], int]:
        check_flags(flags, 0, "testDomainGetDiskErrors", _T)
        obj = self._active(dom)
        disks = obj.current.devices.disks
        if maxerrors == 0:
            return [], len(disks)
        # libvirt's test driver: every disk in error, UNSPEC and NO_SPACE in turn
        errors = [(d.target_dev, i % 2 + 1) for i, d in enumerate(disks[:maxerrors])]
        return errors, len(errors)

    async def connect_get_all_domain_stats(self, doms: list[DomainRef], stats: int,
                                           flags: int) -> list[tuple[DomainRef, list]]:
        objs = [self._obj(d) for d in doms] if doms else sorted(self.host.domains, key=lambda o: o.name)
        out = []
        for obj in objs:
            params = []
            if not stats or stats & STATS_STATE:
                params = [("state.state", 1, int(obj.state)), ("state.reason", 1, int(obj.reason))]
            if not stats or stats & STATS_IOTHREAD:
                params += self.iothread_stats(obj)
            out.append((obj.ref(), params))
        return out

    async def connect_get_sysinfo(self, flags: int) -> str:
        check_flags(flags, 0, "testConnectGetSysinfo", _T)
        return SYSINFO_XML

    # -- vCPUs and metadata ----------------------------------------------------------------------
    async def domain_set_vcpus(self, dom: DomainRef, nvcpus: int) -> None:
        await self.domain_set_vcpus_flags(dom, nvcpus, VCPU_LIVE)

    async def domain_set_vcpus_flags(self, dom: DomainRef, nvcpus: int, flags: int) -> None:
        check_flags(flags, VCPU_LIVE | VCPU_CONFIG | VCPU_MAXIMUM, "testDomainSetVcpusFlags", _T)
        obj = self._obj(dom)
        if nvcpus == 0:
            raise error(ErrorNumber.INVALID_ARG, _T, "argument unsupported: nvcpus must be greater than 0")
        live = bool(flags & VCPU_LIVE) or (not flags & VCPU_CONFIG and obj.active)
        config = bool(flags & VCPU_CONFIG) or (not flags & VCPU_LIVE and not obj.active)
        if live and not obj.active:
            raise _not_running()
        if flags & VCPU_MAXIMUM and live:
            raise error(ErrorNumber.INVALID_ARG, _T, "cannot set max vcpu count of a running domain")
        targets = ([obj.live] if live else []) + ([obj.definition] if config and obj.persistent else [])
        for d in targets:
            if not flags & VCPU_MAXIMUM and nvcpus > d.vcpus:
                raise error(ErrorNumber.INVALID_ARG, _T,
                            f"requested cpu amount exceeds maximum ({nvcpus} > {d.vcpus})")
        for d in targets:
            if flags & VCPU_MAXIMUM:
                current = min(d.current_vcpus, nvcpus)
                d.vcpus = nvcpus
                d.set_current_vcpus(current)
            else:
                d.set_current_vcpus(nvcpus)

    async def domain_set_metadata(self, dom: DomainRef, type: int, metadata: str | None, key: str | None,  # noqa: A002
                                  uri: str | None, flags: int) -> None:
        check_flags(flags, 3, "testDomainSetMetadata", _T)
        metadata_xml.check_arguments(type, metadata, key, uri)
        obj = self._obj(dom)
        # virDomainObjGetDefs: CURRENT is the live definition when running, else the persistent one
        live, config = bool(flags & 1), bool(flags & 2)
        if not live and not config:
            live, config = obj.active, not obj.active
        if live and not obj.active:
            raise _not_running()
        if config and not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN,
                        "transient domains do not have any persistent config")
        metadata_xml.set_metadata(obj.current.copy(), type, metadata, key, uri)   # bad XML changes nothing
        for d in ([obj.live] if live else []) + ([obj.definition] if config else []):
            metadata_xml.set_metadata(d, type, metadata, key, uri)
        self.host.events.emit(DomainEvent(int(EventID.METADATA_CHANGE), obj.ref(), (type, uri)))

    # -- save images ----------------------------------------------------------------------------
    async def domain_save(self, dom: DomainRef, to: str) -> None:
        await self.domain_save_flags(dom, to, None, 0)

    async def domain_save_flags(self, dom: DomainRef, to: str, dxml: str | None, flags: int) -> None:
        check_flags(flags, 0, "testDomainSaveFlags", _T)
        if dxml:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, _T, "xml modification unsupported")
        obj = self._active(dom)
        # the running definition as libvirt's test driver writes it (its id included)
        xml = tuning.decorate_xml(obj.current.format(secure=True), tuning.live_tune(obj), obj.current.vcpus).encode()
        await asyncio.get_running_loop().run_in_executor(None, _write_image, to, xml)
        self.host.stop(obj, ShutoffReason.SAVED, EventStoppedDetail.SAVED)

    async def domain_restore(self, from_: str) -> None:
        await self.domain_restore_flags(from_, None, 0)

    async def domain_restore_flags(self, from_: str, dxml: str | None, flags: int) -> None:
        check_flags(flags, 0, "testDomainRestoreFlags", _T)
        if dxml:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, _T, "xml modification unsupported")
        xml = await asyncio.get_running_loop().run_in_executor(None, _read_image, from_)
        new = self._parse_domain(xml)
        tune = tuning.parse_tune(xml, new)
        obj = self.host.domains.check_new(new, allow_active_same=False)
        if obj is None:
            obj = DomainObj(new, persistent=False)
            self.host.domains.add(obj)
            tuning.set_config(obj, tune)
        self.host.start(obj, RunningReason.RESTORED, live_def=new, detail=EventStartedDetail.RESTORED)
        tuning.set_live(obj, copy.deepcopy(tune))

    async def domain_save_image_define_xml(self, file: str, dxml: str, flags: int) -> None:
        check_flags(flags, SAVE_RUNNING | SAVE_PAUSED, "testDomainSaveImageDefineXML", _T)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _read_image, file)       # a test image, or libvirt's refusal
        new = self._parse_domain(dxml)
        xml = tuning.decorate_xml(new.format(secure=True, inactive=True), tuning.parse_tune(dxml, new), new.vcpus)
        await loop.run_in_executor(None, _write_image, file, xml.encode())

    # -- core dumps ---------------------------------------------------------------------------------
    async def domain_core_dump(self, dom: DomainRef, to: str, flags: int) -> None:
        await self.domain_core_dump_with_format(dom, to, DUMP_FORMAT_RAW, flags)

    async def domain_core_dump_with_format(self, dom: DomainRef, to: str, dumpformat: int, flags: int) -> None:
        check_flags(flags, DUMP_CRASH, "testDomainCoreDumpWithFormat", _T)
        obj = self._obj(dom)
        if not obj.active:
            raise _not_running()
        await asyncio.get_running_loop().run_in_executor(None, _write_dump, to, dom.name)
        if dumpformat != DUMP_FORMAT_RAW:      # refused after the file is written, as libvirt's
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T, "kdump-compressed format is not supported here")
        if flags & DUMP_CRASH:
            self.host.stop(obj, ShutoffReason.CRASHED, EventStoppedDetail.CRASHED)

    async def domain_save_image_get_xml_desc(self, file: str, flags: int) -> str:
        check_flags(flags, 1, "testDomainSaveImageGetXMLDesc", _T)
        xml = await asyncio.get_running_loop().run_in_executor(None, _read_image, file)
        d = self._parse_domain(xml)
        return tuning.decorate_xml(d.format(secure=bool(flags & 1), inactive=True), tuning.parse_tune(xml, d),
                                   d.vcpus)


def _write_image(path: str, xml: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, _T, f"saving domain failed: {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(SAVE_MAGIC + struct.pack("=i", len(xml)) + xml)


def _write_dump(path: str, name: str) -> None:
    """A test-driver core dump: the header alone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, _T,
                    f"domain '{name}' coredump: failed to open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(SAVE_MAGIC)


def _read_image(path: str) -> str:
    """A test-driver save image's XML, checked as libvirt's testDomainSaveImageOpen checks it."""
    def short(what: str) -> Exception:       # a short read: libvirt reports errno, still 0 ("Success")
        return error(ErrorNumber.SYSTEM_ERROR, _T, f"{what} in '{path}': Success")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(SAVE_MAGIC))
            if len(magic) != len(SAVE_MAGIC):
                raise short("incomplete save header")
            if magic != SAVE_MAGIC:
                raise error(ErrorNumber.INTERNAL_ERROR, _T, "mismatched header magic")
            raw = f.read(4)
            if len(raw) != 4:
                raise short("failed to read metadata length")
            (length,) = struct.unpack("=i", raw)
            if length < 1 or length > 8192:
                raise error(ErrorNumber.INTERNAL_ERROR, _T, "length of metadata out of range")
            xml = f.read(length)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, _T, f"cannot read domain image '{path}': {exc.strerror}") from None
    if len(xml) != length:
        raise short("incomplete metadata")
    return xml.decode("utf-8", "replace")
