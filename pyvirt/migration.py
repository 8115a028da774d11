"""Client-driven ("managed") migration: the client calls each step on the right host.

Which protocol to speak is decided as libvirt 9.0's client decides it
(``libvirt-wire.md`` §2.3): v3 with typed parameters when both hosts
advertise it, else plain v3, else v2.  The rule of the whole sequence is
that **the first error is the one reported**: an error in Perform is not
overwritten by Finish or Confirm, an error in Finish not by Confirm; later
errors are logged.  Which copy runs afterwards is the drivers' business
(Finish kills a destination it could not start, Confirm resumes a source
whose destination failed).
"""

from __future__ import annotations

import logging
from typing import Any

from . import typedparams
from .driver import DomainRef, HypervisorConnection
from .enums import DomainState, DriverFeature, MigrateFlags, XMLFlags
from .errors import ErrorDomain, ErrorNumber, FirstError, error, libvirtError

log = logging.getLogger(__name__)

# Without typed-parameter procedures, only these parameters can be expressed.
PLAIN_PARAMS = {"migrate_uri", "destination_name", "destination_xml", "bandwidth"}
# Flags a destination is not told about (libvirt's client strips them).
SOURCE_ONLY_FLAGS = MigrateFlags.ABORT_ON_ERROR | MigrateFlags.AUTO_CONVERGE


async def _feature(conn: HypervisorConnection, feature: DriverFeature) -> bool:
    try:
        return bool(await conn.connect_supports_feature(int(feature)))
    except libvirtError:
        return False


async def migrate_managed(src: HypervisorConnection, dst: HypervisorConnection, dom: DomainRef,
                          params: dict[str, Any], flags: int) -> DomainRef:
    """Migrate ``dom`` from ``src`` to ``dst``; return the domain on ``dst``."""
    if flags & (MigrateFlags.PEER2PEER | MigrateFlags.TUNNELLED):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                    "use migrateToURI* for peer-to-peer and tunnelled migration")
    flags &= ~MigrateFlags.CHANGE_PROTECTION
    typed = typedparams.from_dict(params, typedparams.MIGRATION_PARAM_TYPES)   # validates names and types
    if await _feature(src, DriverFeature.MIGRATION_PARAMS) and await _feature(dst, DriverFeature.MIGRATION_PARAMS):
        return await _v3(src, dst, dom, params, typed, flags, use_params=True)
    extra = set(params) - PLAIN_PARAMS
    if extra:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                    f"migration parameters {sorted(extra)} need the typed-parameter migration API, "
                    "which one of the hosts does not offer")
    if await _feature(src, DriverFeature.MIGRATION_V3) and await _feature(dst, DriverFeature.MIGRATION_V3):
        return await _v3(src, dst, dom, params, typed, flags, use_params=False)
    if await _feature(src, DriverFeature.MIGRATION_V2) and await _feature(dst, DriverFeature.MIGRATION_V2):
        if params.get("destination_xml"):
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                        "destination XML needs migration protocol v3, which one of the hosts does not offer")
        return await _v2(src, dst, dom, params, flags)
    raise error(ErrorNumber.NO_SUPPORT, ErrorDomain.NONE, "no migration protocol is supported by both hosts")


async def _v3(src: HypervisorConnection, dst: HypervisorConnection, dom: DomainRef, params: dict[str, Any],
              typed: list, flags: int, use_params: bool) -> DomainRef:
    src_flags = flags | (MigrateFlags.CHANGE_PROTECTION
                         if await _feature(src, DriverFeature.MIGRATE_CHANGE_PROTECTION) else 0)
    dname = params.get("destination_name")
    bandwidth = params.get("bandwidth", 0)
    uri = params.get("migrate_uri")
    # Begin
    if use_params:
        cookie, xml = await src.domain_migrate_begin3_params(dom, typed, src_flags)
    else:
        cookie, xml = await src.domain_migrate_begin3(dom, params.get("destination_xml"), src_flags, dname, bandwidth)
    try:
        state, _reason = await src.domain_get_state(dom, 0)
    except libvirtError as exc:       # as libvirt: not fatal, but the source job must not stay held
        log.warning("cannot read the state of %s before Prepare: %s", dom.name, exc)
        state = DomainState.RUNNING
    if state == DomainState.PAUSED:
        flags |= MigrateFlags.PAUSED
        src_flags |= MigrateFlags.PAUSED
    dst_flags = flags & ~SOURCE_ONLY_FLAGS
    # Prepare
    try:
        if use_params:
            dst_typed = [p for p in typed if p[0] != "destination_xml"] + \
                typedparams.from_dict({"destination_xml": xml}, typedparams.MIGRATION_PARAM_TYPES)
            cookie, uri_out = await dst.domain_migrate_prepare3_params(dst_typed, cookie, dst_flags)
        else:
            cookie, uri_out = await dst.domain_migrate_prepare3(cookie, uri, dst_flags, dname, bandwidth, xml)
    except libvirtError as exc:
        await _confirm_quietly(src, dom, typed, src_flags, use_params, exc)
        raise
    uri = uri_out or uri
    if not uri:
        exc = error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NONE, "domainMigratePrepare3 did not set uri")
        await _confirm_quietly(src, dom, typed, src_flags, use_params, exc)
        raise exc
    first = FirstError()
    # Perform
    performed = True
    try:
        if use_params:
            perf_typed = [p for p in typed if p[0] != "migrate_uri"] + \
                typedparams.from_dict({"migrate_uri": uri}, typedparams.MIGRATION_PARAM_TYPES)
            cookie = await src.domain_migrate_perform3_params(dom, None, perf_typed, cookie, src_flags)
        else:
            cookie = await src.domain_migrate_perform3(dom, None, cookie, None, uri, src_flags, dname, bandwidth)
    except libvirtError as exc:
        first.record(exc)
        performed, cookie = False, b""
    # Finish (told whether Perform failed)
    ddom: DomainRef | None = None
    try:
        if use_params:
            fin_typed = typedparams.from_dict({"destination_name": dname or dom.name},
                                              typedparams.MIGRATION_PARAM_TYPES)
            fin_typed += [p for p in typed if p[0] not in ("destination_name",)]
            ddom, cookie = await dst.domain_migrate_finish3_params(fin_typed, cookie, dst_flags, int(not performed))
        else:
            ddom, cookie = await dst.domain_migrate_finish3(dname or dom.name, cookie, None, uri, dst_flags,
                                                            int(not performed))
    except libvirtError as exc:
        if not (not performed and exc.get_error_code() == ErrorNumber.MIGRATE_FINISH_OK):
            first.record(exc)
        ddom = None
    # Confirm, unless Perform failed (the source already cleaned up then)
    if performed:
        try:
            if use_params:
                await src.domain_migrate_confirm3_params(dom, typed, cookie or b"", src_flags, int(ddom is None))
            else:
                await src.domain_migrate_confirm3(dom, cookie or b"", src_flags, int(ddom is None))
        except libvirtError as exc:
            if ddom is not None:
                log.warning("migration of %s succeeded but Confirm failed (source may stay paused): %s",
                            dom.name, exc)
            else:
                first.record(exc)
    first.raise_if_any()
    assert ddom is not None
    return ddom


