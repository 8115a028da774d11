"""Migration without shared storage: each disk copied over NBD while the guest runs.

As libvirt does it with blockdev-era QEMU (``VIR_MIGRATE_NON_SHARED_DISK`` /
``_INC``):

* Begin lists the disks to copy and their sizes in the cookie's ``<nbd>``.
* Prepare creates every image the destination lacks (``qemu-img create``
  with the source's format and size), starts QEMU waiting for the stream,
  starts QEMU's NBD server on the migration address and exports each disk,
  writable; the reply cookie names the server's port.
* Perform adds one NBD client node per disk pointing at its export and
  mirrors the disk into it (``sync: full``, or ``top`` for ``_INC``, whose
  backing chain the destination already has).  Once every mirror is READY,
  RAM goes with ``pause-before-switchover``; at that pause the mirrors are
  cancelled without force, which on a READY mirror means "finish the copy,
  do not pivot", so the source keeps its own images and the destination's
  are complete, then the migration continues.
* Finish stops the NBD server.  Any failure cancels the mirrors (force) on
  the source, which runs on as before, and the destination removes the
  images it created.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from xml.sax.saxutils import escape, quoteattr
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ....conf import DomainDef
from ....enums import MigrateFlags
from ....errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..snapshot_qemu import block_nodes
from .nbd_cookie import CookieNbd, NbdDisk
from .params import MigrationRequest, bandwidth_bytes, parse_tcp_uri

if TYPE_CHECKING:
    from ....conf.devices import Disk
    from ..domainobj import QemuDomainObj
    from ..driver import QemuDriver

log = logging.getLogger(__name__)

COPY_FLAGS = MigrateFlags.NON_SHARED_DISK | MigrateFlags.NON_SHARED_INC
# The block-job events a waiting step wakes on (the driver's own handler sees them too).
_JOB_EVENTS = ("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR")
_POLL_SECONDS = 1.0     # a safety net: the events above drive the waits
# File systems libvirt's virFileIsSharedFS / virFileIsClusterFS count as shared.
_SHARED_FS = {"nfs", "nfs4", "gfs2", "gfs", "ocfs2", "afs", "smb3", "smbfs", "cifs", "ceph",
              "fuse.glusterfs", "glusterfs", "gpfs", "fuse.quobyte", "beegfs"}


def copies_storage(flags: int) -> bool:
    return bool(flags & COPY_FLAGS)


def export_name(disk: "Disk") -> str:
    """The NBD export (and source mirror job) of a disk, named as libvirt names them."""
    return f"drive-{disk.alias}"


# -- which disks, and whether leaving the others behind is safe -----------------------------

def check_flags(flags: int) -> None:
    """libvirt's refusals of storage-copy flag combinations (virDomainMigrate*, qemu driver)."""
    if flags & MigrateFlags.NON_SHARED_DISK and flags & MigrateFlags.NON_SHARED_INC:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    "Flags 'VIR_MIGRATE_NON_SHARED_DISK' and 'VIR_MIGRATE_NON_SHARED_INC' are mutually exclusive")
    if flags & MigrateFlags.NON_SHARED_SYNCHRONOUS_WRITES and not copies_storage(flags):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    "'VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES' requires "
                    "'VIR_MIGRATE_NON_SHARED_DISK' or 'VIR_MIGRATE_NON_SHARED_INC'")
    if copies_storage(flags) and flags & MigrateFlags.TUNNELLED:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    "NBD in tunnelled migration is not supported: the tunnel carries only the RAM stream")


def _has_medium(disk: "Disk") -> bool:
    return bool(disk.source)


def copied(disk: "Disk", migrate_disks: list[str]) -> bool:
    """libvirt's qemuMigrationAnyCopyDisk: the listed targets, else every writable,
    unshared disk with a medium."""
    if migrate_disks:
        return disk.target_dev in migrate_disks
    return _has_medium(disk) and not disk.readonly and not disk.shareable and disk.device != "cdrom"


