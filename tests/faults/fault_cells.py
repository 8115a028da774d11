"""The fault matrix: flows × faults × phases, which cells apply, and what each may end in.

A *phase* is a hook point of pyvirt.testhooks, reached by the daemon that
runs that step (Begin, Perform and Confirm on the source, Prepare and Finish
on the destination, in every flow: a peer-to-peer source daemon runs the
source steps itself and calls the destination's).  A *fault* is injected
while that daemon waits at the point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

FLOWS = {                      # name: (protocol the daemons offer, virsh migrate options)
    "client-v3": ("v3", []),
    "client-v2": ("v2", []),
    "p2p-v3": ("v3", ["--p2p"]),
    "p2p-v2": ("v2", ["--p2p"]),
    "tunnelled": ("v3", ["--p2p", "--tunnelled"]),
}
PHASES = ["begin", "prepare", "perform-early", "perform-late", "finish", "confirm"]
FAULTS = ["src-daemon-kill", "src-daemon-term", "src-daemon-restart",
          "dst-daemon-kill", "dst-daemon-term", "dst-daemon-restart",
          "src-qemu-kill", "dst-qemu-kill", "client-kill", "link-cut"]
# the daemon standing at each point
SOURCE_POINTS = {"begin", "perform-early", "perform-late", "confirm"}

# Representative cells for `make test`: every fault kind and every flow at least once.
BOUNDED = {
    ("client-v3", "src-daemon-kill", "perform-late"),
    ("client-v3", "dst-daemon-term", "prepare"),
    ("client-v3", "link-cut", "perform-late"),
    ("client-v3", "link-cut", "finish"),         # the destination must not resume: two copies ran
    ("p2p-v2", "dst-daemon-restart", "finish"),  # a p2p Finish2 is not "the only copy"
    ("client-v2", "dst-qemu-kill", "perform-late"),
    ("client-v2", "client-kill", "prepare"),
    ("p2p-v3", "dst-daemon-kill", "perform-late"),
    ("p2p-v3", "src-daemon-restart", "perform-early"),
    ("p2p-v2", "src-qemu-kill", "perform-early"),
    ("p2p-v2", "dst-daemon-restart", "perform-late"),
    ("tunnelled", "link-cut", "perform-late"),
    ("tunnelled", "src-daemon-term", "confirm"),
}


# Cells that fail because of a daemon bug, with what is seen (strict xfails: a fix makes them fail
# until removed from here).
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Cell:
    flow: str
    fault: str
    phase: str

    @property
    def id(self) -> str:
        return f"{self.flow}:{self.fault}:{self.phase}"

    @property
    def proto(self) -> str:
        return FLOWS[self.flow][0]

    @property
    def virsh_options(self) -> list[str]:
        return FLOWS[self.flow][1]

    @property
    def at_source(self) -> bool:
        return self.phase in SOURCE_POINTS

    def known_bug(self) -> str | None:
        return KNOWN_BUGS.get((self.flow, self.fault, self.phase))

    def not_applicable(self) -> str | None:
        """Why this cell cannot happen, or None."""
        v2 = self.proto == "v2"
        if v2 and self.phase == "begin":
            return "migration protocol v2 has no Begin step"
        if self.flow == "client-v2" and self.phase == "confirm":
            return "client-driven v2 has no Confirm: the source is stopped inside Perform"
        if self.flow == "client-v2" and self.fault == "src-qemu-kill" and self.phase == "finish":
            return "client-driven v2: Perform already stopped the source QEMU before Finish"
        if self.fault == "dst-qemu-kill" and self.phase == "begin":
            return "no destination QEMU exists before Prepare"
        if self.fault == "dst-qemu-kill" and self.phase == "confirm":
            return "after Finish the destination QEMU is the only running copy: killing it is a guest crash"
        return None

    def allowed_running(self) -> set[int]:
        """How many copies may run their CPUs once everything settled."""
        if self.fault == "src-qemu-kill" and self.phase not in ("finish", "confirm"):
            return {0, 1}      # the source was the only copy with the guest's state, or the move completed
        if self.flow == "client-v2" and (self.fault.startswith("dst-daemon") or (
                self.phase == "finish" and self.fault in ("dst-qemu-kill", "client-kill", "link-cut"))):
            # v2's known hole (libvirt's too): a successful Perform stops the source, so a
            # destination daemon gone before Finish2 (its successor kills the half-migrated
            # guest), or a destination or client lost at Finish2, loses the guest.
            return {0, 1}
        return {1}

    def may_leave_source_paused(self) -> bool:
        """A source daemon stopped once the data was sent comes back with the guest paused
        (libvirt's perform3_done recovery: it cannot know whether the destination runs it);
        if the destination did not finish either, no copy runs until the administrator
        resumes the source."""
        return self.fault.startswith("src-daemon") and self.phase in ("perform-late", "finish", "confirm")


def all_cells() -> list[Cell]:
    return [Cell(f, fault, p) for f in FLOWS for fault in FAULTS for p in PHASES]


def selected_cells() -> list[Cell]:
    """The whole matrix with PYVIRT_FAULTS=all (``make faults``), else the bounded set."""
    if os.environ.get("PYVIRT_FAULTS") == "all":
        return all_cells()
    return [c for c in all_cells() if (c.flow, c.fault, c.phase) in BOUNDED]
