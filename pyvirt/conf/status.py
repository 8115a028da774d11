"""Status XML: what a daemon needs to pick a running domain up again.

Shaped like libvirt's ``<domstatus>`` file::

    <domstatus state='running' reason='booted' pid='1234'>
      <monitor path='/run/qemu/demo.qmp' type='unix'/>
      <pyvirt>
        <item name='job_phase' value='perform3'/>
      </pyvirt>
      <domain type='kvm' id='1'>
        ...
      </domain>
    </domstatus>

State and reason use libvirt's spellings (:data:`pyvirt.enums.STATE_NAMES`,
:data:`pyvirt.enums.REASON_NAMES`).  The live domain is written with its
secrets and live state, since the daemon must restore both.  ``extra`` is a
free-form string map for driver bookkeeping (job phase, autodestroy owner,
start time); the ``<pyvirt>`` element keeps it apart from libvirt's names.

Loading is tolerant of older files: a missing reason reads as 'unknown',
missing ``<monitor>`` or ``<pyvirt>`` as none, unknown elements are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from ..enums import REASON_NAMES, DomainState, reason_from_name, reason_name, state_from_name, state_name
from .devices import FormatFlags
from .domain import DomainDef, from_element
from .xmlutil import child, children, el, int_attr, parse_document, render, xml_detail

__all__ = ["DomainStatus", "parse_status", "STATUS_HEADER"]

# Our own words, in the place where libvirt puts its do-not-edit warning.
STATUS_HEADER = """<!--
WARNING: THIS FILE IS GENERATED. pyvirt rewrites it whenever the state of
this running domain changes, so any edit here will be lost or, worse, will
confuse the daemon when it reconnects to the domain. Change the domain with
virsh or another client of the libvirt API instead.
-->

"""

MONITOR_TYPE = "unix"


@dataclass(slots=True)
class DomainStatus:
    state: DomainState
    reason: int
    pid: int
    monitor_path: str | None
    domain: DomainDef
    extra: dict[str, str] = field(default_factory=dict)

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
            extra,
            self.domain.to_node(FormatFlags(secure=True, inactive=False)),
        ])
        return STATUS_HEADER + render(node)


def parse_status(xml: str | bytes) -> DomainStatus:
    root = parse_document(xml, "domstatus", "domain_status")
    try:
        state = state_from_name(root.get("state", ""))
        reason = reason_from_name(state, root.get("reason", "unknown"))
    except ValueError as exc:
        raise xml_detail(f"status XML: {exc}") from exc
    pid = int_attr(root, "pid", minimum=0)
    if pid is None:
        raise xml_detail("status XML: <domstatus> has no pid attribute")
    monitor = child(root, "monitor")
    extra = _extra(root)
    domain = child(root, "domain")
    if domain is None:
        raise xml_detail("status XML: <domstatus> has no <domain> element")
    return DomainStatus(
        state=state, reason=reason, pid=pid,
        monitor_path=(monitor.get("path") or None) if monitor is not None else None,
        domain=from_element(domain),
        extra=extra,
    )


def _extra(root: etree._Element) -> dict[str, str]:
    block = child(root, "pyvirt")
    items: dict[str, str] = {}
    for item in children(block, "item") if block is not None else ():
        name = item.get("name")
        if not name:
            raise xml_detail("status XML: <pyvirt><item> has no name attribute")
        items[name] = item.get("value", "")
    return items
