"""``--json``: machine-readable output for the commands scripts parse most.

Beyond virsh.  A command with ``--json`` is parsed by its own parser (same
options, same domain lookup) and then, instead of its table, prints one JSON
document built from the same client calls.  The keys of each document are
listed in :data:`KEYS` (the README documents them; a test checks every
document against this table), so they stay stable: keys are only ever added.

A command joins by adding a builder to :data:`BUILDERS` and its keys to
:data:`KEYS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

Builder = Callable[[Any, argparse.Namespace], Any]

# command -> (shape, {key: meaning}); shape "object", "list" (of objects) or
# "records" (a list of {"name", "stats"} objects, stats free-form typed values).
KEYS: dict[str, tuple[str, dict[str, str]]] = {
    "list": ("list", {
        "id": "domain id, null when inactive", "name": "domain name", "uuid": "domain UUID",
        "state": "state as virsh words it (running, paused, shut off, ...)",
        "state_code": "virDomainState number", "reason": "state reason as virsh words it",
        "reason_code": "reason number", "persistent": "true if defined",
    }),
    "dominfo": ("object", {
        "id": "domain id, null when inactive", "name": "domain name", "uuid": "domain UUID",
        "os_type": "OS type (hvm)", "state": "state as virsh words it", "state_code": "virDomainState number",
        "vcpus": "vCPUs", "cpu_time_ns": "CPU time used in ns, null when inactive",
        "max_memory_kib": "maximum memory, KiB", "used_memory_kib": "current memory, KiB",
        "persistent": "true if defined", "autostart": "true if started with the host",
        "managed_save": "true if a managed save image exists, null if unknown",
    }),
    "domstate": ("object", {
        "state": "state as virsh words it", "state_code": "virDomainState number",
        "reason": "reason as virsh words it", "reason_code": "reason number",
    }),
    "domstats": ("records", {
        "name": "domain name", "stats": "the typed parameters of getAllDomainStats, by field name",
    }),
    "domjobinfo": ("object", {
        "type": "job type as virsh words it (None, Unbounded, ...)", "type_code": "virDomainJobType number",
        "operation": "operation as virsh words it, null without a job",
        "stats": "the job's typed parameters (jobStats) by field name: time_elapsed, data_total, "
                 "data_processed, data_remaining, memory_*, downtime, ... (bytes, ms)",
    }),
    "nodeinfo": ("object", {
        "cpu_model": "CPU model", "cpus": "active CPUs", "mhz": "CPU frequency, MHz (0 if unknown)",
        "numa_cells": "NUMA cells", "sockets": "sockets per cell", "cores": "cores per socket",
        "threads": "threads per core", "memory_kib": "host memory, KiB",
    }),
    "pool-list": ("list", {
        "name": "pool name", "uuid": "pool UUID", "state": "state as virsh words it (inactive, building, "
        "running, degraded, inaccessible)", "state_code": "virStoragePoolState number",
        "active": "true if running", "persistent": "true if defined, null if unknown",
        "autostart": "true if started with the daemon, null if unknown",
        "capacity": "bytes, null when inactive", "allocation": "bytes, null when inactive",
        "available": "bytes, null when inactive",
    }),
    "vol-list": ("list", {
        "name": "volume name", "path": "volume path, null if unknown", "key": "volume key",
        "type": "type as virsh words it (file, block, dir, network, netdir, ploop)",
        "type_code": "virStorageVolType number", "capacity": "bytes", "allocation": "bytes",
    }),
    "net-list": ("list", {
        "name": "network name", "uuid": "network UUID", "active": "true if running",
        "persistent": "true if defined", "autostart": "true if started with the daemon, null if unknown",
        "bridge": "the network's bridge device, null if it has none",
    }),
}


def _state(state: int, reason: int) -> dict[str, Any]:
    from .domain_cmds import reason_word, state_word
    return {"state": state_word(state), "state_code": state, "reason": reason_word(state, reason),
            "reason_code": reason}


def _list(conn: Any, args: argparse.Namespace) -> Any:
    import pyvirt
    flags = pyvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
    if args.all:
        flags |= pyvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE
    elif args.inactive:
        flags = pyvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE
    doms = conn.listAllDomains(flags)
    doms.sort(key=lambda d: (d.ID() < 0, d.ID() if d.ID() >= 0 else 0, d.name()))
    out = []
    for dom in doms:
        dom_id = dom.ID()
        out.append({"id": dom_id if dom_id >= 0 else None, "name": dom.name(), "uuid": dom.UUIDString(),
                    **_state(*dom.state()), "persistent": bool(dom.isPersistent())})
    return out


def _dominfo(conn: Any, args: argparse.Namespace) -> Any:
    from pyvirt.errors import libvirtError
    from .domain_cmds import lookup, state_word
    dom = lookup(conn, args)
    state, max_mem, mem, vcpus, cpu_time = dom.info()
    dom_id = dom.ID()
    try:
        managed: bool | None = bool(dom.hasManagedSaveImage())
    except libvirtError:
        managed = None
    return {"id": dom_id if dom_id >= 0 else None, "name": dom.name(), "uuid": dom.UUIDString(),
            "os_type": dom.OSType(), "state": state_word(state), "state_code": state, "vcpus": vcpus,
            "cpu_time_ns": cpu_time if dom_id >= 0 else None, "max_memory_kib": max_mem,
            "used_memory_kib": mem, "persistent": bool(dom.isPersistent()),
            "autostart": bool(dom.autostart()), "managed_save": managed}


def _domstate(conn: Any, args: argparse.Namespace) -> Any:
    from .domain_cmds import lookup
    return _state(*lookup(conn, args).state())


def _domstats(conn: Any, args: argparse.Namespace) -> Any:
    from . import stats_cmds
    stats = sum(bit for name, bit in stats_cmds._GROUPS if getattr(args, name.replace("-", "_")))
    flags = sum(bit for name, bit in stats_cmds._LIST_FLAGS if getattr(args, name.replace("-", "_")))
    if args.domains:
        doms = [stats_cmds._lookup_any(conn, name) for name in args.domains]
        records = conn.domainListGetStats(doms, stats, flags)
    else:
        records = conn.getAllDomainStats(stats, flags)
    return [{"name": dom.name(), "stats": dict(params)} for dom, params in records]


def _domjobinfo(conn: Any, args: argparse.Namespace) -> Any:
    from .domain_cmds import lookup
    from .migrate_cmds import JOB_TYPES, OPERATIONS
    stats = dict(lookup(conn, args).jobStats(1 if args.completed else 0))
    job_type = stats.get("type", 0)
    return {"type": JOB_TYPES.get(job_type, "Unknown"), "type_code": job_type,
            "operation": OPERATIONS.get(stats.get("operation", 0), "Unknown") if job_type else None,
            "stats": stats}


def _nodeinfo(conn: Any, args: argparse.Namespace) -> Any:
    model, memory_kib, cpus, mhz, nodes, sockets, cores, threads = conn._node_info_kib()
    return {"cpu_model": model, "cpus": cpus, "mhz": mhz, "numa_cells": nodes, "sockets": sockets,
            "cores": cores, "threads": threads, "memory_kib": memory_kib}


def _net_list(conn: Any, args: argparse.Namespace) -> Any:
    from pyvirt.errors import libvirtError
    from .network_cmds import collect, list_flags
    out = []
    for net in collect(conn, list_flags(args)):
        try:
            autostart: bool | None = bool(net.autostart())
        except libvirtError:
            autostart = None
        try:
            bridge: str | None = net.bridgeName()
        except libvirtError:
            bridge = None
        out.append({"name": net.name(), "uuid": net.UUIDString(), "active": bool(net.isActive()),
                    "persistent": bool(net.isPersistent()), "autostart": autostart, "bridge": bridge})
    return out


def _pool_list(conn: Any, args: argparse.Namespace) -> Any:
    from pyvirt.errors import libvirtError
    from .storage_cmds import POOL_RUNNING, POOL_DEGRADED, POOL_STATES, collect_pools, pool_list_flags
    out = []
    for pool in collect_pools(conn, pool_list_flags(args)):
        state, capacity, allocation, available = pool.info()
        sized = state in (POOL_RUNNING, POOL_DEGRADED)
        try:
            persistent: bool | None = bool(pool.isPersistent())
        except libvirtError:
            persistent = None
        try:
            autostart: bool | None = bool(pool.autostart())
        except libvirtError:
            autostart = None
        out.append({"name": pool.name(), "uuid": pool.UUIDString(),
                    "state": POOL_STATES[state] if 0 <= state < len(POOL_STATES) else "unknown",
                    "state_code": state, "active": bool(pool.isActive()), "persistent": persistent,
                    "autostart": autostart, "capacity": capacity if sized else None,
                    "allocation": allocation if sized else None, "available": available if sized else None})
    return out


def _vol_list(conn: Any, args: argparse.Namespace) -> Any:
    from pyvirt.errors import libvirtError
    from .storage_cmds import pool_arg
    from .volume_cmds import collect_vols, vol_type_word
    out = []
    for vol in collect_vols(pool_arg(conn, args)):
        try:
            path: str | None = vol.path()
        except libvirtError:
            path = None
        kind, capacity, allocation = vol.info()
        out.append({"name": vol.name(), "path": path, "key": vol.key(), "type": vol_type_word(kind),
                    "type_code": kind, "capacity": capacity, "allocation": allocation})
    return out


BUILDERS: dict[str, Builder] = {
    "list": _list, "dominfo": _dominfo, "domstate": _domstate, "domstats": _domstats,
    "domjobinfo": _domjobinfo, "nodeinfo": _nodeinfo, "net-list": _net_list,
    "pool-list": _pool_list, "vol-list": _vol_list,
}


def strip_flag(name: str, words: list[str]) -> tuple[list[str], bool]:
    """``words`` without ``--json`` and whether it was there (only for the
    commands that have a JSON form; elsewhere the command's parser refuses it)."""
    if name not in BUILDERS or "--json" not in words[1:]:
        return words, False
    return [words[0]] + [w for w in words[1:] if w != "--json"], True


def _plain(value: Any) -> Any:
    """JSON has no bytes: typed parameters are numbers, booleans and strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def handler(name: str, _table_handler: Any = None) -> Callable[[Any, argparse.Namespace], None]:
    """The ``--json`` handler of command ``name``."""
    build = BUILDERS[name]

    def run(conn: Any, args: argparse.Namespace) -> None:
        json.dump(_plain(build(conn, args)), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    return run
