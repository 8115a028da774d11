"""Convergence tools of a migration: flags and typed parameters → QEMU capabilities and parameters.

libvirt's mapping (qemu_migration_params.c), kept as tables:

==========================  =======================  ===========================  =======
flag / typed parameter      QEMU capability          QEMU parameter               side
==========================  =======================  ===========================  =======
AUTO_CONVERGE               auto-converge                                         source
auto_converge.initial/incr                           cpu-throttle-initial/-incr.  source
POSTCOPY                    postcopy-ram                                          both
bandwidth.postcopy (MiB/s)                           max-postcopy-bandwidth (B/s) both
PARALLEL                    multifd                                               both
parallel.connections                                 multifd-channels             both
compression=xbzrle          xbzrle                                                both
compression.xbzrle.cache                             xbzrle-cache-size            both
compression=mt              compress                                              both
compression.mt.*                                     compress-level/-threads,     both
                                                     decompress-threads
ZEROCOPY                    zero-copy-send                                        source
not TUNNELLED               return-path                                           both
==========================  =======================  ===========================  =======

Every capability set for a migration is switched off again when it ends
(as libvirt's qemuMigrationParamsReset), so a later save, which also runs
through QEMU's migration, never inherits post-copy or multifd.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....enums import MigrateFlags, TypedParamType as T
from ....errors import ErrorDomain, ErrorNumber, error
from . import zerocopy

if TYPE_CHECKING:
    from .params import MigrationRequest

COMPRESSION_METHODS = {"xbzrle": "xbzrle", "mt": "compress"}      # libvirt's name -> QEMU capability
# Every capability a migration may switch on (reset to off when it ends).
MIGRATION_CAPS = ("auto-converge", "postcopy-ram", "multifd", "xbzrle", "compress", "zero-copy-send",
                  "return-path")
_MIB = 1 << 20


def _invalid(text: str) -> Exception:
    return error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, text)


def check_flags(flags: int) -> None:
    """The refusals libvirt's Begin makes (qemuMigrationSrcBeginPhase) and its
    public API (TUNNELLED and PARALLEL exclusive), word for word."""
    if flags & MigrateFlags.TUNNELLED and flags & MigrateFlags.PARALLEL:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                    "Flags 'VIR_MIGRATE_TUNNELLED' and 'VIR_MIGRATE_PARALLEL' are mutually exclusive")
    if flags & MigrateFlags.POSTCOPY and (not flags & MigrateFlags.LIVE or flags & MigrateFlags.PAUSED):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    "post-copy migration is not supported with non-live or paused migration")
    if flags & MigrateFlags.POSTCOPY and flags & MigrateFlags.TUNNELLED:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    "post-copy is not supported with tunnelled migration")
    zerocopy.check_flags(flags)


def check_params(req: "MigrationRequest", source: bool = True) -> None:
    """libvirt's qemuMigrationParamsFromFlags checks: tuning needs the feature turned on.
    (auto-converge is the source's alone: the destination is never told of the flag.)"""
    flags = req.flags
    if source and (req.auto_converge_initial is not None or req.auto_converge_increment is not None) \
            and not flags & MigrateFlags.AUTO_CONVERGE:
        raise _invalid("Turn auto convergence on to tune it")
    if req.parallel_connections is not None and not flags & MigrateFlags.PARALLEL:
        raise _invalid("Turn parallel migration on to tune it")
    methods = compression_methods(req)
    if (req.mt_level is not None or req.mt_threads is not None or req.mt_dthreads is not None) \
            and "mt" not in methods:
        raise _invalid("Turn multithread compression on to tune it")
    if req.xbzrle_cache is not None and "xbzrle" not in methods:
        raise _invalid("Turn xbzrle compression on to tune it")


def compression_methods(req: "MigrationRequest") -> list[str]:
    """The methods asked for (xbzrle when COMPRESSED names none, as libvirt), each checked."""
    seen: list[str] = []
    for method in req.compression:
        if method not in COMPRESSION_METHODS:
            raise _invalid(f"Unsupported compression method '{method}'")
        if method in seen:
            raise _invalid(f"Compression method '{method}' is specified twice")
        seen.append(method)
    if not seen and req.flags & MigrateFlags.COMPRESSED:
        seen.append("xbzrle")
    return seen


def capabilities(req: "MigrationRequest", source: bool) -> dict[str, bool]:
    """The capabilities one side's QEMU gets for this migration (all of ours, on or off)."""
    flags = req.flags
    on = {
        "auto-converge": source and bool(flags & MigrateFlags.AUTO_CONVERGE),
        "postcopy-ram": bool(flags & MigrateFlags.POSTCOPY),
        "multifd": bool(flags & MigrateFlags.PARALLEL),
        "zero-copy-send": source and bool(flags & MigrateFlags.ZEROCOPY),
        # post-copy's page requests travel back on it; a tunnel has no way back
        "return-path": bool(flags & MigrateFlags.POSTCOPY) and not flags & MigrateFlags.TUNNELLED,
    }
    methods = compression_methods(req)
    for method, cap in COMPRESSION_METHODS.items():
        on[cap] = method in methods
    return on


def parameters(req: "MigrationRequest", source: bool) -> dict[str, Any]:
    """QEMU migration parameters for one side (only those the request sets)."""
    out: dict[str, Any] = {}
    if source and req.auto_converge_initial is not None:
        out["cpu-throttle-initial"] = req.auto_converge_initial
    if source and req.auto_converge_increment is not None:
        out["cpu-throttle-increment"] = req.auto_converge_increment
    if req.bandwidth_postcopy:
        if req.bandwidth_postcopy > (2**64 - 1) // _MIB:
            raise error(ErrorNumber.OVERFLOW, ErrorDomain.QEMU,
                        f"migration parameter 'bandwidth.postcopy' must be less than {(2**64 - 1) // _MIB + 1}")
        out["max-postcopy-bandwidth"] = req.bandwidth_postcopy * _MIB
    if req.parallel_connections is not None:
        out["multifd-channels"] = req.parallel_connections
    if req.xbzrle_cache is not None:
        out["xbzrle-cache-size"] = req.xbzrle_cache
    for attr, name in (("mt_level", "compress-level"), ("mt_threads", "compress-threads"),
                       ("mt_dthreads", "decompress-threads")):
        if getattr(req, attr) is not None:
            out[name] = getattr(req, attr)
    return out


async def apply(mon: Any, req: "MigrationRequest", source: bool, always: dict[str, bool],
                extra: dict[str, Any] | None = None) -> None:
    """Switch this migration's capabilities (plus ``always``: events, late-block-activate, ...)
    and parameters on in one side's QEMU, before the migration starts.  ``extra``
    parameters (the convergence policy's) come first: the caller's own win."""
    check_params(req, source)
    caps = capabilities(req, source)
    await check_supported(mon, [cap for cap, on in caps.items() if on])
    for cap, state in always.items():
        caps[cap] = caps.get(cap, False) or state
    await mon.migrate_set_capabilities(caps)
    params = dict(extra or {})
    params.update(parameters(req, source))
    if params:
        await mon.execute("migrate-set-parameters", params)


async def check_supported(mon: Any, wanted: list[str]) -> None:
    """libvirt's qemuMigrationParamsCheck: a feature asked for that this QEMU lacks is
    refused by name before anything is set (zero-copy-send exists only in Linux builds)."""
    if not wanted:
        return
    known = {c.get("capability") for c in await mon.execute("query-migrate-capabilities")}
    for cap in wanted:
        if cap not in known:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                        f"Migration option '{cap}' is not supported by QEMU binary")