def disks_to_copy(d: DomainDef, flags: int, migrate_disks: list[str]) -> list["Disk"]:
    if not copies_storage(flags):
        if migrate_disks:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                        "use of 'migrate_disks' requires VIR_MIGRATE_NON_SHARED_DISK or VIR_MIGRATE_NON_SHARED_INC")
        return []
    targets = {disk.target_dev for disk in d.devices.disks}
    for name in migrate_disks:
        if name not in targets:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"disk target {name} not found")
    chosen = [disk for disk in d.devices.disks if copied(disk, migrate_disks)]
    for disk in chosen:
        if not _has_medium(disk):
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                        f"disk '{disk.target_dev}' has no source: nothing to copy")
    return chosen


def _fs_type(path: str) -> str | None:
    """The file system type of the mount holding ``path`` (longest mount point prefix)."""
    try:
        real = os.path.realpath(path)
        best, kind = "", None
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, kind = point, parts[2]
        return kind
    except OSError:
        return None


def check_safe(d: DomainDef, flags: int, migrate_disks: list[str]) -> None:
    """libvirt's qemuMigrationSrcIsSafe (9.0): a disk that stays behind must be on shared
    storage, unless VIR_MIGRATE_UNSAFE.  (QEMU 7.2 drops the page cache at switchover,
    so the cache mode of a shared disk is not a reason to refuse, as in libvirt.)"""
    if flags & MigrateFlags.UNSAFE:
        return
    for disk in d.devices.disks:
        if not _has_medium(disk) or disk.readonly:
            continue
        if copies_storage(flags) and copied(disk, migrate_disks):
            continue
        if disk.storage_type == "file" and _fs_type(disk.source or "") not in _SHARED_FS:
            raise error(ErrorNumber.MIGRATE_UNSAFE, ErrorDomain.QEMU, "Migration without shared storage is unsafe")


async def begin_cookie(obj: "QemuDomainObj", disks: list["Disk"]) -> CookieNbd | None:
    """The Begin cookie's <nbd>: each copied disk's target and capacity (the size QEMU sees)."""
    if not disks:
        return None
    nodes = await block_nodes(obj)
    out = []
    for disk in disks:
        node = nodes.get(disk.alias or "")
        if node is None:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        f"disk '{disk.target_dev}' has no medium in the running domain")
        out.append(NbdDisk(disk.target_dev, node.virtual_size))
    return CookieNbd(disks=out)


# -- destination ---------------------------------------------------------------------------

@dataclass
class IncomingStorage:
    disks: list["Disk"]
    created: list[str] = field(default_factory=list)     # images this migration made
    volumes: list[Any] = field(default_factory=list)     # pool volumes it made (StorageVolRef)
    storage: Any = None                                  # the storage connection that made them
    port: int | None = None
    server: bool = False


_INCOMING: "weakref.WeakKeyDictionary[Any, IncomingStorage]" = weakref.WeakKeyDictionary()


async def _qemu_img(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("qemu-img", *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"cannot create the image for migration: {out.decode(errors='replace').strip()}")


async def precreate(obj: "QemuDomainObj", d: DomainDef, nbd: CookieNbd | None, storage: Any = None,
                    incremental: bool = False) -> None:
    """Before the destination QEMU starts: create each image the source copies that this
    host lacks, with the source's size and the format the definition names; a volume disk's
    in its pool, through the storage driver (``storage``: the client's storage connection)."""
    if nbd is None or not nbd.disks:
        return
    state = IncomingStorage([], storage=storage)
    _INCOMING[obj] = state
    by_target = {disk.target_dev: disk for disk in d.devices.disks}
    for item in nbd.disks:
        disk = by_target.get(item.target)
        if disk is None:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                        f"unable to find disk by target: {item.target}")
        state.disks.append(disk)
        missing = (disk.type == "volume" and storage is not None) or (disk.source and not os.path.exists(disk.source))
        if incremental and missing and (disk.type != "volume" or not await _volume_exists(storage, disk)):
            # an image made here would have no backing chain under the copied top (libvirt's refusal)
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                        "pre-creation of storage targets for incremental storage migration is not supported")
        if disk.type == "volume" and disk.source_pool and disk.source_volume:
            await _precreate_volume(state, disk, item.capacity)
            continue
        if disk.storage_type != "file" or not disk.source:
            continue          # block devices are the administrator's to provide
        if os.path.exists(disk.source):
            continue
        if not os.path.isdir(os.path.dirname(disk.source) or "/"):
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"cannot precreate storage for disk '{disk.target_dev}': "
                        f"directory of '{disk.source}' does not exist")
        await _qemu_img("create", "-q", "-f", disk.driver_type or "raw", disk.source, str(item.capacity))
        state.created.append(disk.source)
        log.info("%s: created %s (%d bytes) for the incoming disk %s", d.name, disk.source,
                 item.capacity, disk.target_dev)


