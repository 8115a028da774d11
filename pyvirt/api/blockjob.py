"""libvirt-python's block-job methods of virDomain: blockCopy, blockCommit, blockPull,
blockRebase, blockJobInfo, blockJobAbort, blockJobSetSpeed.

Shapes are libvirt-python's: the job calls return 0, ``blockJobInfo`` a dict
(``type``, ``bandwidth``, ``cur``, ``end``), empty when the disk has no job.
"""

from __future__ import annotations

from ..enums import TypedParamType as T

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

# virDomainBlockCopy's typed parameters (libvirt-domain.h) and their types
VIR_DOMAIN_BLOCK_COPY_BANDWIDTH = "bandwidth"
VIR_DOMAIN_BLOCK_COPY_GRANULARITY = "granularity"
VIR_DOMAIN_BLOCK_COPY_BUF_SIZE = "buf-size"
BLOCK_COPY_PARAM_TYPES = {VIR_DOMAIN_BLOCK_COPY_BANDWIDTH: T.ULLONG, VIR_DOMAIN_BLOCK_COPY_GRANULARITY: T.UINT,
                          VIR_DOMAIN_BLOCK_COPY_BUF_SIZE: T.ULLONG}


class DomainBlockJobAPI:
    _call: "Any"

    def blockCopy(self, disk: str, destxml: str, params: "dict[str, Any] | None" = None, flags: int = 0) -> int:
        from ..typedparams import from_dict
        self._call("domain_block_copy", disk, destxml, from_dict(params or {}, BLOCK_COPY_PARAM_TYPES), flags)
        return 0

    def blockCommit(self, disk: str, base: str | None, top: str | None, bandwidth: int = 0, flags: int = 0) -> int:
        self._call("domain_block_commit", disk, base, top, bandwidth, flags)
        return 0

    def blockPull(self, disk: str, bandwidth: int = 0, flags: int = 0) -> int:
        self._call("domain_block_pull", disk, bandwidth, flags)
        return 0

    def blockRebase(self, disk: str, base: str | None, bandwidth: int = 0, flags: int = 0) -> int:
        self._call("domain_block_rebase", disk, base, bandwidth, flags)
        return 0

    def blockJobInfo(self, path: str, flags: int = 0) -> "dict[str, int]":
        found, job_type, bandwidth, cur, end = self._call("domain_get_block_job_info", path, flags)
        if not found:
            return {}
        return {"type": job_type, "bandwidth": bandwidth, "cur": cur, "end": end}

    def blockJobAbort(self, disk: str, flags: int = 0) -> int:
        self._call("domain_block_job_abort", disk, flags)
        return 0

    def blockJobSetSpeed(self, disk: str, bandwidth: int, flags: int = 0) -> int:
        self._call("domain_block_job_set_speed", disk, bandwidth, flags)
        return 0
