"""Client-driven ("managed") migration: the client calls each step on the right host.

Which protocol to speak is decided as libvirt 9.0's client decides it
(``libvirt-wire.md`` §2.3): v3 with typed parameters when both hosts
advertise it, else plain v3, else v2.  The sequence itself and its rule
that **the first error is the one reported** live in
:mod:`pyvirt.migration_sequence`, shared with peer-to-peer migration; this
module only says how each step reaches its host (which procedure, which
parameters).  Which copy runs afterwards is the drivers' business (Finish
kills a destination it could not start, Confirm resumes a source whose
destination failed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import typedparams
from .driver import HypervisorConnection
from .refs import DomainRef
from .enums import DomainState, DriverFeature, MigrateFlags, XMLFlags
from .errors import ErrorDomain, ErrorNumber, error, libvirtError
from .migration_sequence import run_v2, run_v3, supports

log = logging.getLogger(__name__)

# Without typed-parameter procedures, only these parameters can be expressed.
PLAIN_PARAMS = {"migrate_uri", "destination_name", "destination_xml", "bandwidth"}


async def migrate_managed(src: HypervisorConnection, dst: HypervisorConnection, dom: DomainRef,
                          params: dict[str, Any], flags: int, api: str = "virDomainMigrate3") -> DomainRef:
    """Migrate ``dom`` from ``src`` to ``dst``; return the domain on ``dst``.  ``api`` is the
    entry point the caller used, named as libvirt names it when no protocol is shared."""
    if flags & MigrateFlags.OFFLINE:
        await _check_offline(src, "source")
        await _check_offline(dst, "destination")
    if flags & (MigrateFlags.PEER2PEER | MigrateFlags.TUNNELLED):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                    "use migrateToURI* for peer-to-peer and tunnelled migration")
    flags &= ~MigrateFlags.CHANGE_PROTECTION
    typed = typedparams.from_dict(params, typedparams.MIGRATION_PARAM_TYPES)   # validates names and types
    if await supports(src, DriverFeature.MIGRATION_PARAMS) and await supports(dst, DriverFeature.MIGRATION_PARAMS):
        return await _v3(src, dst, dom, params, typed, flags, use_params=True)
    extra = set(params) - PLAIN_PARAMS
    if extra:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                    f"migration parameters {sorted(extra)} need the typed-parameter migration API, "
                    "which one of the hosts does not offer")
    if await supports(src, DriverFeature.MIGRATION_V3) and await supports(dst, DriverFeature.MIGRATION_V3):
        return await _v3(src, dst, dom, params, typed, flags, use_params=False)
    if await supports(src, DriverFeature.MIGRATION_V2) and await supports(dst, DriverFeature.MIGRATION_V2):
        if params.get("destination_xml"):
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                        "destination XML needs migration protocol v3, which one of the hosts does not offer")
        return await run_v2(_ClientSource(src, dom, params, typed, False),
                            _ClientDestination(dst, dom, params, typed, False), flags)
    raise error(ErrorNumber.NO_SUPPORT, ErrorDomain.DOMAIN, api)     # libvirt's virReportUnsupportedError


async def _check_offline(conn: HypervisorConnection, side: str) -> None:
    """libvirt's client refuses an offline migration a host does not advertise, before anything else."""
    if not await supports(conn, DriverFeature.MIGRATION_OFFLINE):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.DOMAIN,
                    f"offline migration is not supported by the {side} host")


async def _v3(src: HypervisorConnection, dst: HypervisorConnection, dom: DomainRef, params: dict[str, Any],
              typed: list, flags: int, use_params: bool) -> DomainRef:
    protection = (int(MigrateFlags.CHANGE_PROTECTION)
                  if await supports(src, DriverFeature.MIGRATE_CHANGE_PROTECTION) else 0)
    return await run_v3(_ClientSource(src, dom, params, typed, use_params),
                        _ClientDestination(dst, dom, params, typed, use_params), flags, protection=protection)


def _replace(typed: list, **values: Any) -> list:
    """``typed`` with the named parameters set to ``values`` (libvirt's virTypedParamsReplaceString)."""
    return [p for p in typed if p[0] not in values] + \
        typedparams.from_dict(values, typedparams.MIGRATION_PARAM_TYPES)


@dataclass
class _ClientSide:
    """One host's end of a client-driven migration: its connection and the call's arguments."""

    conn: HypervisorConnection
    dom: DomainRef
    params: dict[str, Any]
    typed: list
    use_params: bool