async def _volume_exists(storage: Any, disk: "Disk") -> bool:
    try:
        pool = await storage.storage_pool_lookup_by_name(disk.source_pool)
        await storage.storage_vol_lookup_by_name(pool, disk.source_volume)
        return True
    except libvirtError as exc:
        if exc.get_error_code() != ErrorNumber.NO_STORAGE_VOL:
            raise
        return False


async def _precreate_volume(state: IncomingStorage, disk: "Disk", capacity: int) -> None:
    """libvirt's qemuMigrationDstPrecreateDisk for a volume: create it in its pool when missing."""
    storage = state.storage
    if storage is None:
        return              # the start reports the missing storage driver
    pool = await storage.storage_pool_lookup_by_name(disk.source_pool)
    try:
        await storage.storage_vol_lookup_by_name(pool, disk.source_volume)
        return
    except libvirtError as exc:
        if exc.get_error_code() != ErrorNumber.NO_STORAGE_VOL:
            raise
    fmt = disk.driver_type or "raw"
    xml = (f"<volume><name>{escape(disk.source_volume)}</name><capacity unit='bytes'>{capacity}</capacity>"
           f"<target><format type={quoteattr(fmt)}/></target></volume>")
    state.volumes.append(await storage.storage_vol_create_xml(pool, xml, 0))
    log.info("created volume %s/%s (%d bytes) for the incoming disk %s", disk.source_pool,
             disk.source_volume, capacity, disk.target_dev)


@dataclass(frozen=True)
class NbdServer:
    """Where the destination's NBD server listens: a TCP host and port, or a UNIX socket
    (``disks_uri=unix:///path``: the operator carries the socket between the hosts)."""

    host: str | None = None
    port: int | None = None
    socket: str | None = None

    def listen_addr(self) -> dict[str, Any]:
        """QMP nbd-server-start's ``addr`` (a SocketAddressLegacy)."""
        if self.socket is not None:
            return {"type": "unix", "data": {"path": self.socket}}
        return {"type": "inet", "data": {"host": self.host, "port": str(self.port)}}

    def client_addr(self) -> dict[str, Any]:
        """blockdev-add nbd's ``server`` (a SocketAddress)."""
        if self.socket is not None:
            return {"type": "unix", "path": self.socket}
        return {"type": "inet", "host": self.host, "port": str(self.port)}


def _invalid(text: str) -> Exception:
    return error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, text)


def parse_disks_uri(uri: str) -> NbdServer:
    """``disks_uri`` with libvirt 9.0's checks (qemuMigrationDstStartNBDServer):
    ``tcp://HOST[:PORT]`` or ``unix:///PATH``.  A relative socket path is refused too:
    QEMU would resolve it against its own working directory."""
    if "\0" in uri:
        raise _invalid("disks URI must not contain a NUL byte")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.URI, f"Unable to parse URI {uri}") from None
    if not parts.scheme:
        raise _invalid(f"No URI scheme specified: {uri}")
    if parts.scheme == "tcp":
        if not parts.hostname:
            # tcp://:PORT/ names no server: auto-allocating one would do the opposite of what was asked
            raise _invalid(f"URI with tcp scheme did not provide a server part: {uri}")
        return NbdServer(host=parts.hostname, port=port or None)
    if parts.scheme == "unix":
        if not parts.path:
            raise _invalid("UNIX disks URI does not include path")
        if not parts.path.startswith("/"):
            raise _invalid(f"UNIX disks URI must name an absolute path: {uri}")
        return NbdServer(socket=unquote(parts.path))
    raise _invalid(f"Unsupported scheme in disks URI: {parts.scheme}")


