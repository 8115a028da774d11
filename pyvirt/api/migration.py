"""libvirt-python's migration-tuning methods beyond the basics (migrateStartPostCopy).

Returns are libvirt-python's: 0 on success, a libvirtError otherwise.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class DomainMigrationAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: "Callable[..., Any]"

    def migrateStartPostCopy(self, flags: int = 0) -> int:
        self._call("domain_migrate_start_post_copy", flags)
        return 0
