"""The ``none`` security driver: labels nothing, restores nothing."""

from __future__ import annotations

from ..conf import DomainDef
from .base import SavedLabel, SecurityManager


class NopSecurityManager(SecurityManager):
    model = "none"

    def set_image_fd_label(self, domain: DomainDef, fd: int) -> SavedLabel | None:
        return None

    def restore_image_fd_label(self, domain: DomainDef, fd: int, saved: SavedLabel | None) -> None:
        return None

    def set_tap_fd_label(self, domain: DomainDef, fd: int) -> None:
        return None

    def set_saved_state_label(self, domain: DomainDef, path: str) -> SavedLabel | None:
        return None

    def restore_saved_state_label(self, domain: DomainDef, path: str, saved: SavedLabel | None) -> None:
        return None
