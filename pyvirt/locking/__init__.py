"""The lock manager: leases on a guest's disks, held while its CPUs run.

The contract is libvirt's (``lock_driver.h``): a plugin *registers* a guest's
QEMU process before its CPUs first run (QEMU starts with ``-S``), *acquires*
the guest's leases (optionally from a *state* another host handed over)
right before every ``cont``, *releases* them right after every ``stop`` and
every pause QEMU reports itself (returning a state), and *inquires* the state
of what is held.  ``uses_state`` says whether that state means anything (it
then travels in the migration cookie and migration protocol v2, which has no
cookie for it, is refused).  The QEMU driver calls these at its two CPU
points (:mod:`pyvirt.drivers.qemu.leases`).

Plugins, by the name pyvirtd.conf's ``lock_manager`` gives: ``nop`` (the
default: nothing is locked), ``lockd`` (fcntl locks held by the host's lock
daemon, :mod:`pyvirt.lockd`), ``etcd`` (cluster-wide leases in etcd, held by
the lock daemon too).  This package knows nothing of drivers: a guest is
described to it as plain data (:class:`Guest`).
"""

from __future__ import annotations

import importlib
from abc import ABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, ClassVar, Mapping

from ..errors import ErrorDomain, ErrorNumber, error


@dataclass(frozen=True, slots=True)
class Disk:
    """A disk image the guest opens (local storage only: network disks have no path to lock)."""

    path: str
    readonly: bool = False
    shareable: bool = False


@dataclass(frozen=True, slots=True)
class Lease:
    """A ``<lease>`` element: ``<lockspace>``, ``<key>``, ``<target path= offset=>``."""

    lockspace: str
    key: str
    path: str
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Guest:
    """What a plugin needs to know of a guest: who it is, its QEMU process, what it uses."""

    uuid: str
    name: str
    pid: int
    disks: tuple[Disk, ...] = ()
    leases: tuple[Lease, ...] = ()
    on_lockfailure: str = "poweroff"     # libvirt's <on_lockfailure>: poweroff, restart, pause, ignore


# Told when a plugin learns a guest lost a lease without anyone releasing it:
# (uuid, what was lost, why).  The driver fences the guest.
LostHandler = Callable[[str, str, str], Awaitable[None]]


class LockPlugin(ABC):
    """One host's lock manager.  Calls for one guest come one at a time."""

    name: ClassVar[str] = ""
    uses_state: ClassVar[bool] = False

    def __init__(self, settings: Mapping[str, Any], run_dir: Path, log_dir: Path) -> None:
        self.settings = dict(settings)
        self.run_dir, self.log_dir = Path(run_dir), Path(log_dir)
        self.lost_handler: LostHandler | None = None
        self.restart_handler: Callable[[], Awaitable[None]] | None = None
        self.unreachable_handler: Callable[[str], Awaitable[None]] | None = None

    async def register(self, guest: Guest) -> None:
        """The guest's QEMU runs, CPUs paused: its leases will be tied to that process."""

    async def acquire(self, guest: Guest, state: str | None = None) -> None:
        """Take the guest's leases before its CPUs run (``state``: what another host released)."""

    async def release(self, guest: Guest) -> str | None:
        """Let the guest's leases go after its CPUs stopped; the state of what was held."""
        return None

    async def inquire(self, guest: Guest) -> str | None:
        """The state of the leases the running guest holds."""
        return None

    async def acquire_disk(self, guest: Guest, disk: Disk) -> None:
        """A disk hot-plugged into the running guest: its lease, before QEMU opens it."""

    async def release_disk(self, guest: Guest, disk: Disk) -> None:
        """A disk unplugged from the running guest: its lease goes."""

    async def forget(self, guest: Guest) -> None:
        """The guest's QEMU ended: nothing of it is held any more."""

    async def adopt(self, guest: Guest, running: bool) -> None:
        """A restarted daemon found the guest running (or paused): register it
        again, and if its CPUs run, make sure its leases are held."""
        await self.register(guest)
        if running:
            await self.acquire(guest)

    def set_lost_handler(self, handler: LostHandler) -> None:
        self.lost_handler = handler

    def set_restart_handler(self, handler: Callable[[], Awaitable[None]]) -> None:
        """Told when every lease of the host was lost at once (the lock daemon ended):
        the driver adopts its running guests again (:meth:`adopt`)."""
        self.restart_handler = handler

    def set_unreachable_handler(self, handler: Callable[[str], Awaitable[None]]) -> None:
        """Told (why) when the leases of the running guests can no longer be held: no lock
        daemon can be had again, or not in time.  The driver fences the guests that hold
        leases (:meth:`holds_leases`) as their <on_lockfailure> says."""
        self.unreachable_handler = handler

    def holds_leases(self, guest: Guest) -> bool:
        """Whether the guest's CPUs running means this plugin holds leases for it."""
        return False

    async def close(self) -> None:
        """The daemon stops managing; held leases stay with their guests."""


NAMES = ("nop", "lockd", "etcd")
_MODULES = {"nop": "pyvirt.locking.nop", "lockd": "pyvirt.locking.lockd", "etcd": "pyvirt.locking.etcd"}
_PLUGINS: dict[str, type[LockPlugin]] = {}


def register_plugin(cls: type[LockPlugin]) -> type[LockPlugin]:
    _PLUGINS[cls.name] = cls
    return cls


def plugin_class(name: str) -> type[LockPlugin]:
    if name not in _PLUGINS and name in _MODULES:
        importlib.import_module(_MODULES[name])
    try:
        return _PLUGINS[name]
    except KeyError:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.LOCKING,
                    f"lock manager '{name}' is not one of: {', '.join(NAMES)}") from None


def new_manager(name: str = "nop", settings: Mapping[str, Any] | None = None,
                run_dir: Path | str = ".", log_dir: Path | str = ".") -> LockPlugin:
    """The plugin pyvirtd.conf's ``lock_manager`` names, with the lock settings
    (``auto_disk_leases``, ``require_lease_for_disks``, ``lock_file_lockspace_dir``,
    ``lock_etcd_*``...); ``run_dir`` holds the lock daemon's socket."""
    return plugin_class(name)(settings or {}, Path(run_dir), Path(log_dir))
