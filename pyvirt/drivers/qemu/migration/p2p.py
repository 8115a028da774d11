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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ....driver import HypervisorConnection
from ....refs import DomainRef
from ....enums import DomainState, DriverFeature, MigrateFlags
from ....errors import ErrorDomain, ErrorNumber, error, libvirtError
from ....migration_sequence import run_v2, run_v3, supports
from ....typedparams import MIGRATION_PARAM_TYPES, from_dict
from ...domainlist import not_running
from . import source, tunnel
from .params import MigrationRequest, to_params

if TYPE_CHECKING:
    from ..driver import QemuDriver

log = logging.getLogger(__name__)


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
        if not await supports(dconn, DriverFeature.MIGRATION_P2P):
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        "Destination libvirt does not support peer-to-peer migration protocol")
        tunnelled = req.has(MigrateFlags.TUNNELLED)
        src = _LocalSource(drv, conn, dom, req, dconn)
        if await supports(dconn, DriverFeature.MIGRATION_V3):
            use_params = await supports(dconn, DriverFeature.MIGRATION_PARAMS)
            await run_v3(src, _PeerDestination(dconn, dom, req, dconnuri, use_params, src), req.flags,
                         tunnelled=tunnelled)
        else:
            if tunnelled:
                raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                            "tunnelled migration to a destination without migration protocol v3 is not supported")
            await run_v2(src, _PeerDestination(dconn, dom, req, dconnuri, False, src), req.flags)
    finally:
        try:
            await dconn.connect_close()
        except Exception as exc:   # the connection may be the thing that broke
            log.debug("closing the destination connection: %s", exc)


def _typed(req: MigrationRequest, **extra: Any) -> list:
    values: dict[str, Any] = {}
    for name, _t, value in to_params(req):
        # migrate_disks repeats: a list, which from_dict sends as repeated parameters
        values[name] = [*values[name], value] if name == "migrate_disks" and name in values else \
            ([value] if name == "migrate_disks" else value)
    values.update({k: v for k, v in extra.items() if v})
    return from_dict(values, MIGRATION_PARAM_TYPES)


@dataclass
class _LocalSource:
    """This host's source steps, run in place; Perform watches the destination connection."""

    drv: "QemuDriver"
    conn: HypervisorConnection
    dom: DomainRef
    req: MigrationRequest
    peer: HypervisorConnection
    tunnel: tunnel.Tunnel | None = None     # set by a tunnelled Prepare

    @property
    def name(self) -> str:
        return self.dom.name

    async def begin(self, flags: int) -> tuple[bytes, str]:
        return await source.begin(self.drv, self.conn, self.dom, self.req, self.req.dest_xml)

    async def paused(self) -> bool:
        return self.drv.domains.by_ref(self.dom).state == DomainState.PAUSED

    async def perform(self, cookie: bytes, uri: str | None, flags: int) -> bytes:
        return await source.perform(self.drv, self.conn, self.dom, self.req, cookie, uri, v3=True,
                                    peer=self.peer, tunnel=self.tunnel)

    async def confirm(self, cookie: bytes, flags: int, cancelled: bool) -> None:
        await source.confirm(self.drv, self.dom, self.req, cookie or None, cancelled=cancelled)

    async def definition(self) -> str:
        obj = self.drv.domains.by_ref(self.dom)
        if obj.live is None:      # stopped since Begin
            raise not_running(obj)
        return obj.live.format(secure=True, migratable=True)

    async def perform2(self, cookie: bytes, uri: str | None, flags: int) -> None:
        # v3-style Perform keeps the source until Finish2 has answered.
        await source.perform(self.drv, self.conn, self.dom, self.req, None, uri, v3=True, peer=self.peer)

    async def end2(self, flags: int, cancelled: bool) -> None:
        await source.confirm(self.drv, self.dom, self.req, None, cancelled=cancelled)


@dataclass
class _PeerDestination:
    """The destination host's steps through this daemon's own connection to it."""

    dconn: HypervisorConnection
    dom: DomainRef
    req: MigrationRequest
    dconnuri: str
    use_params: bool
    src: _LocalSource

    @property
    def dname(self) -> str:
        return self.req.dname or self.dom.name

    async def prepare(self, cookie: bytes, xml: str, flags: int) -> tuple[bytes, str | None]:
        req = self.req
        if req.has(MigrateFlags.TUNNELLED):
            self.src.tunnel, cookie = await tunnel.prepare_remote(self.dconn, req, cookie, xml, flags,
                                                                  self.use_params)
            return cookie, None
        if self.use_params:
            cookie, uri = await self.dconn.domain_migrate_prepare3_params(_typed(req, destination_xml=xml),
                                                                          cookie, flags)
        else:
            cookie, uri = await self.dconn.domain_migrate_prepare3(cookie, req.uri, flags, req.dname,
                                                                   req.bandwidth, xml)
        return cookie, uri or req.uri

    async def finish(self, cookie: bytes, uri: str | None, flags: int, cancelled: bool) -> tuple[Any, bytes]:
        if self.use_params:
            return await self.dconn.domain_migrate_finish3_params(
                _typed(self.req, destination_name=self.dname, migrate_uri=uri), cookie, flags, int(cancelled))
        return await self.dconn.domain_migrate_finish3(self.dname, cookie, self.dconnuri, uri, flags,
                                                       int(cancelled))

    async def prepare2(self, xml: str, flags: int) -> tuple[bytes, str | None]:
        req = self.req
        cookie, uri = await self.dconn.domain_migrate_prepare2(req.uri, flags, req.dname, req.bandwidth, xml)
        return cookie or b"", uri or req.uri

    async def finish2(self, cookie: bytes, uri: str | None, flags: int, cancelled: bool) -> Any:
        return await self.dconn.domain_migrate_finish2(self.dname, cookie, uri or "", flags,
                                                       -1 if cancelled else 0)
