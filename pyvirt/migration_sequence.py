"""The v3 and v2 migration sequences, and their one first-error policy.

Two callers run the same steps: the client library (managed migration, each
step a call to one host) and the source daemon of a peer-to-peer migration
(Begin, Perform and Confirm local, Prepare and Finish on the destination).
Each wraps its hosts in a :class:`SourceSide` and a :class:`DestinationSide`;
this module decides the order, the flags each step gets, and which error is
reported.  The rules are libvirt's (``virDomainMigrateVersion3Full`` in the
client, ``qemuMigrationSrcPerformPeer2Peer3`` in the daemon):

* Begin fails: nothing else runs.
* Prepare fails: the source's job is ended with Confirm(cancelled), the
  Prepare error is reported.
* Prepare sets no URI (and the stream is not tunnelled): an error, then
  Finish(cancelled) and Confirm(cancelled) as after any failure before Perform.
* Perform fails: Finish is told (cancelled) and Confirm is skipped — a failed
  Perform has already put the source back.
* Finish's result decides what Confirm is told: a domain means "migrated",
  any error — of any type — means "cancelled" (the source is resumed).
* Confirm's own error is logged, never reported: after a successful Finish
  the guest runs on the destination and the migration succeeded (the source
  may stay paused, as libvirt warns); after a failed one the earlier error
  is the one that explains what happened.
* The first error of the sequence is the one reported.

Deliberately not copied: libvirt replaces a Perform error with Finish's when
the destination domain died (a heuristic on error codes); here the first
error always stays.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from .driver import HypervisorConnection
from .enums import DriverFeature, MigrateFlags
from .errors import ErrorDomain, ErrorNumber, FirstError, error, libvirtError

log = logging.getLogger(__name__)

# Flags only the source acts on; the destination is not told (libvirt strips them).
SOURCE_ONLY_FLAGS = MigrateFlags.ABORT_ON_ERROR | MigrateFlags.AUTO_CONVERGE


class SourceSide(Protocol):
    """The source host's steps, as one caller reaches them."""

    name: str    # the domain's name, for log messages

    async def begin(self, flags: int) -> tuple[bytes, str]:
        """v3 Begin: (cookie, the domain XML the destination starts)."""

    async def paused(self) -> bool:
        """Whether the guest is paused now (it then arrives paused)."""

    async def perform(self, cookie: bytes, uri: str | None, flags: int) -> bytes:
        """v3 Perform: stream the guest; returns the cookie for Finish."""

    async def confirm(self, cookie: bytes, flags: int, cancelled: bool) -> None:
        """v3 Confirm: stop the source (migrated) or resume it (cancelled)."""

    async def definition(self) -> str:
        """v2: the domain XML Prepare2 starts."""

    async def perform2(self, cookie: bytes, uri: str | None, flags: int) -> None:
        """v2 Perform."""

    async def end2(self, flags: int, cancelled: bool) -> None:
        """v2 has no Confirm: called after Finish2 when Perform succeeded (a
        peer-to-peer source is stopped or resumed here; a client's v2 Perform
        already stopped its source)."""


class DestinationSide(Protocol):
    """The destination host's steps."""

    async def prepare(self, cookie: bytes, xml: str, flags: int) -> tuple[bytes, str | None]:
        """v3 Prepare: (cookie, the URI Perform sends to, or None)."""

    async def finish(self, cookie: bytes, uri: str | None, flags: int, cancelled: bool) -> tuple[Any, bytes]:
        """v3 Finish: (the domain on the destination, cookie for Confirm)."""

    async def prepare2(self, xml: str, flags: int) -> tuple[bytes, str | None]:
        """v2 Prepare2: (cookie, URI)."""

    async def finish2(self, cookie: bytes, uri: str | None, flags: int, cancelled: bool) -> Any:
        """v2 Finish2: the domain on the destination."""


async def supports(conn: HypervisorConnection, feature: DriverFeature) -> bool:
    """VIR_DRV_SUPPORTS_FEATURE: an error asking counts as 'no'."""
    try:
        return bool(await conn.connect_supports_feature(int(feature)))
    except libvirtError:
        return False


