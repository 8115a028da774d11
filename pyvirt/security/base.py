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
  hand QEMU descriptors only, so they skip the path steps.

Labelling is planned from the manager's configuration and applied to one
object at a time; every "set" that changes something returns what it
replaced, so the matching "restore" can give it back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..conf import DomainDef


@dataclass(frozen=True, slots=True)
class SavedLabel:
    """What a labelling step replaced: the owner (and, later, a context)."""

    uid: int
    gid: int


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
