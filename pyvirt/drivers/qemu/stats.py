"""Guest statistics from QEMU's monitor: block devices, the balloon, vCPU threads.

Each query is one QMP command per domain, and the commands one caller needs
are sent together (QMP answers them in order on the same connection), so a
statistics call costs one round trip per domain whatever it asks for.  The
vCPU thread ids (``query-cpus-fast``) are asked once per QEMU and kept until
the number of vCPUs changes.

Field meanings follow libvirt's: block ``allocation`` is QEMU's highest
written offset, ``capacity`` the image's virtual size, ``physical`` the bytes
the image takes on the host; balloon figures are KiB.
"""

from __future__ import annotations

import asyncio
import os
import struct
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable

from ...enums import DomainState
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from .jobs import JobKind

PERIPHERAL = "/machine/peripheral/"

# virDomainMemoryStatTags
SWAP_IN, SWAP_OUT, MAJOR_FAULT, MINOR_FAULT, UNUSED, AVAILABLE = 0, 1, 2, 3, 4, 5
ACTUAL_BALLOON, RSS, USABLE, LAST_UPDATE, DISK_CACHES, HUGETLB_PGALLOC, HUGETLB_PGFAIL = 6, 7, 8, 9, 10, 11, 12
MEMORY_STAT_NR = 13

# QEMU's guest-stats name -> (tag, multiplier to KiB or count), in libvirt's order.
_GUEST_STATS = (
    ("stat-swap-in", SWAP_IN, 1024), ("stat-swap-out", SWAP_OUT, 1024),
    ("stat-major-faults", MAJOR_FAULT, 1), ("stat-minor-faults", MINOR_FAULT, 1),
    ("stat-free-memory", UNUSED, 1024), ("stat-total-memory", AVAILABLE, 1024),
    ("stat-available-memory", USABLE, 1024), ("stat-disk-caches", DISK_CACHES, 1024),
    ("stat-htlb-pgalloc", HUGETLB_PGALLOC, 1), ("stat-htlb-pgfail", HUGETLB_PGFAIL, 1),
)
UNSUPPORTED_STAT = 2 ** 64 - 1          # QEMU's "the guest does not report this"


@dataclass(slots=True)
class BlockEntry:
    """One disk's figures, as QEMU reports them for its device."""

    rd_reqs: int = 0
    rd_bytes: int = 0
    rd_times: int = 0
    wr_reqs: int = 0
    wr_bytes: int = 0
    wr_times: int = 0
    fl_reqs: int = 0
    fl_times: int = 0
    allocation: int = 0         # wr_highest_offset of the storage node
    capacity: int = 0
    physical: int = 0
    backing: list["BackingEntry"] | None = None   # the images below it, top down

    def add(self, other: "BlockEntry") -> None:
        for name in self.__slots__:   # type: ignore[attr-defined]
            if name != "backing":
                setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class BackingEntry:
    """One image of a disk's backing chain (what --backing reports for it)."""

    path: str
    allocation: int = 0
    capacity: int = 0
    physical: int = 0


def alias_of_qdev(qdev: str) -> str | None:
    """``/machine/peripheral/virtio-disk0/virtio-backend`` -> ``virtio-disk0``."""
    if not qdev.startswith(PERIPHERAL):
        return None
    return qdev[len(PERIPHERAL):].split("/", 1)[0] or None


def block_entries(blockstats: list[dict[str, Any]],
                  nodes: list[dict[str, Any]] | None = None) -> dict[str, BlockEntry]:
    """query-blockstats (and query-named-block-nodes for sizes) -> entries by device alias."""
    images = {n.get("node-name"): n.get("image", {}) for n in nodes or ()}
    out: dict[str, BlockEntry] = {}
    for dev in blockstats:
        alias = alias_of_qdev(dev.get("qdev", "")) or dev.get("device") or None
        if alias is None:
            continue
        s = dev.get("stats", {})
        storage = dev.get("parent") or {}
        entry = BlockEntry(
            rd_reqs=s.get("rd_operations", 0), rd_bytes=s.get("rd_bytes", 0),
            rd_times=s.get("rd_total_time_ns", 0), wr_reqs=s.get("wr_operations", 0),
            wr_bytes=s.get("wr_bytes", 0), wr_times=s.get("wr_total_time_ns", 0),
            fl_reqs=s.get("flush_operations", 0), fl_times=s.get("flush_total_time_ns", 0),
            allocation=storage.get("stats", {}).get("wr_highest_offset", s.get("wr_highest_offset", 0)))
        image = images.get(dev.get("node-name"))
        if image:
            entry.capacity = image.get("virtual-size", 0)
            # without actual-size the image is not thin: it takes its whole size
            entry.physical = image.get("actual-size", entry.capacity)
        entry.backing = _backing_chain(dev.get("backing"), images)
        out[alias] = entry
    return out