def _no_uri(step: str) -> libvirtError:
    return error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NONE, f"{step} did not set uri")


def _is_finish_ok(exc: BaseException) -> bool:
    return isinstance(exc, libvirtError) and exc.get_error_code() == ErrorNumber.MIGRATE_FINISH_OK


async def run_v3(src: SourceSide, dst: DestinationSide, flags: int, *, protection: int = 0,
                 tunnelled: bool = False) -> Any:
    """Begin, Prepare, Perform, Finish, Confirm; return Finish's domain or raise the first error.

    ``protection`` is added to the source's flags only
    (VIR_MIGRATE_CHANGE_PROTECTION, when the source offers it).  With
    ``tunnelled`` Prepare sets no URI: the stream goes through the
    connection Prepare opened.
    """
    src_flags = flags | protection
    cookie, xml = await src.begin(src_flags)
    if await src.paused():
        flags |= MigrateFlags.PAUSED
        src_flags |= MigrateFlags.PAUSED
    dst_flags = flags & ~SOURCE_ONLY_FLAGS
    try:
        cookie, uri = await dst.prepare(cookie, xml, dst_flags)
    except BaseException as exc:
        await _confirm_quietly(src, src_flags, exc)
        raise
    first = FirstError()
    performed = False
    notify_source = True
    if not uri and not tunnelled:
        first.record(_no_uri("domainMigratePrepare3"))
        cookie = b""
    else:
        try:
            cookie = await src.perform(cookie, uri, src_flags)
            performed = True
        except BaseException as exc:
            first.record(exc)
            cookie, notify_source = b"", False
    cancelled = not performed
    ddom: Any = None
    try:
        ddom, cookie = await dst.finish(cookie, uri, dst_flags, cancelled)
    except BaseException as exc:
        if cancelled and _is_finish_ok(exc):
            log.debug("%s: Finish confirmed the cancellation", src.name)
        else:
            first.record(exc)
        ddom, cookie = None, b""
    if cancelled and ddom is not None:
        log.error("%s: finish step ignored that migration was cancelled", src.name)
    if notify_source:
        try:
            await src.confirm(cookie or b"", src_flags, ddom is None)
        except BaseException as exc:
            log.warning("Guest %s probably left in 'paused' state on source: Confirm failed: %s", src.name, exc)
    first.raise_if_any()
    return ddom


async def _confirm_quietly(src: SourceSide, flags: int, cause: BaseException) -> None:
    """End the source's job after a failed Prepare; the Prepare error stays the one reported."""
    try:
        await src.confirm(b"", flags, True)
    except BaseException as exc:
        log.warning("%s: cleaning up the source after '%s' failed too: %s", src.name, cause, exc)


async def run_v2(src: SourceSide, dst: DestinationSide, flags: int, *, tunnelled: bool = False) -> Any:
    """Prepare2, Perform, Finish2 (and the peer-to-peer source's end); same first-error rule."""
    xml = await src.definition()
    if await src.paused():
        flags |= MigrateFlags.PAUSED
    dst_flags = flags & ~SOURCE_ONLY_FLAGS
    cookie, uri = await dst.prepare2(xml, dst_flags)
    first = FirstError()
    performed = False
    if not uri and not tunnelled:
        first.record(_no_uri("domainMigratePrepare2"))
    else:
        try:
            await src.perform2(cookie or b"", uri, flags)
            performed = True
        except BaseException as exc:
            first.record(exc)
    ddom: Any = None
    try:
        ddom = await dst.finish2(cookie or b"", uri, dst_flags, not performed)
    except BaseException as exc:
        if not performed and _is_finish_ok(exc):
            log.debug("%s: Finish2 confirmed the cancellation", src.name)
        else:
            first.record(exc)
        ddom = None
    if not performed and ddom is not None:
        log.error("%s: finish step ignored that migration was cancelled", src.name)
    if performed:
        try:
            await src.end2(flags, ddom is None)
        except BaseException as exc:
            log.warning("Guest %s probably left in 'paused' state on source: %s", src.name, exc)
    first.raise_if_any()
    return ddom
