"""``etcd``: cluster-wide disk leases, held in etcd by the host's lock daemon.

The leases are those of ``lockd`` (a lease per read/write disk, shared for
``<shareable/>`` disks, one per ``<lease>``), but each is a key in etcd
(:mod:`pyvirt.lockd.etcd`), so every host that shares the storage and the
etcd cluster sees them.  The lock state is the keys' fencing tokens: it
travels in the migration cookie and the destination takes over exactly the
leases the source held, so this plugin uses state (migration protocol v2,
which has no cookie for it, is refused as libvirt refuses it for sanlock).

Settings (pyvirtd.conf): ``lock_etcd_endpoints``, ``lock_etcd_ttl``,
``lock_etcd_prefix``, ``lock_etcd_ca_file``/``_cert_file``/``_key_file``,
plus lockd's ``auto_disk_leases`` and ``require_lease_for_disks``;
``host_uuid`` names this host in the keys' values (who holds a disk).
"""

from __future__ import annotations

from typing import Any

from ..lockd.backend import Resource
from ..lockd.etcd import DEFAULT_TTL
from . import register_plugin
from .lockd import DaemonPlugin

ETCD_SETTINGS = ("lock_etcd_endpoints", "lock_etcd_ttl", "lock_etcd_prefix",
                 "lock_etcd_ca_file", "lock_etcd_cert_file", "lock_etcd_key_file")


@register_plugin
class EtcdPlugin(DaemonPlugin):
    name = "etcd"
    uses_state = True
    backend = "etcd"

    def backend_options(self) -> dict[str, Any]:
        options = {k: self.settings[k] for k in ETCD_SETTINGS if self.settings.get(k) not in (None, "")}
        host = self.settings.get("host_uuid") or self.settings.get("host")
        if host:
            options["host"] = str(host)
        return options

    def fence_after(self) -> float | None:
        # the dead lock daemon renewed its etcd lease every TTL/4: it can expire TTL - TTL/4
        # after the daemon ended at the earliest; the guests are fenced a second before that
        try:
            ttl = float(self.settings.get("lock_etcd_ttl") or DEFAULT_TTL)
        except (TypeError, ValueError):
            ttl = DEFAULT_TTL
        return max(0.5, ttl - ttl / 4 - 1.0)

    def disk_resource(self, path: str, shared: bool) -> Resource:
        # the key is the disk's path (hashed by the backend), whatever directory lockd would use
        return Resource(lockspace="", name=path, shared=shared, what=path)
