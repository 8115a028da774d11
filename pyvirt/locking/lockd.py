"""``lockd``: leases held by the host's lock daemon, as libvirt's lockd plugin.

Which leases a guest takes (libvirt's ``lock_driver_lockd.c``):

* with ``auto_disk_leases`` (on by default) one per disk with a local path:
  none for a read-only disk, a shared one for a ``<shareable/>`` disk, an
  exclusive one otherwise.  In ``lock_file_lockspace_dir`` the lease is a file
  named by the SHA-256 of the disk's path (created on demand); without that
  directory the disk image itself is locked;
* one per ``<lease>``: the file ``KEY`` in the directory
  ``TARGET_PATH/LOCKSPACE`` (which must exist; offset 0 only);
* ``require_lease_for_disks`` (default: the opposite of ``auto_disk_leases``)
  refuses a guest with read/write disks and no lease at all.

No state: a release returns none, and migration v2 works.  Subclasses use
another backend of the lock daemon (``backend``) and may name resources
their own way (:meth:`DaemonPlugin.resources`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any, Mapping

from ..errors import ErrorDomain, ErrorNumber, error
from ..lockd.backend import Owner, Resource
from . import Disk, Guest, LockPlugin, register_plugin
from .client import LockDaemonClient

log = logging.getLogger(__name__)

# what a guest that lost its lease can be made to do (<on_lockfailure>); 'restart' is not:
# a restarted guest would need the very lease that was just lost
FAILURE_ACTIONS = ("poweroff", "pause", "ignore")

SOCKET_NAME = "pyvirtlockd.sock"
LOG_NAME = "pyvirtlockd.log"


def resource_name(path: str) -> str:
    """The lease file of a disk in the lockspace directory (libvirt: SHA-256 hex of the path)."""
    return hashlib.sha256(path.encode()).hexdigest()


class DaemonPlugin(LockPlugin):
    """A plugin whose leases the lock daemon holds with ``backend``."""

    backend = "files"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = LockDaemonClient(self.run_dir / SOCKET_NAME, self.backend, self.backend_options(),
                                       self.log_dir / LOG_NAME)
        self.client.on_event = self._on_event
        self.client.on_restart = self._on_restart
        self.client.on_unreachable = self._on_unreachable
        self.client.fence_after = self.fence_after()

    def fence_after(self) -> float | None:
        """How long after the lock daemon ended the guests may run on before their leases
        are taken again (None: the client's short default, fcntl locks die with their daemon)."""
        return None

    def holds_leases(self, guest: Guest) -> bool:
        try:
            return bool(self.resources(guest))
        except Exception:
            return True

    def backend_options(self) -> dict[str, Any]:
        """What the lock daemon's backend is configured with when pyvirtd starts it."""
        return {}

    @property
    def auto_disk_leases(self) -> bool:
        return bool(self.settings.get("auto_disk_leases", 1))

    @property
    def require_lease_for_disks(self) -> bool:
        value = self.settings.get("require_lease_for_disks", -1)
        return not self.auto_disk_leases if value is None or value < 0 else bool(value)

    def disk_resource(self, path: str, shared: bool) -> Resource:
        space = self.settings.get("lock_file_lockspace_dir") or ""
        if space:
            return Resource(lockspace=space, name=resource_name(path), shared=shared, autocreate=True, what=path)
        return Resource(lockspace="", name=path, shared=shared, what=path)

    def resources(self, guest: Guest) -> list[Resource]:
        out: list[Resource] = []
        rw_disks = False
        for disk in guest.disks:
            if disk.readonly:
                continue
            if not self.auto_disk_leases:
                rw_disks = rw_disks or not disk.shareable
                continue
            out.append(self.disk_resource(disk.path, disk.shareable))
        for lease in guest.leases:
            if lease.offset != 0:
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.LOCKING,
                            "Offset must be zero for this lock manager")
            if not lease.path or not lease.lockspace:
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.LOCKING,
                            "Missing path or lockspace for lease resource")
            for what, value in (("key", lease.key), ("lockspace", lease.lockspace)):
                if "/" in value or value in (".", "..") or "\0" in value:
                    # they become a file name under the lease's target directory, nothing else
                    raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.LOCKING,
                                f"lease {what} '{value}' must be a file name (no '/')")
            out.append(Resource(lockspace=f"{lease.path}/{lease.lockspace}", name=lease.key,
                                what=f"lease {lease.lockspace}/{lease.key}"))
        if not out and rw_disks and self.require_lease_for_disks:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.LOCKING,
                        "Read/write, exclusive access, disks were present, but no leases specified")
        return out

    @staticmethod
    def owner(guest: Guest) -> dict[str, Any]:
        return Owner(guest.uuid, guest.name, guest.pid).to_json()

    async def register(self, guest: Guest) -> None:
        # a definition this plugin refuses fails before QEMU runs
        if self.resources(guest) and guest.on_lockfailure not in FAILURE_ACTIONS:
            # as libvirt's sanlock plugin: an action it cannot carry out is refused up front
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.LOCKING,
                        f"Failure action {guest.on_lockfailure} is not supported by {self.name}")
        await self.client.call("register", owner=self.owner(guest), on_lockfailure=guest.on_lockfailure)

    async def acquire(self, guest: Guest, state: str | None = None) -> None:
        resources = self.resources(guest)
        if not resources:
            return
        await self.client.call("acquire", owner=self.owner(guest), on_lockfailure=guest.on_lockfailure,
                               resources=[r.to_json() for r in resources], state=state)

    async def acquire_disk(self, guest: Guest, disk: Disk) -> None:
        resources = self.resources(dataclasses.replace(guest, disks=(disk,), leases=()))
        if resources:
            await self.client.call("acquire", owner=self.owner(guest), on_lockfailure=guest.on_lockfailure,
                                   resources=[r.to_json() for r in resources], state=None)

    async def release_disk(self, guest: Guest, disk: Disk) -> None:
        if disk.readonly or not self.auto_disk_leases:
            return
        resource = self.disk_resource(disk.path, disk.shareable)
        await self.client.call("release", owner=self.owner(guest), resources=[resource.to_json()])

    async def release(self, guest: Guest) -> str | None:
        reply = await self.client.call("release", owner=self.owner(guest))
        return reply.get("state")

    async def inquire(self, guest: Guest) -> str | None:
        reply = await self.client.call("inquire", owner=self.owner(guest))
        return reply.get("state")

    async def forget(self, guest: Guest) -> None:
        await self.client.call("drop", owner=self.owner(guest))

    async def held(self) -> list[dict[str, Any]]:
        """Every owner the lock daemon knows and what it holds (diagnostics, tests)."""
        return (await self.client.call("owners")).get("owners", [])

    async def _on_event(self, message: Mapping[str, Any]) -> None:
        if message.get("event") != "lease_lost" or self.lost_handler is None:
            return
        owner = message.get("owner") or {}
        what = ", ".join(r.get("what") or r.get("name", "") for r in message.get("resources", []))
        await self.lost_handler(str(owner.get("uuid", "")), what, str(message.get("why", "")))

    async def _on_unreachable(self, why: str) -> None:
        if self.unreachable_handler is not None:
            await self.unreachable_handler(why)

    async def _on_restart(self) -> None:
        if self.restart_handler is not None:
            await self.restart_handler()

    async def close(self) -> None:
        await self.client.close()


@register_plugin
class LockdPlugin(DaemonPlugin):
    name = "lockd"
    uses_state = False
    backend = "files"