def _listen(req: MigrationRequest, default_host: str) -> NbdServer:
    """Where the NBD server listens: disks_uri, else the migration address and
    disks_port (0: a port from the migration range)."""
    if req.disks_uri:
        return parse_disks_uri(req.disks_uri)
    if not 0 <= req.disks_port <= 65535:
        raise _invalid("nbd port must be in range 0-65535")
    return NbdServer(host=default_host, port=req.disks_port or None)


async def start_server(drv: "QemuDriver", obj: "QemuDomainObj", req: MigrationRequest, listen: str,
                       pick_port: Any) -> CookieNbd | None:
    """After the destination QEMU started: its NBD server, one writable export per disk."""
    state = _INCOMING.get(obj)
    if state is None or obj.process is None:
        return None
    mon = obj.process.monitor
    server = _listen(req, listen)
    if server.socket is None and server.port is None:
        server = NbdServer(server.host, pick_port(drv, server.host))
        state.port = server.port
    await mon.execute("nbd-server-start", {"addr": server.listen_addr()})
    state.server = True
    nodes = await block_nodes(obj)
    live = {d.target_dev: d for d in obj.live.devices.disks} if obj.live is not None else {}
    for wanted in state.disks:
        disk = live.get(wanted.target_dev, wanted)      # the running definition has the aliases
        node = nodes.get(disk.alias or "")
        if node is None:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                        f"disk '{disk.target_dev}' has no block node to export")
        await mon.execute("block-export-add", {"type": "nbd", "id": export_name(disk), "node-name": node.node,
                                               "name": export_name(disk), "writable": True})
    return CookieNbd(port=server.port or 0)      # no port for a UNIX socket, as libvirt's


