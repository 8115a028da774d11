"""Reboot, shutdown and reset of a running guest, as libvirt's QEMU driver does them.

A reboot through ACPI is libvirt's *fake reboot*: the guest is sent the power
button (QEMU runs with ``-no-shutdown``), and when it has powered off, instead
of ending QEMU, the driver resets the machine and starts the CPUs again, so the
guest boots afresh in the same QEMU.  As libvirt 9.0 with a QEMU that has
``set-action``, the power-off in between is not announced: the domain stays
running (its reason becomes booted) and the only event is REBOOT, from the
reset.  The intent is kept in the status XML (libvirt's ``fakereboot``), so a
daemon restarted in between still turns the power-off into a reboot.  A
domain whose ``on_reboot`` is ``destroy`` or ``preserve`` is shut down
instead, as libvirt does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...enums import DomainState, RunningReason, ShutdownFlags
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

FAKE_REBOOT = "fakereboot"       # the status XML item holding the intent
_ACPI, _AGENT = int(ShutdownFlags.ACPI_POWER_BTN), int(ShutdownFlags.GUEST_AGENT)


def wants_fake_reboot(obj: "QemuDomainObj") -> bool:
    return obj.extra.get(FAKE_REBOOT) == "1"


def set_fake_reboot(obj: "QemuDomainObj", value: bool) -> None:
    if value == wants_fake_reboot(obj):
        return
    if value:
        obj.extra[FAKE_REBOOT] = "1"
    else:
        obj.extra.pop(FAKE_REBOOT, None)
    obj.save_status()


def agent_unavailable() -> libvirtError:
    """No guest agent channel is ever configured by pyvirt (libvirt's qemuDomainAgentAvailable)."""
    return error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU, "QEMU guest agent is not configured")


async def power_button(drv: "QemuDriver", obj: "QemuDomainObj", flags: int, reboot: bool) -> None:
    """virDomainShutdownFlags / virDomainReboot once the job is held: the guest agent when
    asked for (never configured here: an error unless ACPI is allowed too), else ACPI."""
    if flags & _AGENT and not flags & _ACPI:
        raise agent_unavailable()
    if reboot and obj.current.on_reboot in ("destroy", "preserve"):
        log.info("%s: on_reboot '%s' overrides the reboot: shutting down", obj.name, obj.current.on_reboot)
        reboot = False
    assert obj.process is not None
    set_fake_reboot(obj, reboot)
    try:
        await obj.process.monitor.system_powerdown()
    except BaseException:
        set_fake_reboot(obj, False)
        raise


async def fake_reboot(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """The guest powered off after a reboot request: reset it and run it again."""
    set_fake_reboot(obj, False)
    qp = obj.process
    if qp is None:
        return
    try:
        await qp.monitor.system_reset()          # QEMU's RESET: the REBOOT event
        obj.got_shutdown = False
        # QEMU paused when the guest powered off (-no-shutdown); the domain never left
        # 'running' for libvirt, so no RESUMED either: only the reason is new
        await drv.resume_cpus(obj, RunningReason.BOOTED, event=False)
    except libvirtError as exc:
        # QEMU would stay paused with a powered-off guest: end it as the shutdown it was
        log.error("%s: fake reboot failed (%s); stopping the guest", obj.name, exc)
        if obj.process is qp and obj.state != DomainState.SHUTOFF:
            obj.got_shutdown = True
            await qp.stop(drv.cfg.stop_timeout)
