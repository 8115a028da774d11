"""The QEMU driver's block-job procedures (virDomainBlockCopy, BlockCommit, BlockPull,
BlockRebase, GetBlockJobInfo, BlockJobSetSpeed, BlockJobAbort).

A mixin of :class:`.connection.QemuConnection`: flags, units and arguments are
checked as libvirt's API and QEMU driver check them; the work is in
:mod:`.blockjob`, under the domain's MODIFY job (a QUERY job for the info).
"""

from __future__ import annotations

import os
from typing import Any

from ...conf.xmlutil import parse_document
from ...enums import TypedParamType as T
from ...enums_more import (BlockCommitFlags as Commit, BlockCopyFlags as Copy, BlockJobAbortFlags as Abort,
                           BlockJobInfoFlags, BlockJobSpeedFlags, BlockPullFlags, BlockRebaseFlags as Rebase)
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef
from . import blockjob
from .jobs import JobKind

_COPY_FLAGS = int(Copy.SHALLOW | Copy.REUSE_EXT | Copy.TRANSIENT_JOB | Copy.SYNCHRONOUS_WRITES)
_REBASE_FLAGS = int(Rebase.SHALLOW | Rebase.REUSE_EXT | Rebase.COPY_RAW | Rebase.COPY | Rebase.RELATIVE
                    | Rebase.COPY_DEV | Rebase.BANDWIDTH_BYTES)
_COMMIT_FLAGS = int(Commit.SHALLOW | Commit.DELETE | Commit.ACTIVE | Commit.RELATIVE | Commit.BANDWIDTH_BYTES)
# virDomainBlockCopy's typed parameters and their types
_COPY_PARAMS = {"bandwidth": T.ULLONG, "granularity": T.UINT, "buf-size": T.ULLONG}
_MAX_MIB = (2**64 - 1) >> 20


def _invalid(text: str) -> Exception:
    return error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, text)


def _bytes(bandwidth: int, in_bytes: bool) -> int:
    """libvirt's bandwidth argument (MiB/s unless the flag says bytes/s) → bytes/s."""
    if in_bytes:
        return bandwidth
    if bandwidth > _MAX_MIB:
        raise error(ErrorNumber.OVERFLOW, ErrorDomain.QEMU, f"bandwidth must be less than {_MAX_MIB + 1}")
    return bandwidth << 20


def _owner(drv: Any) -> tuple[int, int] | None:
    ids = drv.security.process_ids()
    return (ids.uid, ids.gid) if ids is not None and os.geteuid() == 0 else None


def _copy_target(destxml: str) -> blockjob.CopyTarget:
    """The <disk> of virDomainBlockCopy: its source and format (file or block)."""
    node = parse_document(destxml, "disk", "(disk_definition)")   # libvirt's virDomainDiskDefParseSource
    kind = node.get("type", "file")
    if kind not in ("file", "block"):
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU, f"unsupported disk type '{kind}' for block copy")
    src = node.find("source")
    path = src.get("file" if kind == "file" else "dev") if src is not None else None
    if not path:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN, "missing source for the block copy destination")
    drv = node.find("driver")
    return blockjob.CopyTarget(path, drv.get("type") if drv is not None else None, kind)


def _absolute(path: str) -> str:
    if not os.path.isabs(path) or "\0" in path:
        raise _invalid(f"block copy destination '{path}' must be an absolute path")
    return path