def _backing_chain(node: dict[str, Any] | None, images: dict[Any, dict[str, Any]]) -> list[BackingEntry]:
    chain: list[BackingEntry] = []
    while node:
        image = images.get(node.get("node-name"), {})
        capacity = image.get("virtual-size", 0)
        chain.append(BackingEntry(
            path=image.get("filename", ""),
            allocation=(node.get("parent") or {}).get("stats", {}).get("wr_highest_offset", 0),
            capacity=capacity, physical=image.get("actual-size", capacity)))
        node = node.get("backing")
    return chain


def guest_memory_stats(reply: dict[str, Any]) -> list[tuple[int, int]]:
    """qom-get guest-stats -> (tag, value) pairs the guest reports, then last_update."""
    stats = reply.get("stats", {})
    out: list[tuple[int, int]] = []
    for name, tag, scale in _GUEST_STATS:
        value = stats.get(name)
        if isinstance(value, int) and 0 <= value < UNSUPPORTED_STAT:
            out.append((tag, value // scale if scale > 1 else value))
    if isinstance(reply.get("last-update"), int):
        out.append((LAST_UPDATE, reply["last-update"]))
    return out


# -- the monitor side --------------------------------------------------------------

# domain object -> (QEMU's pid, its vCPU thread ids)
_vcpu_threads: "weakref.WeakKeyDictionary[Any, tuple[int, list[int]]]" = weakref.WeakKeyDictionary()


async def vcpu_threads(obj: Any, expected: int) -> list[int]:
    """Thread ids of QEMU's vCPUs by index (asked once per QEMU and vCPU count)."""
    pid = obj.process.pid
    known = _vcpu_threads.get(obj)
    if known is not None and known[0] == pid and len(known[1]) == expected:
        return known[1]
    cpus = await obj.process.monitor.execute("query-cpus-fast")
    tids = [c["thread-id"] for c in sorted(cpus, key=lambda c: c.get("cpu-index", 0))]
    _vcpu_threads[obj] = (pid, tids)
    return tids


# query-block's io-status -> virDomainDiskErrorCode (absent when the disk stops on no error)
DISK_ERROR_CODES = {"ok": 0, "failed": 1, "nospace": 2}


def disk_errors(blocks: list[dict[str, Any]]) -> dict[str, int]:
    """query-block -> {device alias: virDomainDiskErrorCode} of the devices in error."""
    out: dict[str, int] = {}
    for blk in blocks:
        code = DISK_ERROR_CODES.get(str(blk.get("io-status", "ok")), 1)
        alias = alias_of_qdev(str(blk.get("qdev", ""))) or blk.get("qdev") or blk.get("device")
        if code and alias:
            out[str(alias)] = code
    return out


@dataclass(slots=True)
class MonitorSample:
    """What one round of monitor queries for a domain brought back."""

    blocks: dict[str, BlockEntry] | None = None
    balloon_kib: int | None = None
    guest_stats: list[tuple[int, int]] | None = None
    vcpu_tids: list[int] | None = None
    dirtyrate: dict[str, Any] | None = None


async def sample(obj: Any, *, block: bool = False, sizes: bool = True, balloon: bool = False,
                 vcpus: bool = False, dirtyrate: bool = False) -> MonitorSample:
    """Send every query the caller needs at once and wait for all answers."""
    monitor = obj.process.monitor
    jobs: dict[str, Awaitable[Any]] = {}
    if block:
        jobs["blockstats"] = monitor.execute("query-blockstats")
        if sizes:
            jobs["nodes"] = monitor.execute("query-named-block-nodes", {"flat": True})
    balloon_dev = obj.current.devices.memballoon
    has_balloon = balloon_dev is not None and balloon_dev.model != "none" and balloon_dev.alias
    if balloon and has_balloon:
        jobs["balloon"] = monitor.execute("query-balloon")
        jobs["guest"] = monitor.execute("qom-get", {"path": PERIPHERAL + balloon_dev.alias,
                                                    "property": "guest-stats"})
    if vcpus:
        jobs["vcpus"] = vcpu_threads(obj, obj.current.current_vcpus)
    if dirtyrate:
        jobs["dirtyrate"] = monitor.execute("query-dirty-rate")
    results = dict(zip(jobs, await asyncio.gather(*jobs.values(), return_exceptions=True)))
    for value in results.values():
        if isinstance(value, BaseException) and not isinstance(value, libvirtError):
            raise value
    out = MonitorSample()
    if block:
        stats = results["blockstats"]
        if isinstance(stats, libvirtError):
            raise stats
        nodes = results.get("nodes")
        out.blocks = block_entries(stats, None if isinstance(nodes, BaseException) else nodes)
    if "balloon" in results and not isinstance(results["balloon"], BaseException):
        out.balloon_kib = results["balloon"].get("actual", 0) // 1024
    if "guest" in results and not isinstance(results["guest"], BaseException):
        out.guest_stats = guest_memory_stats(results["guest"])
    if "vcpus" in results and not isinstance(results["vcpus"], BaseException):
        out.vcpu_tids = results["vcpus"]
    if "dirtyrate" in results and not isinstance(results["dirtyrate"], BaseException):
        out.dirtyrate = results["dirtyrate"]
    return out


async def set_balloon_period(obj: Any, period: int) -> None:
    balloon_dev = obj.current.devices.memballoon
    await obj.process.monitor.execute("qom-set", {
        "path": PERIPHERAL + balloon_dev.alias, "property": "guest-stats-polling-interval",
        "value": period})


@asynccontextmanager
async def query_job(driver: Any, obj: Any, nowait: bool = False, needed: bool = True) -> AsyncIterator[bool]:
    """A QUERY job for monitor statistics, allowed through any asynchronous job.

    Yields whether the monitor may be used: False (nothing waited for) when the
    caller needs no monitor, when the domain is not running, when ``nowait`` and another synchronous job holds the
    domain, or when the job could not be had — the caller then reports what it
    knows without QEMU, as libvirt's bulk statistics do."""
    if not needed or not obj.active or obj.process is None or (nowait and obj.jobs.active is not None):
        yield False
        return
    try:
        guard = driver.job_guard(obj, JobKind.QUERY)
        await guard.__aenter__()
    except libvirtError:
        yield False
        return
    try:
        yield obj.active and obj.process is not None
    except BaseException as exc:
        if not await guard.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await guard.__aexit__(None, None, None)


# -- images of inactive domains ------------------------------------------------------

_QCOW2_MAGIC = b"QFI\xfb"


def image_sizes(path: str) -> tuple[int, int, int]:
    """(allocation, capacity, physical) of an image file no QEMU has open: the
    bytes it takes on disk, its virtual size (qcow2 header, else the file size),
    and its size as a file — libvirt's answer for an inactive domain."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                    f"cannot stat file '{path}': {exc.strerror}") from exc
    capacity = st.st_size
    if head[:4] == _QCOW2_MAGIC and len(head) >= 32:
        capacity = struct.unpack(">Q", head[24:32])[0]
    return st.st_blocks * 512, capacity, st.st_size


def running_state(obj: Any) -> bool:
    return obj.active and obj.state in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED)


async def apply_balloon_period(obj: Any) -> None:
    """At start, the polling period the definition asks for (<memballoon><stats period>),
    as libvirt sets it once QEMU runs; a QEMU that refuses it still runs."""
    balloon_dev = obj.current.devices.memballoon
    period = getattr(balloon_dev, "period", None)
    if not period or not balloon_dev.alias or obj.process is None:
        return
    try:
        await set_balloon_period(obj, period)
    except libvirtError:
        pass
