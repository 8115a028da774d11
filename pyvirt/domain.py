"""``virDomain``: libvirt-python's domain handle.  Delegation only.

A handle is a :class:`pyvirt.driver.DomainRef` (name, UUID, id as of the
lookup) plus its connection.  Calls that start a domain refresh the handle,
so ``ID()`` is right afterwards, as libvirt's remote client does with
LOOKUP_BY_UUID after CREATE.
"""

from __future__ import annotations

import os

from .api.console import DomainConsoleAPI
from .api.cpu_files import DomainCPUFilesAPI
from .api.devices import DomainDevicesAPI
from .api.host import DomainHostAPI
from .api.lifecycle import DomainLifecycleAPI
from .api.migration import DomainMigrationAPI
from .api.blockjob import DomainBlockJobAPI
from .api.checkpoint import DomainCheckpointAPI
from .api.sched import DomainSchedAPI
from .api.snapshot import DomainSnapshotAPI
from .api.stats import DomainStatsAPI
from .api.tuning import DomainTuningAPI
from .api.guest import DomainGuestAPI
from .refs import DomainRef, format_uuid
from .enums import TypedParamType
from .errors import libvirtError

# VIR_DOMAIN_SAVE_PARAM_*: the typed parameters of saveParams/restoreParams
SAVE_PARAM_TYPES = {"file": TypedParamType.STRING, "dxml": TypedParamType.STRING,
                    "image_format": TypedParamType.STRING,        # libvirt 11.2's VIR_DOMAIN_SAVE_PARAM_IMAGE_FORMAT
                    "pyvirt.image_compat": TypedParamType.STRING}  # pyvirt's own: who must restore the image

def _params(dxml: str | None = None, dname: str | None = None, uri: str | None = None,
            bandwidth: int = 0) -> dict[str, Any]:
    """The old positional migration arguments as VIR_MIGRATE_PARAM_* entries."""
    out: dict[str, Any] = {}
    for key, value in (("destination_xml", dxml), ("destination_name", dname), ("migrate_uri", uri)):
        if value:
            out[key] = value
    if bandwidth:
        out["bandwidth"] = bandwidth
    return out


TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any
    from .connection import virConnect


