"""The security-manager interface: labelling what QEMU is handed.

A manager labels the things a QEMU process may touch and puts the old
labels back when QEMU is done with them.  Descriptors and paths are
separate steps, as in libvirt's security manager:

* :meth:`SecurityManager.set_image_fd_label` labels a descriptor of guest
  *image data* handed to QEMU (a save file, or the pipe to or from a
  compression helper);
* :meth:`SecurityManager.set_tap_fd_label` labels *other* descriptors
  (network taps, sockets), which are never image data;
* :meth:`SecurityManager.set_saved_state_label` labels a save file by its
  *path*, for a QEMU that opens the file itself.  pyvirt's save and restore
  hand QEMU descriptors only, so they skip the path steps;
* :meth:`SecurityManager.set_all_label` labels every file a starting QEMU
  opens by path (disks, kernel and initrd, serial files, sockets it
  connects to) and returns a record of what it did; the record goes into
  the status XML, and :meth:`SecurityManager.restore_all_label` gives it
  back when the guest stops, also after a daemon restart;
* :meth:`SecurityManager.process_ids` is who QEMU runs as (None: as we do).

Labelling is planned from the manager's configuration and applied to one
object at a time; every "set" that changes something returns what it
replaced, so the matching "restore" can give it back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ..conf import DomainDef


@dataclass(frozen=True, slots=True)
class SavedLabel:
    """What a labelling step replaced: the owner (and, later, a context)."""

    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class ProcessIds:
    """Who a QEMU process runs as: user, group and supplementary groups."""

    uid: int
    gid: int
    groups: tuple[int, ...]


# What set_all_label did, as plain JSON-able data (kept in the status XML).
LabelRecord = Any


class SecurityManager(ABC):
    """One security driver (``none``, ``dac``)."""

    model: str = "none"
    doi: str = "0"

    @abstractmethod
    def set_image_fd_label(self, domain: DomainDef, fd: int) -> SavedLabel | None:
        """Label ``fd``, a descriptor of image data QEMU will read or write.
        Returns the label to restore afterwards, or None when there is
        nothing to give back (nothing changed, or the object is a pipe that
        goes away with QEMU)."""

    @abstractmethod
    def restore_image_fd_label(self, domain: DomainDef, fd: int, saved: SavedLabel | None) -> None:
        """Give back what :meth:`set_image_fd_label` replaced."""

    @abstractmethod
    def set_tap_fd_label(self, domain: DomainDef, fd: int) -> None:
        """Label a descriptor that is not image data (tap device, socket)."""

    @abstractmethod
    def set_saved_state_label(self, domain: DomainDef, path: str) -> SavedLabel | None:
        """Label a save file by path, for a QEMU that opens it itself."""

    @abstractmethod
    def restore_saved_state_label(self, domain: DomainDef, path: str, saved: SavedLabel | None) -> None:
        """Give back what :meth:`set_saved_state_label` replaced."""

    # -- a whole domain ------------------------------------------------------
    def set_all_label(self, domain: DomainDef) -> LabelRecord:
        """Label what QEMU opens by path for ``domain``; returns the record
        :meth:`restore_all_label` needs (None: nothing to give back).  On
        failure nothing stays labelled and the error names the path."""
        return None

    def restore_all_label(self, domain: DomainDef, record: LabelRecord) -> None:
        """Give back what :meth:`set_all_label` recorded.  Never raises:
        a file that cannot be given back is logged, the rest still are."""
        return None

    def reserve_all_label(self, domain: DomainDef, record: LabelRecord) -> None:
        """A running guest found again after a daemon restart still holds
        what ``record`` says it labelled."""
        return None

    def process_ids(self) -> ProcessIds | None:
        """The ids QEMU runs as; None keeps ours."""
        return None
