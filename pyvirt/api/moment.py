"""What libvirt-python's snapshot and checkpoint handles share (libvirt calls both a
domain "moment"): a name and a domain, and the mutually-exclusive-flags refusal
libvirt's entry points make in the same words for both."""

from __future__ import annotations

from ..errors import ErrorDomain, bare_invalid_arg

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any
    from ..connection import virConnect
    from ..domain import virDomain


def refuse_exclusive(flags: int, one: int, other: int, one_name: str, other_name: str,
                     domain: ErrorDomain) -> None:
    """libvirt's VIR_EXCLUSIVE_FLAGS_GOTO: both flags given is an invalid argument."""
    if flags & one and flags & other:
        raise bare_invalid_arg(f"Flags '{one_name}' and '{other_name}' are mutually exclusive", domain)


class DomainMoment:
    """A handle on a snapshot or checkpoint: its name and its domain (the nonnull ref)."""

    def __init__(self, dom: "virDomain", ref: Any) -> None:
        self._dom = dom
        self._ref = ref

    def _call(self, method: str, *args: Any) -> Any:
        return self._dom._conn._call(method, self._ref, *args)

    def _wrap(self, ref: Any) -> Any:
        return type(self)(self._dom, ref)

    def getName(self) -> str:
        return self._ref.name

    def getDomain(self) -> "virDomain":
        return self._dom

    def domain(self) -> "virDomain":
        return self._dom

    def getConnect(self) -> "virConnect":
        return self._dom._conn

    def connect(self) -> "virConnect":
        return self._dom._conn