async def stop_server(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """Finish: the copies are complete; the exports go before the guest runs here.
    (The record of created images stays until the migration is over: a Finish that
    fails after this still removes them.)"""
    state = _INCOMING.get(obj)
    if state is None:
        return
    if state.server and obj.process is not None:
        state.server = False
        await obj.process.monitor.execute("nbd-server-stop")


def forget_incoming(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """The incoming migration is over and the guest stays: its images are its own now."""
    state = _INCOMING.pop(obj, None)
    if state is not None and state.port is not None:
        drv.migration_ports.discard(state.port)


async def discard_incoming(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """A failed or cancelled incoming migration (its QEMU already killed): remove the
    images and volumes it created and give back the port."""
    state = _INCOMING.pop(obj, None)
    if state is None:
        return
    for ref in state.volumes:
        try:
            await state.storage.storage_vol_delete(ref, 0)
            log.info("%s: removed volume %s/%s, created for a migration that did not finish",
                     obj.name, ref.pool, ref.name)
        except libvirtError as exc:
            log.warning("%s: cannot remove volume %s/%s: %s", obj.name, ref.pool, ref.name, exc)
    if state.port is not None:
        drv.migration_ports.discard(state.port)
    for path in state.created:
        try:
            os.unlink(path)
            log.info("%s: removed %s, created for a migration that did not finish", obj.name, path)
        except OSError as exc:
            log.warning("%s: cannot remove %s: %s", obj.name, path, exc)


# -- source --------------------------------------------------------------------------------

@dataclass
class _Mirror:
    disk: "Disk"
    job: str
    target: str          # the NBD client node
    added: bool = False
    started: bool = False


class OutgoingStorage:
    """The mirrors of one outgoing migration."""

    def __init__(self, obj: "QemuDomainObj", disks: list["Disk"], flags: int, bandwidth: int) -> None:
        self.obj = obj
        self.flags = flags
        self.bandwidth = bandwidth
        self.mirrors = [_Mirror(d, export_name(d), f"migration-{d.target_dev}-storage") for d in disks]
        self.totals: dict[str, int] = {}
        self.deferred: list[tuple[str, Any]] = []

    @property
    def _mon(self) -> Any:
        if self.obj.process is None:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "domain is no longer running")
        return self.obj.process.monitor

    async def start(self, server: NbdServer, security: Any = None) -> None:
        mon = self._mon
        if server.socket is not None and security is not None and self.obj.live is not None:
            # this QEMU connects to the socket itself: give it the path, as libvirt does
            security.set_saved_state_label(self.obj.live, server.socket)
        nodes = await block_nodes(self.obj)
        sync = "top" if self.flags & MigrateFlags.NON_SHARED_INC else "full"
        mode = "write-blocking" if self.flags & MigrateFlags.NON_SHARED_SYNCHRONOUS_WRITES else "background"
        for m in self.mirrors:
            node = nodes.get(m.disk.alias or "")
            if node is None:
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                            f"disk '{m.disk.target_dev}' has no medium in the running domain")
            await mon.execute("blockdev-add", {"driver": "nbd", "node-name": m.target,
                                               "server": server.client_addr(),
                                               "export": export_name(m.disk),
                                               # zeroes may unmap: the mirror then zeroes the target
                                               # once and copies only what the source has allocated
                                               "discard": "unmap", "read-only": False})
            m.added = True
            args: dict[str, Any] = {"job-id": m.job, "device": node.node, "target": m.target, "sync": sync,
                                    "copy-mode": mode}
            if self.bandwidth:
                args["speed"] = bandwidth_bytes(self.bandwidth)
            await mon.execute("blockdev-mirror", args)
            m.started = True

    async def _jobs(self) -> dict[str, dict[str, Any]]:
        mine = {m.job for m in self.mirrors if m.started}
        return {str(j.get("device")): j for j in await self._mon.execute("query-block-jobs")
                if j.get("device") in mine}

    def _record(self, jobs: dict[str, dict[str, Any]], stats: dict[str, Any]) -> None:
        for name, j in jobs.items():
            self.totals[name] = int(j.get("len", 0))
            self.totals[name + "/done"] = int(j.get("offset", 0))
        total = sum(v for k, v in self.totals.items() if not k.endswith("/done"))
        done = sum(v for k, v in self.totals.items() if k.endswith("/done"))
        stats.update(disk_total=total, disk_processed=done, disk_remaining=max(total - done, 0))
        self._add_to_data(stats)

    @staticmethod
    def _add_to_data(stats: dict[str, Any]) -> None:
        """libvirt's data_* figures are memory and disk together."""
        for part in ("total", "processed", "remaining"):
            stats[f"data_{part}"] = stats.get(f"memory_{part}", 0) + stats.get(f"disk_{part}", 0)

    async def refresh_stats(self, stats: dict[str, Any]) -> None:
        self._record(await self._jobs(), stats)

    async def wait_ready(self, job: Any) -> None:
        """Until every mirror is READY; a mirror that fails, an abort or QEMU leaving ends it."""
        with self._mon.listener(*_JOB_EVENTS) as listener:
            while True:
                jobs = await self._jobs()
                self._record(jobs, job.stats)
                for m in self.mirrors:
                    j = jobs.get(m.job)
                    if j is None or j.get("status") == "concluded" or j.get("error"):
                        detail = (j or {}).get("error") or "the mirror job ended"
                        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                                    f"migration of disk {m.disk.target_dev} failed: {detail}")
                if all(jobs[m.job].get("ready") for m in self.mirrors):
                    log.info("%s: every disk mirror is ready (%d bytes)", self.obj.name,
                             job.stats.get("disk_total", 0))
                    self.replay(job)
                    return
                await self._next(listener, job)

    async def _next(self, listener: Any, job: Any) -> None:
        """One block-job event or job signal (or the poll interval); acts on the signals."""
        event = asyncio.ensure_future(listener.get())
        signal = asyncio.ensure_future(job.signals.get())
        try:
            done, _ = await asyncio.wait({event, signal}, timeout=_POLL_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (event, signal):
                if not task.done():
                    task.cancel()
        if signal in done:
            name, value = signal.result()
            if name == "abort":
                raise error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.QEMU, "migration out job: canceled by client")
            if name == "qemu-gone":
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                            "migration out job: QEMU exited during the migration")
            if name in ("peer-gone", "tunnel-failed"):
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "Lost connection to destination host")
            if name == "speed" and value is not None:
                self.bandwidth = int(value)
                for m in self.mirrors:
                    if m.started:
                        await self._mon.execute("block-job-set-speed", {"device": m.job,
                                                                        "speed": bandwidth_bytes(int(value))})
            if name in ("speed", "downtime"):
                self.deferred.append((name, value))   # the RAM migration's too, once it runs

    def replay(self, job: Any) -> None:
        """Give the RAM migration's loop the tuning requests that came while the disks copied."""
        for name, value in self.deferred:
            job.signal(name, value)
        self.deferred.clear()

    async def switchover(self, job: Any) -> None:
        """At the pre-switchover pause: complete every copy without pivoting (cancel, no
        force), wait for the mirrors to go, then drop the NBD client nodes."""
        mon = self._mon
        jobs = await self._jobs()
        self._record(jobs, job.stats)
        log.info("%s: switchover: completing the disk copies", self.obj.name)
        with mon.listener(*_JOB_EVENTS) as listener:
            for m in self.mirrors:
                if m.job in jobs:
                    await mon.execute("block-job-cancel", {"device": m.job, "force": False})
            while True:
                jobs = await self._jobs()
                if not jobs:
                    break
                for name, j in jobs.items():
                    if j.get("error"):
                        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                                    f"migration of disk {name} failed: {j['error']}")
                await self._next(listener, job)
        for name in [k for k in self.totals if not k.endswith("/done")]:
            self.totals[name + "/done"] = self.totals[name]       # each copy is complete now
        self._record({}, job.stats)
        for m in self.mirrors:
            m.started = False
        await self._drop_nodes()
        self.replay(job)

    async def abort(self) -> None:
        """Any failure: force-cancel what still runs and drop the NBD nodes; the source
        keeps running on its own images (which a mirror never changes)."""
        if self.obj.process is None:
            return
        mon = self.obj.process.monitor
        try:
            with mon.listener(*_JOB_EVENTS) as listener:
                for m in self.mirrors:
                    if m.started:
                        try:
                            await mon.execute("block-job-cancel", {"device": m.job, "force": True})
                        except libvirtError as exc:
                            log.debug("cancelling %s: %s", m.job, exc)
                for _ in range(30):           # bounded: each round waits for an event or a second
                    if not await self._jobs():
                        break
                    try:
                        await asyncio.wait_for(listener.get(), _POLL_SECONDS)
                    except asyncio.TimeoutError:
                        pass
        except libvirtError as exc:
            log.warning("%s: cancelling the storage mirrors: %s", self.obj.name, exc)
        for m in self.mirrors:
            m.started = False
        await self._drop_nodes()

    async def _drop_nodes(self) -> None:
        if self.obj.process is None:
            return
        for m in self.mirrors:
            if m.added:
                try:
                    await self.obj.process.monitor.execute("blockdev-del", {"node-name": m.target})
                    m.added = False
                except libvirtError as exc:
                    log.warning("%s: cannot delete NBD node %s: %s", self.obj.name, m.target, exc)


def nbd_target(uri: str | None, cookie_nbd: CookieNbd | None, disks_uri: str | None = None,
               flags: int = 0) -> NbdServer:
    """The destination's NBD server, as libvirt's qemuMigrationSrcNBDStorageCopy finds it:
    disks_uri's socket, or its host and port, falling back to the migration URI's host
    and the port Prepare sent."""
    if cookie_nbd is None:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                    "the destination did not start an NBD server for the disks (no <nbd> in its cookie)")
    host = parse_tcp_uri(uri)[0] if uri else None
    port = cookie_nbd.port or None
    if disks_uri:
        wanted = parse_disks_uri(disks_uri)
        if wanted.socket is not None:
            if flags & MigrateFlags.TLS:
                raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                            "NBD migration with TLS is not supported over UNIX socket")
            return wanted
        host, port = wanted.host or host, wanted.port or port
    if not port:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                    "the destination did not start an NBD server for the disks (no port in its cookie)")
    if not host:
        raise _invalid("no host to copy the disks to")
    return NbdServer(host=host, port=port)
