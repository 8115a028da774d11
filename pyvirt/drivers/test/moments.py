"""What the test host's snapshots and checkpoints share: libvirt's moment lists
(virdomainmomentobjlist.c, whose errors come from VIR_FROM_DOMAIN)."""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import ErrorDomain, ErrorNumber, error


def check_cycles(name: str, parent: str | None, parents: Mapping[str, str | None]) -> None:
    """virDomainMomentCheckCycles, with its words: a redefined moment ``name`` may not be
    its own parent, its parent must exist, and it may not become its own ancestor.
    ``parents``: each moment of the domain's list -> its parent (None for a root)."""
    if parent is None:
        return
    if parent == name:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, f"cannot set moment {name} as its own parent")
    if parent not in parents:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, f"parent {parent} for moment {name} not found")
    other: str | None = parent
    while other is not None and parents.get(other):
        if parents[other] == name:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                        f"parent {other} would create cycle to {name}")
        other = parents[other]