class BlockJobAPI:
    driver: Any
    _active: Any

    async def domain_block_copy(self, dom: DomainRef, path: str, destxml: str, params: list, flags: int) -> None:
        check_flags(flags, _COPY_FLAGS, "qemuDomainBlockCopy")
        values: dict[str, int] = {}
        for name, ptype, value in params:
            want = _COPY_PARAMS.get(name)
            if want is None:
                raise _invalid(f"parameter '{name}' not supported")
            if int(ptype) != int(want):
                raise _invalid(f"invalid type for parameter '{name}': expected {want.name.lower()}")
            values[name] = int(value)
        gran = values.get("granularity", 0)
        if gran and (gran & (gran - 1) or not 512 <= gran <= 64 << 20):
            raise _invalid("granularity must be power of 2")
        target = _copy_target(destxml)
        _absolute(target.path)
        await self._copy(dom, path, target, flags & Copy.SHALLOW, flags & Copy.REUSE_EXT,
                         flags & Copy.SYNCHRONOUS_WRITES, values.get("bandwidth", 0), gran, values.get("buf-size", 0))

    async def _copy(self, dom: DomainRef, path: str, target: blockjob.CopyTarget, shallow: int, reuse: int,
                    sync_writes: int, bandwidth: int, granularity: int, buf_size: int) -> None:
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            obj = self._active(dom)
            disk = blockjob.find_disk(obj, path)
            await blockjob.copy(self.driver, obj, disk, target, shallow=bool(shallow), reuse=bool(reuse),
                                sync_writes=bool(sync_writes), bandwidth=bandwidth, granularity=granularity,
                                buf_size=buf_size, owner=_owner(self.driver))

    async def domain_block_rebase(self, dom: DomainRef, path: str, base: str | None, bandwidth: int,
                                  flags: int) -> None:
        check_flags(flags, _REBASE_FLAGS, "qemuDomainBlockRebase")
        speed = _bytes(bandwidth, bool(flags & Rebase.BANDWIDTH_BYTES))
        if flags & Rebase.COPY:
            if not base:
                raise _invalid("destination of the block copy is required")
            if flags & Rebase.RELATIVE:
                raise _invalid("relative backing during copy not supported yet")
            fmt = "raw" if flags & Rebase.COPY_RAW else None
            target = blockjob.CopyTarget(_absolute(base), fmt, "block" if flags & Rebase.COPY_DEV else "file")
            await self._copy(dom, path, target, flags & Rebase.SHALLOW, flags & Rebase.REUSE_EXT, 0, speed, 0, 0)
            return
        if flags & (Rebase.SHALLOW | Rebase.REUSE_EXT | Rebase.COPY_RAW | Rebase.COPY_DEV):
            raise _invalid("flags other than 'relative' and 'bandwidth bytes' need VIR_DOMAIN_BLOCK_REBASE_COPY")
        await self._pull(dom, path, base, speed)

    async def domain_block_pull(self, dom: DomainRef, path: str, bandwidth: int, flags: int) -> None:
        check_flags(flags, int(BlockPullFlags.BANDWIDTH_BYTES), "qemuDomainBlockPull")
        await self._pull(dom, path, None, _bytes(bandwidth, bool(flags & BlockPullFlags.BANDWIDTH_BYTES)))

    async def _pull(self, dom: DomainRef, path: str, base: str | None, speed: int) -> None:
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            obj = self._active(dom)
            await blockjob.pull(self.driver, obj, blockjob.find_disk(obj, path), base, bandwidth=speed)

    async def domain_block_commit(self, dom: DomainRef, disk: str, base: str | None, top: str | None,
                                  bandwidth: int, flags: int) -> None:
        check_flags(flags, _COMMIT_FLAGS, "qemuDomainBlockCommit")
        if flags & Commit.DELETE:
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                        "deletion of committed images is not supported")
        speed = _bytes(bandwidth, bool(flags & Commit.BANDWIDTH_BYTES))
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            obj = self._active(dom)
            await blockjob.commit(self.driver, obj, blockjob.find_disk(obj, disk), base or None, top or None,
                                  shallow=bool(flags & Commit.SHALLOW), active=bool(flags & Commit.ACTIVE),
                                  bandwidth=speed)

    async def domain_get_block_job_info(self, dom: DomainRef, path: str, flags: int) -> tuple[int, int, int, int, int]:
        check_flags(flags, int(BlockJobInfoFlags.BANDWIDTH_BYTES), "qemuDomainGetBlockJobInfo")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.QUERY):
            obj = self._active(dom)
            found = await blockjob.info(obj, blockjob.find_disk(obj, path))
        if found is None:
            return 0, 0, 0, 0, 0
        job_type, speed, cur, end, _ready = found
        if not flags & BlockJobInfoFlags.BANDWIDTH_BYTES:
            speed >>= 20
        return 1, job_type, speed, cur, end

    async def domain_block_job_set_speed(self, dom: DomainRef, path: str, bandwidth: int, flags: int) -> None:
        check_flags(flags, int(BlockJobSpeedFlags.BANDWIDTH_BYTES), "qemuDomainBlockJobSetSpeed")
        speed = _bytes(bandwidth, bool(flags & BlockJobSpeedFlags.BANDWIDTH_BYTES))
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            obj = self._active(dom)
            await blockjob.set_speed(obj, blockjob.find_disk(obj, path), speed)

    async def domain_block_job_abort(self, dom: DomainRef, path: str, flags: int) -> None:
        check_flags(flags, int(Abort.ASYNC | Abort.PIVOT), "qemuDomainBlockJobAbort")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            obj = self._active(dom)
            disk = blockjob.find_disk(obj, path)
            await blockjob.abort(obj, disk, pivot=bool(flags & Abort.PIVOT), wait=False)
            job = blockjob.job_for(obj, disk)
        if job is not None and not flags & Abort.ASYNC:
            await job.done.wait()      # synchronous: return once QEMU has ended it (outside the job)
