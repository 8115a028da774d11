"""The lock daemon's engines: what actually holds a lease.

pyvirtlockd keeps the leases of one host's guests; *how* a lease is held is
a backend's business: ``files`` takes fcntl locks on files of a (shared)
directory, ``etcd`` keeps keys alive in an etcd cluster.  The daemon tells a
backend who owns what (an :class:`Owner` is one guest's QEMU process) and
drops everything an owner held when its process ends; a backend that can
*lose* a lease on its own (a lease with a TTL) reports it through
:class:`Hooks`, and the daemon fences the guest.

A backend's state is an opaque string handed back by :meth:`Backend.release`
and :meth:`Backend.inquire` and given to :meth:`Backend.acquire` on another
host (the migration cookie carries it).  Backends whose state means nothing
set ``uses_state = False`` and return None.

Backends are looked up by name (:func:`backend_class`); their modules are
imported on first use, so the daemon loads only the one it runs.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping, Protocol, Sequence

from ..errors import ErrorDomain, ErrorNumber, error


@dataclass(frozen=True, slots=True)
class Resource:
    """One lease.

    ``lockspace`` is the directory the lease lives in and ``name`` the file
    (or key) in it; an empty lockspace is a *direct* lease whose ``name`` is
    the absolute path of the file locked itself (the disk image).  ``what``
    says, for people, what the lease guards: the disk path or the
    ``<lease>``'s key.
    """

    lockspace: str
    name: str
    shared: bool = False
    autocreate: bool = False
    what: str = ""

    @property
    def path(self) -> str:
        return f"{self.lockspace}/{self.name}" if self.lockspace else self.name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Resource:
        return cls(lockspace=str(data.get("lockspace", "")), name=str(data["name"]),
                   shared=bool(data.get("shared", False)), autocreate=bool(data.get("autocreate", False)),
                   what=str(data.get("what", "")))


@dataclass(frozen=True, slots=True)
class Owner:
    """A guest's QEMU process: the leases live exactly as long as it does."""

    uuid: str
    name: str
    pid: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Owner:
        return cls(uuid=str(data["uuid"]), name=str(data["name"]), pid=int(data["pid"]))


class Hooks(Protocol):
    """What the daemon offers its backend."""

    async def lease_lost(self, owner: Owner, resources: Sequence[Resource], why: str,
                         expires_at: float | None = None) -> None:
        """The backend can no longer guarantee ``resources`` to ``owner``: the daemon
        fences the guest (pauses or kills it, as it is configured), its QEMU killed
        before ``expires_at`` (the event loop's clock) unless the leases were released."""


def resource_busy(resource: Resource) -> Exception:
    """libvirt's words for a lease another process holds, then ours naming the disk."""
    detail = f"Lockspace resource '{resource.name}' is locked"
    if resource.what and resource.what != resource.name:
        detail += f" (the lease on '{resource.what}' is held by another guest or host)"
    err = error(ErrorNumber.RESOURCE_BUSY, ErrorDomain.LOCKSPACE, detail)
    return err


class Backend(ABC):
    """A way of holding leases.  One instance per lock daemon.

    Every method may be called concurrently for different owners; one owner's
    calls come one at a time.  ``acquire`` takes all the resources or none.
    """

    name: ClassVar[str] = ""
    uses_state: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any], hooks: Hooks) -> None:
        self.options = dict(options)
        self.hooks = hooks

    async def start(self) -> None:
        """Connect to whatever holds the leases (called once, before any request)."""

    @abstractmethod
    async def acquire(self, owner: Owner, resources: Sequence[Resource], state: str | None) -> str | None:
        """Take ``resources`` for ``owner`` (those it holds already stay held).
        ``state`` is what a release on another host returned; a backend that
        uses state checks it takes over exactly those leases.  Returns the new
        state.  Busy: :func:`resource_busy`."""

    @abstractmethod
    async def release(self, owner: Owner, resources: Sequence[Resource] | None) -> str | None:
        """Let go of ``resources`` (None: all ``owner`` holds); returns the state
        that describes what was held, for an acquire elsewhere."""

    @abstractmethod
    async def inquire(self, owner: Owner) -> str | None:
        """The state of what ``owner`` holds now, without releasing it."""

    @abstractmethod
    def held(self, owner: Owner) -> list[Resource]:
        """What ``owner`` holds."""

    async def forget(self, owner: Owner) -> None:
        """``owner``'s process ended: its leases go, no state is kept."""
        await self.release(owner, None)

    async def close(self) -> None:
        """The daemon stops; what is still held goes with it."""


_REGISTRY: dict[str, type[Backend]] = {}
# where a backend's module is, so only the one the daemon runs gets imported
_MODULES = {"files": "pyvirt.lockd.files", "etcd": "pyvirt.lockd.etcd"}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend known by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def backend_class(name: str) -> type[Backend]:
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.LOCKING,
                    f"unknown lock daemon backend '{name}'") from None


def backend_names() -> list[str]:
    return sorted(set(_MODULES) | set(_REGISTRY))
