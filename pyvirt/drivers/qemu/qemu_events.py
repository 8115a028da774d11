"""QEMU's own events as libvirt's domain events.

:func:`translate` turns one QMP event of a guest into the
:class:`~pyvirt.driver.DomainEvent` libvirt's QEMU driver raises for it (the
lifecycle ones, SHUTDOWN/STOP/RESUME, stay in :mod:`.driver`), with
``detail`` the event message's fields after ``dom`` (the convention of
:class:`~pyvirt.driver.DomainEvent`).  The mappings are libvirt's
(qemu_monitor_json.c / qemu_process.c): RESET → REBOOT, RTC_CHANGE,
WATCHDOG, BLOCK_IO_ERROR → IO_ERROR and IO_ERROR_REASON, VNC_* / SPICE_* →
GRAPHICS, DEVICE_TRAY_MOVED → TRAY_CHANGE, BALLOON_CHANGE (bytes → KiB),
MIGRATION_PASS → MIGRATION_ITERATION, BLOCK_JOB_* → BLOCK_JOB and
BLOCK_JOB_2.  :func:`block_job` is the emission point for the driver's own
block jobs, :func:`async_job_ended` raises JOB_COMPLETED when a migration,
save or restore ends well.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from ...driver import DomainEvent
from ...enums import (DomainState, EventID, EventSuspendedDetail, EventType, PausedReason, ShutoffReason,
                      TypedParamType)
from .jobs import ASYNC_OPERATION, AsyncJob, AsyncJobState
from .migration.convergence import stat_type

if TYPE_CHECKING:
    from ...conf.devices import Disk
    from .domainobj import QemuDomainObj

log = logging.getLogger(__name__)

# VIR_DOMAIN_EVENT_WATCHDOG_*, by QEMU's WatchdogAction
WATCHDOG_ACTIONS = {"none": 0, "pause": 1, "reset": 2, "poweroff": 3, "shutdown": 4, "debug": 5,
                    "inject-nmi": 6}
# VIR_DOMAIN_EVENT_IO_ERROR_*, by QEMU's BlockErrorAction
IO_ERROR_ACTIONS = {"ignore": 0, "stop": 1, "report": 2}
# VIR_DOMAIN_EVENT_GRAPHICS_{CONNECT,INITIALIZE,DISCONNECT}
GRAPHICS_PHASES = {"VNC_CONNECTED": 0, "VNC_INITIALIZED": 1, "VNC_DISCONNECTED": 2,
                   "SPICE_CONNECTED": 0, "SPICE_INITIALIZED": 1, "SPICE_DISCONNECTED": 2}
# VIR_DOMAIN_EVENT_GRAPHICS_ADDRESS_*
ADDRESS_FAMILIES = {"ipv4": 0, "ipv6": 1, "unix": 2}
# VIR_DOMAIN_BLOCK_JOB_TYPE_*, by QEMU's JobType
BLOCK_JOB_TYPES = {"stream": 1, "mirror": 2, "commit": 3, "active-commit": 4, "backup": 5}
# VIR_DOMAIN_BLOCK_JOB_{COMPLETED,FAILED,CANCELED,READY}
BLOCK_JOB_COMPLETED, BLOCK_JOB_FAILED, BLOCK_JOB_CANCELED, BLOCK_JOB_READY = 0, 1, 2, 3
# VIR_DOMAIN_EVENT_TRAY_CHANGE_{OPEN,CLOSE}
TRAY_OPEN, TRAY_CLOSE = 0, 1

_QOM_PERIPHERAL = "/machine/peripheral/"


def translate(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    """The domain events one QMP event of ``obj``'s QEMU raises (none for most)."""
    handler = _HANDLERS.get(name)
    if handler is None:
        return []
    try:
        return handler(obj, name, data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:   # a QEMU we do not understand
        log.warning("%s: cannot read QMP event %s %r: %s", obj.name, name, dict(data), exc)
        return []


def _event(obj: "QemuDomainObj", event_id: EventID, *detail: Any) -> DomainEvent:
    return DomainEvent(int(event_id), obj.ref(), tuple(detail))


def _reset(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    return [_event(obj, EventID.REBOOT)]


def _rtc_change(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    return [_event(obj, EventID.RTC_CHANGE, int(data["offset"]))]


def _paused_by_qemu(obj: "QemuDomainObj", reason: PausedReason, detail: EventSuspendedDetail) -> list[DomainEvent]:
    """QEMU is about to stop the CPUs itself (watchdog action pause, disk error policy stop):
    the domain is paused for that reason now, as libvirt does, and the STOP that follows
    finds it paused already."""
    if obj.state != DomainState.RUNNING or obj.expect_run_change:
        return []
    obj.set_state(DomainState.PAUSED, reason)
    return [_event(obj, EventID.LIFECYCLE, int(EventType.SUSPENDED), int(detail))]


def _watchdog(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    action = WATCHDOG_ACTIONS.get(str(data.get("action")), 0)
    out = [_event(obj, EventID.WATCHDOG, action)]
    if action == WATCHDOG_ACTIONS["pause"]:
        out += _paused_by_qemu(obj, PausedReason.WATCHDOG, EventSuspendedDetail.WATCHDOG)
    return out


def _io_error(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    disk = find_disk(obj, node=data.get("node-name"), device=data.get("device"))
    path = (disk.source or "") if disk is not None else ""
    alias = (disk.alias or "") if disk is not None else str(data.get("device") or "")
    action = IO_ERROR_ACTIONS.get(str(data.get("action")), 0)
    # libvirt names a full disk "enospc"; otherwise QEMU's text, when it gives one
    reason = "enospc" if data.get("nospace") else str(data.get("reason") or "")
    out = [_event(obj, EventID.IO_ERROR, path, alias, action),
           _event(obj, EventID.IO_ERROR_REASON, path, alias, action, reason)]
    if action == IO_ERROR_ACTIONS["stop"]:
        out += _paused_by_qemu(obj, PausedReason.IOERROR, EventSuspendedDetail.IOERROR)
    return out


def _address(info: Mapping[str, Any]) -> tuple[int, str, str]:
    service = info.get("service", info.get("port", ""))
    return ADDRESS_FAMILIES.get(str(info.get("family")), 0), str(info.get("host", "")), str(service)


def _graphics(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    server, client = data.get("server", {}), data.get("client", {})
    subject = []
    if client.get("x509_dname"):
        subject.append(("x509dname", str(client["x509_dname"])))
    if client.get("sasl_username"):
        subject.append(("saslUsername", str(client["sasl_username"])))
    auth = str(server.get("auth", "none"))
    return [_event(obj, EventID.GRAPHICS, GRAPHICS_PHASES[name], _address(server), _address(client),
                   auth, subject)]


def _tray(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    disk = find_disk(obj, device=data.get("id") or data.get("device"))
    alias = disk.alias if disk is not None and disk.alias else _qdev_id(data.get("id") or data.get("device"))
    return [_event(obj, EventID.TRAY_CHANGE, alias, TRAY_OPEN if data.get("tray-open") else TRAY_CLOSE)]


def _balloon(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    actual_kib = int(data["actual"]) // 1024
    if obj.live is not None and obj.live.current_memory_kib != actual_kib:
        obj.live.current_memory_kib = actual_kib   # the live XML's currentMemory, as libvirt keeps it
        obj.save_status()
    return [_event(obj, EventID.BALLOON_CHANGE, actual_kib)]


def _migration_pass(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    return [_event(obj, EventID.MIGRATION_ITERATION, int(data["pass"]))]


def _block_job(obj: "QemuDomainObj", name: str, data: Mapping[str, Any]) -> list[DomainEvent]:
    from . import blockjob
    if blockjob.owns(obj, data.get("device")):
        return []           # a block job of the API's: blockjob.py raises its events, as libvirt reports them
    if name == "BLOCK_JOB_READY":
        status = BLOCK_JOB_READY
    elif name == "BLOCK_JOB_CANCELLED":
        status = BLOCK_JOB_CANCELED
    elif name == "BLOCK_JOB_COMPLETED":
        status = BLOCK_JOB_FAILED if data.get("error") else BLOCK_JOB_COMPLETED
    else:     # BLOCK_JOB_ERROR: the job goes on (or stops, as its error policy says); no event
        return []
    disk = find_disk(obj, device=data.get("device"))
    if disk is None:
        return []
    return block_job(obj, disk, BLOCK_JOB_TYPES.get(str(data.get("type")), 0), status)


def block_job(obj: "QemuDomainObj", disk: "Disk", job_type: int, status: int) -> list[DomainEvent]:
    """BLOCK_JOB (by path) and BLOCK_JOB_2 (by target) for a block job of ``disk``, as libvirt
    raises both; the driver's block-job calls emit through this too."""
    return [_event(obj, EventID.BLOCK_JOB, disk.source or "", job_type, status),
            _event(obj, EventID.BLOCK_JOB_2, disk.target_dev, job_type, status)]


_HANDLERS = {
    "RESET": _reset, "RTC_CHANGE": _rtc_change, "WATCHDOG": _watchdog, "BLOCK_IO_ERROR": _io_error,
    **{name: _graphics for name in GRAPHICS_PHASES},
    "DEVICE_TRAY_MOVED": _tray, "BALLOON_CHANGE": _balloon, "MIGRATION_PASS": _migration_pass,
    "BLOCK_JOB_COMPLETED": _block_job, "BLOCK_JOB_CANCELLED": _block_job, "BLOCK_JOB_READY": _block_job,
}


def _qdev_id(ident: Any) -> str:
    text = str(ident or "")
    return text[len(_QOM_PERIPHERAL):].split("/")[0] if text.startswith(_QOM_PERIPHERAL) else text


def find_disk(obj: "QemuDomainObj", node: Any = None, device: Any = None) -> "Disk | None":
    """The live disk a QMP event names: by block node (``libvirt-N-format``/``-storage``),
    by its alias or QOM path, or by a block job named after its alias (``drive-ALIAS``)
    or, as libvirt names its blockdev jobs, after its target (``pull-vda-libvirt-1-format``)."""
    live = obj.live
    if live is None:
        return None
    disks = live.devices.disks
    if node:
        for n, disk in enumerate(disks, start=1):
            if node in (f"libvirt-{n}-format", f"libvirt-{n}-storage"):
                return disk
    ident = _qdev_id(device)
    if ident:
        for disk in disks:
            if disk.alias and ident in (disk.alias, f"drive-{disk.alias}", disk.target_dev):
                return disk
        for disk in disks:
            if f"-{disk.target_dev}-" in f"-{ident}-":
                return disk
    return None


def async_job_ended(obj: "QemuDomainObj", job: AsyncJobState) -> list[DomainEvent]:
    """JOB_COMPLETED for an asynchronous job that ended well, with its final statistics.

    Success is read from where the job left the domain, as each job ends
    differently: a save or an outgoing migration stops the guest (saved,
    migrated), an incoming migration or a restore leaves it running."""
    if job.kind is AsyncJob.SAVE:
        ok = obj.state == DomainState.SHUTOFF and obj.reason == ShutoffReason.SAVED
    elif job.kind is AsyncJob.MIGRATION_OUT:
        ok = obj.state == DomainState.SHUTOFF and obj.reason == ShutoffReason.MIGRATED
    else:
        ok = obj.active and obj.state in (DomainState.RUNNING, DomainState.PAUSED)
    if not ok:
        return []
    return [_event(obj, EventID.JOB_COMPLETED, completed_params(job))]


# The order libvirtd 9.0 lists a finished job's statistics in (the rest follow).
_STATS_ORDER = ("downtime", "setup_time", "data_total", "data_processed", "data_remaining", "memory_total",
                "memory_processed", "memory_remaining", "memory_bps", "memory_constant", "memory_normal",
                "memory_normal_bytes", "memory_dirty_rate", "memory_iteration", "memory_postcopy_requests",
                "memory_page_size")


def completed_params(job: AsyncJobState) -> list[tuple[str, int, Any]]:
    """A finished job's statistics as typed parameters (VIR_DOMAIN_JOB_*), in libvirt's order."""
    params: list[tuple[str, int, Any]] = [
        ("operation", int(TypedParamType.INT), int(ASYNC_OPERATION[job.kind])),
        ("time_elapsed", int(TypedParamType.ULLONG), int(job.stats.get("time_elapsed", job.elapsed_ms))),
    ]
    stats = {key: value for key, value in job.stats.items()
             if isinstance(value, int) and not isinstance(value, bool) and key != "time_elapsed"}
    rank = {key: n for n, key in enumerate(_STATS_ORDER)}
    params += [(key, stat_type(key), int(stats[key]))
               for key in sorted(stats, key=lambda k: rank.get(k, len(rank)))]
    return params
