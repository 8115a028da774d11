"""Peer-to-peer migration: the source host runs the whole sequence itself.

The client calls only Perform on the source; the source opens its own
connection to the destination host (through the connector the daemon
injects: drivers never speak RPC themselves), then runs the v3 steps
(typed-parameter calls when the destination offers them), or v2 against a
destination without v3.  The destination connection belongs to this
migration: if it breaks, the migration is cancelled and the source resumed
("Lost connection to destination host"), and the destination's autodestroy
removes its half of the guest.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ....driver import DomainRef, HypervisorConnection
from ....enums import DomainState, DriverFeature, MigrateFlags
from ....errors import ErrorDomain, ErrorNumber, FirstError, error, libvirtError
from ....typedparams import MIGRATION_PARAM_TYPES, from_dict
from . import source, tunnel
from .params import MigrationRequest, to_params

if TYPE_CHECKING:
    from ..driver import QemuDriver

log = logging.getLogger(__name__)

Connector = Callable[[str], Awaitable[HypervisorConnection]]
DEST_ONLY_DROP = MigrateFlags.ABORT_ON_ERROR | MigrateFlags.AUTO_CONVERGE


async def _feature(conn: HypervisorConnection, feature: DriverFeature) -> bool:
    try:
        return bool(await conn.connect_supports_feature(int(feature)))
    except libvirtError:
        return False


async def perform(drv: "QemuDriver", conn: HypervisorConnection, dom: DomainRef, req: MigrationRequest,
                  dconnuri: str) -> None:
    if drv.connector is None:
        raise error(ErrorNumber.NO_SUPPORT, ErrorDomain.QEMU, "this driver cannot reach other hosts")
    try:
        dconn = await drv.connector(dconnuri)
    except libvirtError as exc:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"Failed to connect to remote libvirt URI {dconnuri}: {exc.get_error_message()}") from exc
    try:
        if not await _feature(dconn, DriverFeature.MIGRATION_P2P):
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        "Destination libvirt does not support peer-to-peer migration protocol")
        if await _feature(dconn, DriverFeature.MIGRATION_V3):
            use_params = await _feature(dconn, DriverFeature.MIGRATION_PARAMS)
            await _v3(drv, conn, dconn, dom, req, dconnuri, use_params)
        else:
            await _v2(drv, conn, dconn, dom, req)
    finally:
        try:
            await dconn.connect_close()
        except Exception as exc:   # the connection may be the thing that broke
            log.debug("closing the destination connection: %s", exc)


def _typed(req: MigrationRequest, **extra: Any) -> list:
    values = {name: value for name, _t, value in to_params(req)}
    values.update({k: v for k, v in extra.items() if v})
    return from_dict(values, MIGRATION_PARAM_TYPES)


async def _v3(drv: "QemuDriver", conn: HypervisorConnection, dconn: HypervisorConnection, dom: DomainRef,
              req: MigrationRequest, dconnuri: str, use_params: bool) -> None:
    tunnelled = req.has(MigrateFlags.TUNNELLED)
    cookie, xml = await source.begin(drv, conn, dom, req, req.dest_xml)
    obj = drv.domains.by_ref(dom)
    flags = req.flags
    if obj.state == DomainState.PAUSED:
        flags |= MigrateFlags.PAUSED
    dflags = flags & ~DEST_ONLY_DROP
    dname = req.dname
    pipe: tunnel.Tunnel | None = None
    # Prepare on the destination
    try:
        if tunnelled:
            pipe, cookie = await tunnel.prepare_remote(dconn, req, cookie, xml, dflags, use_params)
            uri = None
        elif use_params:
            cookie, uri = await dconn.domain_migrate_prepare3_params(
                _typed(req, destination_xml=xml), cookie, dflags)
        else:
            cookie, uri = await dconn.domain_migrate_prepare3(cookie, req.uri, dflags, dname, req.bandwidth, xml)
    except BaseException as exc:
        try:
            await source.confirm(drv, dom, req, None, cancelled=True)
        except Exception as cleanup:   # the Prepare error stays the one reported
            log.warning("ending the source job after '%s' failed too: %s", exc, cleanup)
        raise
    first = FirstError()
    # Perform locally, watching the destination connection
    performed = True
    try:
        cookie = await source.perform(drv, conn, dom, req, cookie, uri or req.uri, v3=True,
                                      peer=dconn, tunnel=pipe)
    except BaseException as exc:
        first.record(exc)
        performed, cookie = False, b""
    # Finish on the destination
    ddom = None
    try:
        if use_params:
            ddom, cookie = await dconn.domain_migrate_finish3_params(
                _typed(req, destination_name=dname or dom.name, migrate_uri=uri), cookie, dflags, int(not performed))
        else:
            ddom, cookie = await dconn.domain_migrate_finish3(dname or dom.name, cookie, dconnuri,
                                                              uri, dflags, int(not performed))
    except libvirtError as exc:
        if performed or exc.get_error_code() != ErrorNumber.MIGRATE_FINISH_OK:
            if performed:
                first.record(exc)
            else:
                log.debug("Finish after a failed Perform: %s", exc)
    if performed:
        try:
            await source.confirm(drv, dom, req, cookie, cancelled=ddom is None)
        except libvirtError as exc:
            first.record(exc)
    first.raise_if_any()


async def _v2(drv: "QemuDriver", conn: HypervisorConnection, dconn: HypervisorConnection, dom: DomainRef,
              req: MigrationRequest) -> None:
    """A destination without v3: Prepare2/Finish2, and the source stopped here after success."""
    if req.has(MigrateFlags.TUNNELLED):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    "tunnelled migration to a destination without migration protocol v3 is not supported")
    obj = drv.domains.by_ref(dom)
    flags = req.flags
    if obj.state == DomainState.PAUSED:
        flags |= MigrateFlags.PAUSED
    xml = obj.live.format(secure=True, inactive=True)
    cookie, uri = await dconn.domain_migrate_prepare2(req.uri, flags, req.dname, req.bandwidth, xml)
    first = FirstError()
    retcode = 0
    try:
        # v3-style Perform keeps the source until we know Finish2's answer.
        await source.perform(drv, conn, dom, req, None, uri or req.uri, v3=True, peer=dconn)
    except BaseException as exc:
        first.record(exc)
        retcode = -1
    ddom = None
    try:
        ddom = await dconn.domain_migrate_finish2(req.dname or dom.name, cookie or b"", uri or "", flags, retcode)
    except libvirtError as exc:
        if retcode == 0:
            first.record(exc)
    if retcode == 0:
        await source.confirm(drv, dom, req, None, cancelled=ddom is None)
    first.raise_if_any()
