"""``--json``: machine-readable output for the commands scripts parse most.

Beyond virsh.  A command with ``--json`` is parsed by its own parser (same
options, same domain lookup) and then, instead of its table, prints one JSON
document built from the same client calls.  The keys of each document are
listed in :data:`KEYS` (the README documents them; a test checks every
document against this table), so they stay stable: keys are only ever added.

A command joins by adding a builder to :data:`BUILDERS` and its keys to
:data:`KEYS` (pool-list, vol-list and net-list will, once those commands
exist).
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
    from .host_cmds import _memory_kib
    model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
    return {"cpu_model": model, "cpus": cpus, "mhz": mhz, "numa_cells": nodes, "sockets": sockets,
            "cores": cores, "threads": threads, "memory_kib": _memory_kib(conn, memory_mib)}


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


BUILDERS: dict[str, Builder] = {
    "list": _list, "dominfo": _dominfo, "domstate": _domstate, "domstats": _domstats,
    "domjobinfo": _domjobinfo, "nodeinfo": _nodeinfo, "net-list": _net_list,
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