async def _confirm_quietly(src: HypervisorConnection, dom: DomainRef, typed: list, flags: int,
                           use_params: bool, cause: BaseException) -> None:
    """End the source's job after a failed Prepare; the Prepare error stays the one reported."""
    try:
        if use_params:
            await src.domain_migrate_confirm3_params(dom, typed, b"", flags, 1)
        else:
            await src.domain_migrate_confirm3(dom, b"", flags, 1)
    except libvirtError as exc:
        log.warning("cleaning up the source after '%s' failed too: %s", cause, exc)


async def _v2(src: HypervisorConnection, dst: HypervisorConnection, dom: DomainRef, params: dict[str, Any],
              flags: int) -> DomainRef:
    dname = params.get("destination_name")
    bandwidth = params.get("bandwidth", 0)
    uri = params.get("migrate_uri")
    xml = await src.domain_get_xml_desc(dom, int(XMLFlags.MIGRATABLE | XMLFlags.SECURE))
    state, _ = await src.domain_get_state(dom, 0)
    if state == DomainState.PAUSED:
        flags |= MigrateFlags.PAUSED
    cookie, uri_out = await dst.domain_migrate_prepare2(uri, flags, dname, bandwidth, xml)
    uri = uri_out or uri
    if not uri:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NONE, "domainMigratePrepare2 did not set uri")
    first = FirstError()
    retcode = 0
    try:
        await src.domain_migrate_perform(dom, cookie or b"", uri, flags, dname, bandwidth)
    except libvirtError as exc:
        first.record(exc)
        retcode = -1
    ddom: DomainRef | None = None
    try:
        ddom = await dst.domain_migrate_finish2(dname or dom.name, cookie or b"", uri, flags, retcode)
    except libvirtError as exc:
        first.record(exc)
    first.raise_if_any()
    assert ddom is not None
    return ddom


async def migrate_to_uri(src: HypervisorConnection, dom: DomainRef, dconnuri: str, params: dict[str, Any],
                         flags: int) -> None:
    """Unmanaged migration: the source daemon talks to the destination itself."""
    if not flags & MigrateFlags.PEER2PEER:
        if not await _feature(src, DriverFeature.MIGRATION_DIRECT):
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                        "direct migration is not supported by the source host: use VIR_MIGRATE_PEER2PEER "
                        "or migrate with a destination connection")
    elif not await _feature(src, DriverFeature.MIGRATION_P2P):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                    "peer-to-peer migration is not supported by the source host")
    from .uri import parse as parse_uri
    target = parse_uri(dconnuri)
    if not target.host or target.host.startswith("localhost"):
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, "Attempt to migrate guest to the same host")
    typed = typedparams.from_dict(params, typedparams.MIGRATION_PARAM_TYPES)
    if await _feature(src, DriverFeature.MIGRATION_PARAMS):
        await src.domain_migrate_perform3_params(dom, dconnuri, typed, b"", flags)
        return
    extra = set(params) - PLAIN_PARAMS
    if extra:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                    f"migration parameters {sorted(extra)} need the typed-parameter migration API")
    if await _feature(src, DriverFeature.MIGRATION_V3):
        await src.domain_migrate_perform3(dom, params.get("destination_xml"), b"", dconnuri,
                                          params.get("migrate_uri"), flags, params.get("destination_name"),
                                          params.get("bandwidth", 0))
        return
    await src.domain_migrate_perform(dom, b"", dconnuri, flags, params.get("destination_name"),
                                     params.get("bandwidth", 0))
