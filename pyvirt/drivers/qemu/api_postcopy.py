"""The QEMU driver's post-copy procedure (virDomainMigrateStartPostCopy).

A mixin of :class:`.connection.QemuConnection`; the work is in
:mod:`.migration.postcopy`.
"""

from __future__ import annotations

from ...errors import check_flags
from ...refs import DomainRef
from .jobs import JobKind
from .migration import postcopy


class PostcopyAPI:
    async def domain_migrate_start_post_copy(self, dom: DomainRef, flags: int) -> None:
        """Switch the running outgoing migration to post-copy (libvirt takes a
        MIGRATION_OP job for it, which a migration lets through)."""
        check_flags(flags, 0, "qemuDomainMigrateStartPostCopy")
        obj = self._active(dom)  # type: ignore[attr-defined]
        async with self.driver.job_guard(obj, JobKind.MIGRATION_OP):  # type: ignore[attr-defined]
            await postcopy.start(self.driver, self._active(dom))  # type: ignore[attr-defined]
