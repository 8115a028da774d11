"""``<clock>``'s timers and ``<pm>``: guest-visible platform details virt-install writes.

A guest defined by virt-install has ``<timer name='rtc' tickpolicy='catchup'/>``,
``<timer name='pit' tickpolicy='delay'/>``, ``<timer name='hpet' present='no'/>``
and ``<pm>`` with both suspend states off.  Each changes the machine the guest
sees (an HPET or not, the ACPI S3/S4 states), so a guest that moves must keep
them: they are parsed, formatted as libvirt does, ABI-checked, and turned into
QEMU options by the command builder.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from .xmlutil import Node, check_choice, child, el

TIMER_NAMES = ("platform", "pit", "rtc", "hpet", "tsc", "kvmclock", "hypervclock", "armvtimer")
TICK_POLICIES = ("delay", "catchup", "merge", "discard")
TIMER_TRACKS = ("boot", "guest", "wall", "realtime")
YES_NO = ("yes", "no")
PM_STATES = ("suspend-to-mem", "suspend-to-disk")


@dataclass(slots=True, frozen=True)
class Timer:
    name: str
    present: str | None = None        # yes | no
    tickpolicy: str | None = None
    track: str | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> Timer:
        get = node.get
        return cls(check_choice(get("name", ""), TIMER_NAMES, "timer name"),
                   check_choice(get("present"), YES_NO, "timer present") if get("present") else None,
                   check_choice(get("tickpolicy"), TICK_POLICIES, "timer tickpolicy") if get("tickpolicy") else None,
                   check_choice(get("track"), TIMER_TRACKS, "timer track") if get("track") else None)

    def to_node(self) -> Node:
        return el("timer", [("name", self.name), ("present", self.present), ("tickpolicy", self.tickpolicy),
                            ("track", self.track)])


def timers_of(clock: etree._Element | None) -> list[Timer]:
    return [Timer.from_xml(n) for n in clock.findall("timer")] if clock is not None else []


def pm_of(node: etree._Element | None) -> dict[str, str]:
    """``<pm>``: state -> 'yes' | 'no', for the states given."""
    found: dict[str, str] = {}
    for state in PM_STATES:
        sub = child(node, state) if node is not None else None
        if sub is not None and sub.get("enabled"):
            found[state] = check_choice(sub.get("enabled"), YES_NO, f"{state} enabled")
    return found


def pm_node(pm: dict[str, str]) -> Node | None:
    if not pm:
        return None
    return el("pm", (), [el(state, [("enabled", pm[state])]) for state in PM_STATES if state in pm])
