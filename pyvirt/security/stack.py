"""Security drivers stacked: DAC first, the others (SELinux, AppArmor) on top.

Every step runs through the drivers in order and is undone in reverse, as
in libvirt's stacked manager: a later driver's label is laid over the file
the DAC driver has already given to QEMU's user, and taken off before that
user gives it back.  The record of a whole-domain labelling holds one entry
per driver model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from ..conf import DomainDef
from .base import LabelRecord, ProcessIds, SecurityManager

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StackedLabel:
    """What each driver replaced on one descriptor or save file, in stack order."""

    labels: tuple[Any, ...]


class SecurityStack(SecurityManager):
    def __init__(self, managers: Sequence[SecurityManager]) -> None:
        if not managers:
            raise ValueError("a security stack needs at least one driver")
        self.managers = tuple(managers)

    @property
    def primary(self) -> SecurityManager:
        return self.managers[0]

    @property
    def model(self) -> str:          # type: ignore[override]
        return self.primary.model

    @property
    def doi(self) -> str:            # type: ignore[override]
        return self.primary.doi

    def find(self, model: str) -> SecurityManager | None:
        return next((m for m in self.managers if m.model == model), None)

    # -- a whole domain ------------------------------------------------------
    def set_all_label(self, domain: DomainDef) -> LabelRecord:
        done: dict[str, Any] = {}
        try:
            for mgr in self.managers:
                record = mgr.set_all_label(domain)
                if record is not None:
                    done[mgr.model] = record
        except BaseException:
            self.restore_all_label(domain, done)
            raise
        return done or None

    def restore_all_label(self, domain: DomainDef, record: LabelRecord) -> None:
        if not isinstance(record, dict):
            return
        for mgr in reversed(self.managers):
            if mgr.model in record:
                mgr.restore_all_label(domain, record[mgr.model])

    def reserve_all_label(self, domain: DomainDef, record: LabelRecord) -> None:
        if not isinstance(record, dict):
            return
        for mgr in self.managers:
            if mgr.model in record:
                mgr.reserve_all_label(domain, record[mgr.model])

    def process_ids(self) -> ProcessIds | None:
        return next((ids for ids in (m.process_ids() for m in self.managers) if ids is not None), None)

    # -- descriptors and save files ------------------------------------------
    def set_image_fd_label(self, domain: DomainDef, fd: int) -> Any:
        return self._set_each(lambda m: m.set_image_fd_label(domain, fd),
                              lambda m, saved: m.restore_image_fd_label(domain, fd, saved))

    def restore_image_fd_label(self, domain: DomainDef, fd: int, saved: Any) -> None:
        self._restore_each(saved, lambda m, one: m.restore_image_fd_label(domain, fd, one))

    def set_tap_fd_label(self, domain: DomainDef, fd: int) -> None:
        for mgr in self.managers:
            mgr.set_tap_fd_label(domain, fd)

    def set_saved_state_label(self, domain: DomainDef, path: str) -> Any:
        return self._set_each(lambda m: m.set_saved_state_label(domain, path),
                              lambda m, saved: m.restore_saved_state_label(domain, path, saved))

    def restore_saved_state_label(self, domain: DomainDef, path: str, saved: Any) -> None:
        self._restore_each(saved, lambda m, one: m.restore_saved_state_label(domain, path, one))

    def _set_each(self, apply, undo) -> StackedLabel | None:
        labels: list[Any] = []
        try:
            for mgr in self.managers:
                labels.append(apply(mgr))
        except BaseException:
            for mgr, saved in reversed(list(zip(self.managers, labels))):
                try:
                    undo(mgr, saved)
                except Exception:     # the first error is the one to report
                    log.exception("cannot undo a %s label", mgr.model)
            raise
        return StackedLabel(tuple(labels)) if any(x is not None for x in labels) else None

    def _restore_each(self, saved: Any, undo) -> None:
        if saved is None:
            return
        labels = saved.labels if isinstance(saved, StackedLabel) else (saved,)
        for mgr, one in reversed(list(zip(self.managers, labels))):
            undo(mgr, one)
