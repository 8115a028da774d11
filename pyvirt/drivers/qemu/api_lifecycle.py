"""The QEMU driver's procedures for lifecycle and metadata (reboot, reset, shutdown, metadata).

A mixin of :class:`.connection.QemuConnection`: methods check flags, find the
domain (``self._obj``/``self._active``), take the right job and call into the
driver, as the core methods there do.  The work is in :mod:`.reboot` and
:mod:`pyvirt.conf.metadata`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...conf import metadata as metadata_xml
from ...driver import DomainEvent
from ...enums import EventID, ShutdownFlags
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef
from ..domainlist import not_running
from . import reboot
from .jobs import JobKind

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

# VIR_DOMAIN_AFFECT_*
AFFECT_LIVE, AFFECT_CONFIG = 1, 2
_POWER_FLAGS = int(ShutdownFlags.ACPI_POWER_BTN | ShutdownFlags.GUEST_AGENT)


class LifecycleAPI:
    driver: "QemuDriver"
    _obj: Any
    _active: Any

    async def domain_shutdown_flags(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, _POWER_FLAGS, "qemuDomainShutdownFlags")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            await reboot.power_button(self.driver, _still_running(obj), flags, reboot=False)

    async def domain_reboot(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, _POWER_FLAGS, "qemuDomainReboot")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            await reboot.power_button(self.driver, _still_running(obj), flags, reboot=True)

    async def domain_reset(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, 0, "qemuDomainReset")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            await _still_running(obj).process.monitor.system_reset()   # QEMU's RESET: event REBOOT

    async def domain_get_metadata(self, dom: DomainRef, type: int, uri: str | None, flags: int) -> str:
        check_flags(flags, AFFECT_LIVE | AFFECT_CONFIG, "qemuDomainGetMetadata")
        if flags & AFFECT_LIVE and flags & AFFECT_CONFIG:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                        "Flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive")
        obj = self._obj(dom)
        live, config = _impact(obj, flags)
        return metadata_xml.get_metadata(obj.live if live else obj.definition, type, uri)

    async def domain_set_metadata(self, dom: DomainRef, type: int, metadata: str | None, key: str | None,
                                  uri: str | None, flags: int) -> None:
        check_flags(flags, AFFECT_LIVE | AFFECT_CONFIG, "qemuDomainSetMetadata")
        metadata_xml.check_arguments(type, metadata, key, uri)
        obj = self._obj(dom)
        drv = self.driver
        async with drv.job_guard(obj, JobKind.MODIFY):
            live, config = _impact(obj, flags)
            # Tried on a copy first: bad element XML changes neither definition.
            metadata_xml.set_metadata(obj.current.copy(), type, metadata, key, uri)
            if live:
                metadata_xml.set_metadata(obj.live, type, metadata, key, uri)
                obj.save_status()
            if config:
                previous = obj.definition.copy()
                metadata_xml.set_metadata(obj.definition, type, metadata, key, uri)
                try:
                    drv.save_config(obj)
                except OSError as exc:
                    obj.definition = previous
                    raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                                f"cannot save the definition of '{obj.name}': {exc.strerror}") from exc
        nsuri = uri if type == metadata_xml.ELEMENT else None
        drv.events.emit(DomainEvent(int(EventID.METADATA_CHANGE), obj.ref(), (type, nsuri)))


def _still_running(obj: "QemuDomainObj") -> "QemuDomainObj":
    """Checked again once the job is held: the guest may have stopped meanwhile."""
    if not obj.active or obj.process is None:
        raise not_running(obj)
    return obj


def _impact(obj: "QemuDomainObj", flags: int) -> tuple[bool, bool]:
    """Which definitions a call with AFFECT_* ``flags`` touches (libvirt's
    virDomainObjUpdateModificationImpact): (live, config)."""
    live, config = bool(flags & AFFECT_LIVE), bool(flags & AFFECT_CONFIG)
    if not live and not config:          # AFFECT_CURRENT
        live, config = obj.active, not obj.active
    if live and not obj.active:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")
    if config and not obj.persistent:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN,
                    "transient domains do not have any persistent config")
    return live, config
