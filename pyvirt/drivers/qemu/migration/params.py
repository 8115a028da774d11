"""Migration parameters: typed parameters ↔ one request, flags, URIs, units.

The three generations of libvirt's migration calls (v2, v3, v3 with typed
parameters) all end up as one :class:`MigrationRequest`, so the source and
destination code is written once.  Tables, not branches: :data:`PARAMS`
says each typed parameter's wire type and where it lands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from ....enums import MigrateFlags, TypedParamType as T
from ....typedparams import MIGRATION_PARAM_TYPES
from ....errors import ErrorDomain, ErrorNumber, error
from . import convergence

# libvirt's "unlimited" migration speed (MiB/s), reported when none was set.
BANDWIDTH_UNLIMITED_MIB = 8796093022207
_MIB = 1 << 20

# typed parameter name -> MigrationRequest attribute (types: pyvirt.typedparams)
_ATTRS: dict[str, str] = {
    "migrate_uri": "uri", "destination_name": "dname", "destination_xml": "dest_xml",
    "persistent_xml": "persistent_xml", "bandwidth": "bandwidth", "graphics_uri": "graphics_uri",
    "listen_address": "listen_address", "migrate_disks": "migrate_disks", "disks_port": "disks_port",
    "disks_uri": "disks_uri",
    "compression": "compression", "auto_converge.initial": "auto_converge_initial",
    "auto_converge.increment": "auto_converge_increment", "bandwidth.postcopy": "bandwidth_postcopy",
    "parallel.connections": "parallel_connections", "tls.destination": "tls_destination",
    "compression.xbzrle.cache": "xbzrle_cache", "compression.mt.level": "mt_level",
    "compression.mt.threads": "mt_threads", "compression.mt.dthreads": "mt_dthreads",
    "pyvirt.converge": "converge",
}
PARAMS: dict[str, tuple[T, str]] = {name: (MIGRATION_PARAM_TYPES[name], attr) for name, attr in _ATTRS.items()}
# Parameters we accept but do not act on are refused when asked for, rather
# than silently ignored: a caller asking for them expects their effect.
UNSUPPORTED = {"graphics_uri"}
# Parameters that may be given more than once (each value one entry).
REPEATED = {"migrate_disks", "compression"}

# Flags the QEMU driver supports for migration.
SUPPORTED_FLAGS = (MigrateFlags.LIVE | MigrateFlags.PEER2PEER | MigrateFlags.TUNNELLED
                   | MigrateFlags.PERSIST_DEST | MigrateFlags.UNDEFINE_SOURCE | MigrateFlags.PAUSED
                   | MigrateFlags.CHANGE_PROTECTION | MigrateFlags.UNSAFE | MigrateFlags.ABORT_ON_ERROR
                   | MigrateFlags.AUTO_CONVERGE | MigrateFlags.TLS
                   | MigrateFlags.NON_SHARED_DISK | MigrateFlags.NON_SHARED_INC
                   | MigrateFlags.NON_SHARED_SYNCHRONOUS_WRITES
                   | MigrateFlags.POSTCOPY | MigrateFlags.PARALLEL | MigrateFlags.COMPRESSED
                   | MigrateFlags.ZEROCOPY)


@dataclass
class MigrationRequest:
    flags: int = 0
    uri: str | None = None                # QEMU migration URI (tcp:host:port)
    dname: str | None = None
    dest_xml: str | None = None
    persistent_xml: str | None = None
    bandwidth: int = 0                    # MiB/s; 0 = unlimited
    graphics_uri: str | None = None
    listen_address: str | None = None
    migrate_disks: list[str] = field(default_factory=list)
    disks_port: int = 0
    disks_uri: str | None = None
    compression: list[str] = field(default_factory=list)    # methods: xbzrle, mt
    xbzrle_cache: int | None = None       # bytes
    mt_level: int | None = None
    mt_threads: int | None = None
    mt_dthreads: int | None = None
    converge: int | None = None           # pyvirt's convergence policy: 1 on, 0 off, None = daemon default
    auto_converge_initial: int | None = None
    auto_converge_increment: int | None = None
    bandwidth_postcopy: int = 0
    parallel_connections: int | None = None
    tls_destination: str | None = None    # the name the destination's certificate must carry

    @property
    def live(self) -> bool:
        return bool(self.flags & MigrateFlags.LIVE)

    def has(self, flag: MigrateFlags) -> bool:
        return bool(self.flags & flag)


def check_flags(flags: int, function: str) -> None:
    unknown = flags & ~int(SUPPORTED_FLAGS)
    if unknown:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"unsupported flags (0x{unknown:x}) in function {function}")
    if flags & MigrateFlags.TUNNELLED and not flags & MigrateFlags.PEER2PEER:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    "tunnelled migration requires peer-to-peer migration (VIR_MIGRATE_PEER2PEER)")
    convergence.check_flags(flags)


def from_params(params: Iterable[tuple[str, int, Any]], flags: int) -> MigrationRequest:
    """Typed parameters (as decoded from the wire) → request; unknown names are refused."""
    req = MigrationRequest(flags=flags)
    for name, ptype, value in params:
        spec = PARAMS.get(name)
        if spec is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"parameter '{name}' not supported")
        want, attr = spec
        if int(ptype) != want:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"invalid type for parameter '{name}': expected {want.name.lower()}")
        if name in UNSUPPORTED:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                        f"migration parameter '{name}' is not supported by pyvirt")
        if name in REPEATED:
            getattr(req, attr).append(value)
        else:
            setattr(req, attr, value)
    convergence.check_params(req, source=False)   # tuning without its feature, unknown compression methods
    return req


def to_params(req: MigrationRequest, names: Iterable[str] | None = None) -> list[tuple[str, int, Any]]:
    """Request → typed parameters (only those that are set)."""
    out: list[tuple[str, int, Any]] = []
    for name, (ptype, attr) in PARAMS.items():
        if names is not None and name not in names:
            continue
        value = getattr(req, attr)
        if value in (None, 0, []) or name in UNSUPPORTED:
            continue
        # a repeated parameter (migrate_disks) is one entry per value, as libvirt sends it
        out += [(name, int(ptype), v) for v in (value if isinstance(value, list) else [value])]
    return out


_TCP_URI = re.compile(r"^tcp:(?://)?(?P<host>\[[^\]]+\]|[^:/]*)(?::(?P<port>\d+))?/?$")


def parse_tcp_uri(uri: str) -> tuple[str | None, int | None]:
    """``tcp:host:port`` or ``tcp://host:port`` (libvirt accepts both) → (host, port)."""
    m = _TCP_URI.match(uri)
    if not m:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"unsupported migration URI '{uri}': expected tcp:HOST:PORT or tcp://HOST:PORT")
    host = m["host"].strip("[]") or None
    return host, int(m["port"]) if m["port"] else None


