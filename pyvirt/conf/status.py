"""Status XML: what a daemon needs to pick a running domain up again.

Shaped like libvirt's ``<domstatus>`` file::

    <domstatus state='running' reason='booted' pid='1234'>
      <monitor path='/run/qemu/demo.qmp' type='unix'/>
      <job type='none' async='migration out' phase='perform3' wasRunning='yes'/>
      <lockstate>STATE</lockstate>
      <pyvirt>
        <item name='seclabels' value='...'/>
      </pyvirt>
      <domain type='kvm' id='1'>
        ...
      </domain>
    </domstatus>

State and reason use libvirt's spellings (:data:`pyvirt.enums.STATE_NAMES`,
:data:`pyvirt.enums.REASON_NAMES`).  The live domain is written with its
secrets and live state, since the daemon must restore both.  ``<job>`` is
the asynchronous job a restarted daemon must resolve (:class:`JobRecord`),
with libvirt's names for the job and its migration phase
(``qemuDomainObjPrivateXMLFormatJob``); ``wasRunning`` is ours: whether the
guest ran before the job, so recovery knows whether to resume it.
``<lockstate>`` is the lock manager's state from its last release (libvirt's
element), which the next acquire starts from.
``extra`` is a free-form string map for other driver bookkeeping (what the
security driver relabelled); the ``<pyvirt>`` element keeps it apart from
libvirt's names.

Loading is tolerant of older files: a missing reason reads as 'unknown',
missing ``<monitor>``, ``<job>`` or ``<pyvirt>`` as none, unknown elements are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from lxml import etree

from ..enums import REASON_NAMES, DomainState, reason_from_name, reason_name, state_from_name, state_name
from .devices import FormatFlags
from .domain import DomainDef, from_element
from .xmlutil import Node, child, child_text, children, el, int_attr, parse_document, render, xml_detail

__all__ = ["AsyncJobType", "DomainStatus", "JobPhase", "JobRecord", "parse_status", "STATUS_HEADER"]

# Our own words, in the place where libvirt puts its do-not-edit warning.
STATUS_HEADER = """<!--
WARNING: THIS FILE IS GENERATED. pyvirt rewrites it whenever the state of
this running domain changes, so any edit here will be lost or, worse, will
confuse the daemon when it reconnects to the domain. Change the domain with
virsh or another client of the libvirt API instead.
-->

"""

MONITOR_TYPE = "unix"
# We record asynchronous jobs only; libvirt's sync job slot is always 'none' here.
SYNC_JOB = "none"


class AsyncJobType(Enum):
    """libvirt's names (virDomainAsyncJob) for the asynchronous jobs a status file records.
    A restore runs as libvirt's 'start' job."""

    MIGRATION_OUT = "migration out"
    MIGRATION_IN = "migration in"
    SAVE = "save"
    START = "start"


class JobPhase(Enum):
    """libvirt's migration job phases (qemuMigrationJobPhase), in protocol order."""

    NONE = "none"
    PERFORM2 = "perform2"
    BEGIN3 = "begin3"
    PERFORM3 = "perform3"
    PERFORM3_DONE = "perform3_done"
    CONFIRM3_CANCELLED = "confirm3_cancelled"
    CONFIRM3 = "confirm3"
    PREPARE = "prepare"
    FINISH2 = "finish2"
    FINISH3 = "finish3"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """An asynchronous job in progress, as far as a restarted daemon must know it."""

    job: AsyncJobType
    phase: JobPhase = JobPhase.NONE
    was_running: bool = False        # the guest's CPUs ran before the job began

    def __post_init__(self) -> None:
        object.__setattr__(self, "job", AsyncJobType(self.job))
        object.__setattr__(self, "phase", JobPhase(self.phase))

    def to_node(self) -> Node:
        return el("job", [("type", SYNC_JOB), ("async", self.job.value),
                          ("phase", self.phase.value if self.phase is not JobPhase.NONE else None),
                          ("wasRunning", "yes" if self.was_running else None)])


@dataclass(slots=True)
class DomainStatus:
    state: DomainState
    reason: int
    pid: int
    monitor_path: str | None
    domain: DomainDef
    extra: dict[str, str] = field(default_factory=dict)
    job: JobRecord | None = None
    lockstate: str | None = None

    def __post_init__(self) -> None:
        self.state = DomainState(self.state)
        if not 0 <= self.reason < len(REASON_NAMES[self.state]):
            raise ValueError(f"reason {self.reason} is not valid for state {state_name(self.state)}")
        if self.pid < 0:
            raise ValueError(f"invalid pid {self.pid}")

    def format(self) -> str:
        monitor = (el("monitor", [("path", self.monitor_path), ("type", MONITOR_TYPE)])
                   if self.monitor_path else None)
        extra = (el("pyvirt", (), [el("item", [("name", k), ("value", v)]) for k, v in self.extra.items()])
                 if self.extra else None)
        node = el("domstatus", [("state", state_name(self.state)),
                                ("reason", reason_name(self.state, self.reason)),
                                ("pid", self.pid)], [
            monitor,
            self.job.to_node() if self.job is not None else None,
            el("lockstate", text=self.lockstate) if self.lockstate else None,
            extra,
            self.domain.to_node(FormatFlags(secure=True, inactive=False)),
        ])
        return STATUS_HEADER + render(node)


def parse_status(xml: str | bytes) -> DomainStatus:
    root = parse_document(xml, "domstatus", "(domain_status)")
    try:
        state = state_from_name(root.get("state", ""))
        reason = reason_from_name(state, root.get("reason", "unknown"))
    except ValueError as exc:
        raise xml_detail(f"status XML: {exc}") from exc
    pid = int_attr(root, "pid", minimum=0)
    if pid is None:
        raise xml_detail("status XML: <domstatus> has no pid attribute")
    monitor = child(root, "monitor")
    job = _job(child(root, "job"))
    extra = _extra(root)
    domain = child(root, "domain")
    if domain is None:
        raise xml_detail("status XML: <domstatus> has no <domain> element")
    return DomainStatus(
        state=state, reason=reason, pid=pid,
        monitor_path=(monitor.get("path") or None) if monitor is not None else None,
        domain=from_element(domain),
        extra=extra,
        job=job,
        lockstate=child_text(root, "lockstate") or None,
    )


def _job(node: etree._Element | None) -> JobRecord | None:
    if node is None or node.get("async", "none") == "none":
        return None
    try:
        job = AsyncJobType(node.get("async"))
    except ValueError:
        raise xml_detail(f"status XML: unknown async job '{node.get('async')}'") from None
    try:
        phase = JobPhase(node.get("phase", "none"))
    except ValueError:
        raise xml_detail(f"status XML: unknown job phase '{node.get('phase')}'") from None
    running = node.get("wasRunning", "no")
    if running not in ("yes", "no"):
        raise xml_detail(f"status XML: invalid value '{running}' for wasRunning: expected yes or no")
    return JobRecord(job, phase, running == "yes")


def _extra(root: etree._Element) -> dict[str, str]:
    block = child(root, "pyvirt")
    items: dict[str, str] = {}
    for item in children(block, "item") if block is not None else ():
        name = item.get("name")
        if not name:
            raise xml_detail("status XML: <pyvirt><item> has no name attribute")
        items[name] = item.get("value", "")
    return items