class virDomain(DomainStatsAPI, DomainHostAPI, DomainConsoleAPI, DomainDevicesAPI,  # noqa: N801
                DomainLifecycleAPI, DomainSnapshotAPI, DomainBlockJobAPI, DomainSchedAPI,
                DomainMigrationAPI, DomainTuningAPI, DomainGuestAPI, DomainCPUFilesAPI,  # libvirt-python's name
                DomainCheckpointAPI):
    def __init__(self, conn: "virConnect", ref: DomainRef) -> None:
        self._conn = conn
        self._ref = ref

    def _call(self, method: str, *args: Any) -> Any:
        return self._conn._call(method, self._ref, *args)

    def connect(self) -> "virConnect":
        return self._conn

    # -- identity ----------------------------------------------------------
    def name(self) -> str:
        return self._ref.name

    def UUID(self) -> bytes:
        return self._ref.uuid

    def UUIDString(self) -> str:
        return format_uuid(self._ref.uuid)

    def ID(self) -> int:
        return self._ref.id

    # -- lifecycle ---------------------------------------------------------
    def create(self) -> int:
        return self.createWithFlags(0)

    def createWithFlags(self, flags: int = 0) -> int:
        self._ref = self._call("domain_create_with_flags", flags)
        return 0

    def destroy(self) -> int:
        self._call("domain_destroy")
        self._ref = DomainRef(self._ref.name, self._ref.uuid, -1)
        return 0

    def destroyFlags(self, flags: int = 0) -> int:
        self._call("domain_destroy_flags", flags)
        self._ref = DomainRef(self._ref.name, self._ref.uuid, -1)
        return 0

    def suspend(self) -> int:
        self._call("domain_suspend")
        return 0

    def resume(self) -> int:
        self._call("domain_resume")
        return 0

    def shutdown(self) -> int:
        self._call("domain_shutdown")
        return 0

    def shutdownFlags(self, flags: int = 0) -> int:
        self._call("domain_shutdown_flags", flags)
        return 0

    def reboot(self, flags: int = 0) -> int:
        self._call("domain_reboot", flags)
        return 0

    def undefine(self) -> int:
        self._call("domain_undefine")
        return 0

    def undefineFlags(self, flags: int = 0) -> int:
        self._call("domain_undefine_flags", flags)
        return 0

    # -- queries ---------------------------------------------------------------
    def info(self) -> list[int]:
        return list(self._call("domain_get_info"))

    def state(self, flags: int = 0) -> list[int]:
        return list(self._call("domain_get_state", flags))

    def isActive(self) -> int:
        return self._call("domain_is_active")

    def isPersistent(self) -> int:
        return self._call("domain_is_persistent")

    def XMLDesc(self, flags: int = 0) -> str:
        return self._call("domain_get_xml_desc", flags)

    def OSType(self) -> str:
        return self._call("domain_get_os_type")

    def autostart(self) -> int:
        return self._call("domain_get_autostart")

    def setAutostart(self, autostart: int) -> int:
        self._call("domain_set_autostart", int(bool(autostart)))
        return 0

    def hasManagedSaveImage(self, flags: int = 0) -> int:
        return self._call("domain_has_managed_save_image", flags)

    # -- save ------------------------------------------------------------------
    # Paths are made absolute here, as libvirt's client library does: the daemon
    # does not share the caller's working directory.
    def save(self, to: str) -> int:
        self._call("domain_save", os.path.abspath(to))
        self._ref = DomainRef(self._ref.name, self._ref.uuid, -1)
        return 0

    def saveFlags(self, to: str, dxml: str | None = None, flags: int = 0) -> int:
        self._call("domain_save_flags", os.path.abspath(to), dxml, flags)
        self._ref = DomainRef(self._ref.name, self._ref.uuid, -1)
        return 0

    def saveParams(self, params: dict[str, Any] | None = None, flags: int = 0) -> int:
        from .typedparams import from_dict
        values = dict(params or {})
        if "file" in values:
            values["file"] = os.path.abspath(values["file"])
        self._call("domain_save_params", from_dict(values, SAVE_PARAM_TYPES), flags)
        self._ref = DomainRef(self._ref.name, self._ref.uuid, -1)
        return 0

    def managedSave(self, flags: int = 0) -> int:
        self._call("domain_managed_save", flags)
        self._ref = DomainRef(self._ref.name, self._ref.uuid, -1)
        return 0

    def managedSaveRemove(self, flags: int = 0) -> int:
        self._call("domain_managed_save_remove", flags)
        return 0

    def managedSaveGetXMLDesc(self, flags: int = 0) -> str:
        return self._call("domain_managed_save_get_xml_desc", flags)

    def managedSaveDefineXML(self, dxml: str | None, flags: int = 0) -> int:
        self._call("domain_managed_save_define_xml", dxml, flags)
        return 0

    def maxMemory(self) -> int:
        return self.info()[1]

    # -- jobs ------------------------------------------------------------------
    def jobInfo(self) -> list[int]:
        return list(self._call("domain_get_job_info"))

    def jobStats(self, flags: int = 0) -> dict[str, Any]:
        job_type, params = self._call("domain_get_job_stats", flags)
        stats: dict[str, Any] = {name: value for name, _type, value in params}
        stats["type"] = job_type
        return stats

    def abortJob(self) -> int:
        self._call("domain_abort_job")
        return 0

    def migrateSetMaxSpeed(self, bandwidth: int, flags: int = 0) -> int:
        self._call("domain_migrate_set_max_speed", bandwidth, flags)
        return 0

    def migrateGetMaxSpeed(self, flags: int = 0) -> int:
        return self._call("domain_migrate_get_max_speed", flags)

    def migrateSetMaxDowntime(self, downtime: int, flags: int = 0) -> int:
        self._call("domain_migrate_set_max_downtime", downtime, flags)
        return 0

    # libvirt-python's bindings of these two getters return None on failure instead of
    # raising (their C overrides); scripts written for it test for None, so do the same
    def migrateGetMaxDowntime(self, flags: int = 0) -> int | None:
        try:
            return self._call("domain_migrate_get_max_downtime", flags)
        except libvirtError:
            return None

    def migrateGetCompressionCache(self, flags: int = 0) -> int | None:
        try:
            return self._call("domain_migrate_get_compression_cache", flags)
        except libvirtError:
            return None

    def migrateSetCompressionCache(self, cacheSize: int, flags: int = 0) -> int:
        self._call("domain_migrate_set_compression_cache", cacheSize, flags)
        return 0

    # -- migration ---------------------------------------------------------------
    def migrate(self, dconn: "virConnect", flags: int = 0, dname: str | None = None,
                uri: str | None = None, bandwidth: int = 0) -> "virDomain":
        return self._migrate(dconn, _params(dname=dname, uri=uri, bandwidth=bandwidth), flags, "virDomainMigrate")

    def migrate2(self, dconn: "virConnect", dxml: str | None = None, flags: int = 0, dname: str | None = None,
                 uri: str | None = None, bandwidth: int = 0) -> "virDomain":
        return self._migrate(dconn, _params(dxml=dxml, dname=dname, uri=uri, bandwidth=bandwidth), flags,
                             "virDomainMigrate2")

    def migrate3(self, dconn: "virConnect", params: dict[str, Any] | None = None, flags: int = 0) -> "virDomain":
        """Client-driven migration to ``dconn`` (see :mod:`pyvirt.migration`)."""
        return self._migrate(dconn, params, flags, "virDomainMigrate3")

    def _migrate(self, dconn: "virConnect", params: dict[str, Any] | None, flags: int, api: str) -> "virDomain":
        from . import aio, migration
        ref = aio.run(migration.migrate_managed(self._conn._drv, dconn._drv, self._ref, dict(params or {}), flags,
                                                api=api))
        return virDomain(dconn, ref)

    def migrateToURI(self, duri: str, flags: int = 0, dname: str | None = None, bandwidth: int = 0) -> int:
        return self.migrateToURI3(duri, _params(dname=dname, bandwidth=bandwidth), flags)

    def migrateToURI2(self, dconnuri: str | None = None, miguri: str | None = None, dxml: str | None = None,
                      flags: int = 0, dname: str | None = None, bandwidth: int = 0) -> int:
        return self.migrateToURI3(dconnuri or "", _params(dxml=dxml, dname=dname, uri=miguri, bandwidth=bandwidth),
                                  flags)

    def migrateToURI3(self, dconnuri: str, params: dict[str, Any] | None = None, flags: int = 0) -> int:
        """Peer-to-peer migration: the source host drives it towards ``dconnuri``."""
        from . import aio, migration
        aio.run(migration.migrate_to_uri(self._conn._drv, self._ref, dconnuri, dict(params or {}), flags))
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virDomain) and other._ref.uuid == self._ref.uuid

    def __hash__(self) -> int:
        return hash(self._ref.uuid)

    def __repr__(self) -> str:
        return f"<pyvirt.virDomain {self._ref.name} {self.UUIDString()}>"