class _ClientSource(_ClientSide):
    """The source host's steps as remote procedures."""

    @property
    def name(self) -> str:
        return self.dom.name

    async def begin(self, flags: int) -> tuple[bytes, str]:
        if self.use_params:
            return await self.conn.domain_migrate_begin3_params(self.dom, self.typed, flags)
        return await self.conn.domain_migrate_begin3(self.dom, self.params.get("destination_xml"), flags,
                                                     self.params.get("destination_name"),
                                                     self.params.get("bandwidth", 0))

    async def paused(self) -> bool:
        try:
            state, _reason = await self.conn.domain_get_state(self.dom, 0)
        except libvirtError as exc:   # as libvirt: not fatal, the source job must not stay held
            log.warning("cannot read the state of %s before Prepare: %s", self.dom.name, exc)
            return False
        return state == DomainState.PAUSED

    async def perform(self, cookie: bytes, uri: str | None, flags: int) -> bytes:
        if self.use_params:
            return await self.conn.domain_migrate_perform3_params(self.dom, None, _replace(self.typed, migrate_uri=uri),
                                                                  cookie, flags)
        # dconnuri is not relevant outside peer-to-peer: None, as libvirt's client sends
        return await self.conn.domain_migrate_perform3(self.dom, None, cookie, None, uri, flags,
                                                       self.params.get("destination_name"),
                                                       self.params.get("bandwidth", 0))

    async def confirm(self, cookie: bytes, flags: int, cancelled: bool) -> None:
        if self.use_params:
            await self.conn.domain_migrate_confirm3_params(self.dom, self.typed, cookie, flags, int(cancelled))
        else:
            await self.conn.domain_migrate_confirm3(self.dom, cookie, flags, int(cancelled))

    async def definition(self) -> str:
        return await self.conn.domain_get_xml_desc(self.dom, int(XMLFlags.MIGRATABLE | XMLFlags.SECURE))

    async def perform2(self, cookie: bytes, uri: str | None, flags: int) -> None:
        await self.conn.domain_migrate_perform(self.dom, cookie, uri, flags, self.params.get("destination_name"),
                                               self.params.get("bandwidth", 0))

    async def end2(self, flags: int, cancelled: bool) -> None:
        """v2 Perform already stopped the source: nothing is left to tell it."""


class _ClientDestination(_ClientSide):
    """The destination host's steps as remote procedures."""

    @property
    def dname(self) -> str:
        return self.params.get("destination_name") or self.dom.name

    async def prepare(self, cookie: bytes, xml: str, flags: int) -> tuple[bytes, str | None]:
        uri_in = self.params.get("migrate_uri")
        if self.use_params:
            cookie, uri_out = await self.conn.domain_migrate_prepare3_params(
                _replace(self.typed, destination_xml=xml), cookie, flags)
        else:
            cookie, uri_out = await self.conn.domain_migrate_prepare3(
                cookie, uri_in, flags, self.params.get("destination_name"), self.params.get("bandwidth", 0), xml)
        return cookie, uri_out or uri_in

    async def finish(self, cookie: bytes, uri: str | None, flags: int, cancelled: bool) -> tuple[Any, bytes]:
        if self.use_params:
            return await self.conn.domain_migrate_finish3_params(_replace(self.typed, destination_name=self.dname),
                                                                 cookie, flags, int(cancelled))
        return await self.conn.domain_migrate_finish3(self.dname, cookie, None, uri, flags, int(cancelled))

    async def prepare2(self, xml: str, flags: int) -> tuple[bytes, str | None]:
        uri_in = self.params.get("migrate_uri")
        cookie, uri_out = await self.conn.domain_migrate_prepare2(uri_in, flags, self.params.get("destination_name"),
                                                                  self.params.get("bandwidth", 0), xml)
        return cookie or b"", uri_out or uri_in

    async def finish2(self, cookie: bytes, uri: str | None, flags: int, cancelled: bool) -> Any:
        return await self.conn.domain_migrate_finish2(self.dname, cookie, uri, flags, -1 if cancelled else 0)


async def migrate_to_uri(src: HypervisorConnection, dom: DomainRef, dconnuri: str, params: dict[str, Any],
                         flags: int) -> None:
    """Unmanaged migration: the source daemon talks to the destination itself."""
    if flags & MigrateFlags.OFFLINE:
        await _check_offline(src, "source")
    if not flags & MigrateFlags.PEER2PEER:
        if not await supports(src, DriverFeature.MIGRATION_DIRECT):
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.DOMAIN,
                        "direct migration is not supported by the source host")
    elif not await supports(src, DriverFeature.MIGRATION_P2P):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.DOMAIN,
                    "p2p migration is not supported by the source host")
    from .uri import parse as parse_uri
    target = parse_uri(dconnuri)
    if not target.host or target.host.startswith("localhost"):
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, "Attempt to migrate guest to the same host")
    typed = typedparams.from_dict(params, typedparams.MIGRATION_PARAM_TYPES)
    if await supports(src, DriverFeature.MIGRATION_PARAMS):
        await src.domain_migrate_perform3_params(dom, dconnuri, typed, b"", flags)
        return
    extra = set(params) - PLAIN_PARAMS
    if extra:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE,
                    f"migration parameters {sorted(extra)} need the typed-parameter migration API")
    if await supports(src, DriverFeature.MIGRATION_V3):
        await src.domain_migrate_perform3(dom, params.get("destination_xml"), b"", dconnuri,
                                          params.get("migrate_uri"), flags, params.get("destination_name"),
                                          params.get("bandwidth", 0))
        return
    await src.domain_migrate_perform(dom, b"", dconnuri, flags, params.get("destination_name"),
                                     params.get("bandwidth", 0))