async def reset_quietly(mon: Any) -> None:
    """Every convergence capability off again after a failed migration (a later save
    must not inherit them); a QEMU that cannot answer any more changes nothing."""
    try:
        await mon.migrate_set_capabilities({cap: False for cap in MIGRATION_CAPS})
    except Exception:
        pass


# Typed parameters Perform may carry beyond Begin's (virsh sends them to both).
_MERGED = ("compression", "xbzrle_cache", "mt_level", "mt_threads", "mt_dthreads", "auto_converge_initial",
           "auto_converge_increment", "bandwidth_postcopy", "parallel_connections", "converge")


def merge(into: "MigrationRequest", later: "MigrationRequest") -> None:
    for attr in _MERGED:
        value = getattr(later, attr)
        if value is not None and value != [] and (value != 0 or attr == "converge"):
            setattr(into, attr, value)


# query-migrate figures beyond RAM's basic ones, under libvirt's job-stat names.
def extra_stats(info: dict[str, Any]) -> dict[str, int]:
    stats: dict[str, int] = {}
    ram = info.get("ram", {})
    if "postcopy-requests" in ram:
        stats["memory_postcopy_requests"] = int(ram["postcopy-requests"])
    if "cpu-throttle-percentage" in info:
        stats["auto_converge_throttle"] = int(info["cpu-throttle-percentage"])
    cache = info.get("xbzrle-cache")
    if cache:
        for src, dst in (("cache-size", "compression_cache"), ("bytes", "compression_bytes"),
                         ("pages", "compression_pages"), ("cache-miss", "compression_cache_misses"),
                         ("overflow", "compression_overflow")):
            if src in cache:
                stats[dst] = int(cache[src])
    return stats


# Job statistics libvirt types as INT (the rest are ULLONG); virsh reads them so.
_INT_STATS = {"operation", "auto_converge_throttle"}


def stat_type(name: str) -> int:
    return int(T.INT if name in _INT_STATS else T.ULLONG)
