"""Snapshot metadata of the QEMU driver's domains, kept on disk as libvirt keeps it.

One file per snapshot, ``ROOT/lib/qemu/snapshot/DOMAIN/NAME.xml`` (the
snapshot's XML with ``<active>1</active>`` on the current one), so the
snapshots, their tree and the current one survive daemon restarts.  The
files are read for every call (a domain has a handful): no cache to keep
coherent with the disk.  Writes happen under the domain's job.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from ...conf import snapshot as snapxml
from ...conf.fileutil import write_atomic
from ...conf.names import contained
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError

log = logging.getLogger(__name__)

SnapshotDef = snapxml.SnapshotDef
_UUID_RE = re.compile(r"<uuid>([^<]+)</uuid>")


def snapshot_root(root: Path) -> Path:
    return root / "lib" / "qemu" / "snapshot"


class SnapshotTree:
    """The snapshots of one domain: by name, with parent/children and the current one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.snaps: dict[str, SnapshotDef] = {}
        if directory.is_dir():
            for path in sorted(directory.glob("*.xml")):
                try:
                    snap = snapxml.parse(path.read_text(), redefine=True)
                except (libvirtError, OSError, ValueError) as exc:
                    log.error("ignoring unreadable snapshot metadata %s: %s", path, exc)
                    continue
                self.snaps[snap.name] = snap   # type: ignore[index]

    # -- queries ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.snaps)

    def __contains__(self, name: str) -> bool:
        return name in self.snaps

    def get(self, name: str) -> SnapshotDef:
        snap = self.snaps.get(name)
        if snap is None:
            raise error(ErrorNumber.NO_DOMAIN_SNAPSHOT, ErrorDomain.QEMU,
                        f"no domain snapshot with matching name '{name}'")
        return snap

    @property
    def current(self) -> SnapshotDef | None:
        return next((s for s in self.snaps.values() if s.current), None)

    def _ordered(self) -> list[SnapshotDef]:
        return sorted(self.snaps.values(), key=lambda s: (s.creation_time, s.name))

    def children(self, name: str | None) -> list[SnapshotDef]:
        """The direct children of ``name`` (None: the roots), oldest first."""
        return [s for s in self._ordered() if s.parent == name or (name is None and s.parent not in self.snaps)]

    def descendants(self, name: str | None) -> Iterator[SnapshotDef]:
        """Every snapshot under ``name`` (None: all), parents before children."""
        for kid in self.children(name):
            yield kid
            yield from self.descendants(kid.name)

    def is_leaf(self, name: str) -> bool:
        return not any(s.parent == name for s in self.snaps.values())

    # -- changes ---------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return contained(self.directory, f"{name}.xml")

    def save(self, snap: SnapshotDef) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self._path(snap.name), snap.format(internal=True))   # type: ignore[arg-type]
        self.snaps[snap.name] = snap   # type: ignore[index]

    def set_current(self, snap: SnapshotDef | None) -> None:
        """Make ``snap`` the current one (None: no current), rewriting the old current's file."""
        old = self.current
        if old is not None and (snap is None or old.name != snap.name):
            old.current = False
            self.save(old)
        if snap is not None:
            snap.current = True
            self.save(snap)

    def remove(self, name: str) -> None:
        """Forget ``name``; its children move up to its parent (libvirt's reparenting)."""
        snap = self.snaps.pop(name)
        for kid in [s for s in self.snaps.values() if s.parent == name]:
            kid.parent = snap.parent
            self.save(kid)
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            pass

    def drop_foreign(self, uuid: str) -> None:
        """Forget snapshots another domain of this name left (libvirt discards a domain's
        snapshot metadata when the domain goes: a transient one stopping, say)."""
        for snap in list(self.snaps.values()):
            found = _UUID_RE.search(snap.domain_xml or "")
            if found is not None and found.group(1).strip().lower() != uuid.lower():
                log.info("dropping snapshot %s of an earlier domain %s", snap.name, found.group(1))
                del self.snaps[snap.name]   # type: ignore[arg-type]
                try:
                    self._path(snap.name).unlink()   # type: ignore[arg-type]
                except OSError:
                    pass

    def remove_all(self) -> None:
        self.snaps.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


def tree_for(root: Path, domain_name: str) -> SnapshotTree:
    return SnapshotTree(contained(snapshot_root(root), domain_name))