def qemu_tcp_uri(host: str, port: int) -> str:
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


def bandwidth_bytes(mib_per_s: int) -> int:
    """libvirt's MiB/s (0 = unlimited) → QEMU's max-bandwidth in bytes/s."""
    if mib_per_s <= 0 or mib_per_s >= BANDWIDTH_UNLIMITED_MIB:
        return BANDWIDTH_UNLIMITED_MIB * _MIB
    return mib_per_s * _MIB


# query-migrate → libvirt job-stat names (the ones virsh domjobinfo prints).
def job_stats(info: dict[str, Any]) -> dict[str, int]:
    ram = info.get("ram", {})
    stats = {
        "data_total": ram.get("total", 0), "data_processed": ram.get("transferred", 0),
        "data_remaining": ram.get("remaining", 0),
        "memory_total": ram.get("total", 0), "memory_processed": ram.get("transferred", 0),
        "memory_remaining": ram.get("remaining", 0),
        "memory_bps": int(ram.get("mbps", 0) * 1_000_000 / 8),
        "memory_constant": ram.get("duplicate", 0), "memory_normal": ram.get("normal", 0),
        "memory_normal_bytes": ram.get("normal-bytes", 0),
        "memory_dirty_rate": ram.get("dirty-pages-rate", 0),
        "memory_iteration": ram.get("dirty-sync-count", 0),
        "memory_page_size": ram.get("page-size", 4096),
    }
    for src, dst in (("total-time", "time_elapsed"), ("setup-time", "setup_time"),
                     ("downtime", "downtime")):
        if src in info:
            stats[dst] = int(info[src])
    if "downtime" not in stats and "expected-downtime" in info:   # still running: QEMU's estimate
        stats["downtime"] = int(info["expected-downtime"])
    stats.update(convergence.extra_stats(info))    # throttle, post-copy requests, xbzrle figures
    return stats
