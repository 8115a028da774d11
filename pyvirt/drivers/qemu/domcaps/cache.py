"""Per-binary cache of QEMU probes, kept on disk as libvirt keeps its capabilities cache.

An entry is keyed by the binary's path and stamped with what says the binary
(or the host) changed: its mtime, ctime and size, QEMU's version, the kernel
release and the CPU's microcode.  A lookup compares the stamp with a fresh
``stat`` (cheap) and probes again only when it differs; callers that arrive
while a probe runs wait for that same probe.  The cache file is
``DIR/<sha256 of the path>.json``.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

from ....conf.fileutil import write_atomic
from ....errors import ErrorDomain, ErrorNumber, error, libvirtError
from .probe import Probe

log = logging.getLogger(__name__)

# Bump when the cached data's shape changes: old entries are then probed again.
FORMAT = 2

Prober = Callable[[str], Awaitable[Probe]]


def _microcode() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("microcode"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def stamp(path: str) -> dict[str, Any]:
    """What identifies this build of the binary on this host (libvirt's cache validity checks)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                    f"Cannot check QEMU binary {path}: {os.strerror(exc.errno or errno.ENOENT)}") from exc
    return {"format": FORMAT, "path": path, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "size": st.st_size, "kernel": os.uname().release, "microcode": _microcode()}


class CapsCache:
    def __init__(self, directory: Path, prober: Prober) -> None:
        self.directory = Path(directory)
        self._prober = prober
        self._mem: dict[str, tuple[dict[str, Any], Probe]] = {}
        self._pending: dict[str, asyncio.Future[Probe]] = {}
        self.probes = 0            # how many times QEMU was actually run (tests look)

    def file_for(self, path: str) -> Path:
        return self.directory / (hashlib.sha256(path.encode()).hexdigest() + ".json")

    async def get(self, path: str) -> Probe:
        current = stamp(path)
        held = self._mem.get(path)
        if held is not None and held[0] == current:
            return held[1]
        disk = await asyncio.to_thread(self._load, path, current)
        if disk is not None:
            self._mem[path] = (current, disk)
            return disk
        pending = self._pending.get(path)
        if pending is None:
            pending = asyncio.ensure_future(self._probe(path, current))
            self._pending[path] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(path, None))
        return await asyncio.shield(pending)

    def _load(self, path: str, current: dict[str, Any]) -> Probe | None:
        try:
            data = json.loads(self.file_for(path).read_text())
            if data.get("stamp") != current:
                return None
            return Probe.from_json(data["probe"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    async def _probe(self, path: str, current: dict[str, Any]) -> Probe:
        self.probes += 1
        probe = await self._prober(path)
        if stamp(path) != current:     # replaced while we asked it: the next call probes the new one
            return probe
        self._mem[path] = (current, probe)
        try:
            await asyncio.to_thread(self._store, path, current, probe)
        except (OSError, libvirtError) as exc:
            log.warning("cannot keep the capabilities of %s: %s", path, exc)
        return probe

    def _store(self, path: str, current: dict[str, Any], probe: Probe) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.file_for(path), json.dumps({"stamp": current, "probe": probe.to_json()}))
