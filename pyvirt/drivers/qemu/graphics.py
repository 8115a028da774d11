"""Screenshots, keys and local viewers: the guest's display through QMP.

* Screenshot (libvirt's qemuDomainScreenshot): QEMU's ``screendump`` writes
  into a file the daemon made (an anonymous memfd, handed over as an fd set,
  so QEMU's unprivileged user needs no path and nothing is left on disk);
  the file becomes the call's download stream.  PNG where this QEMU's schema
  offers it (libvirt's screenshot-format-png capability), PPM otherwise.
* sendKey: keycodes of any of libvirt's codesets, translated to QEMU's
  numbers, pressed together through ``send-key``.
* openGraphicsFD: a socketpair whose one end QEMU's VNC or SPICE server
  adopts as a client (``add_client``); the other goes back to the caller.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from ... import keycodes
from ...driver import FdReply, StreamSink
from ...enums import OpenGraphicsFlags
from ...errors import ErrorDomain, ErrorNumber, check_flags, error

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj

MIME_PPM = "image/x-portable-pixmap"
MIME_PNG = "image/png"
GRAPHICS_FD_NAME = "graphicsfd"
# emulator (path, size, mtime) -> whether its screendump takes format=png
_PNG_SUPPORT: dict[tuple[str, int, float], bool] = {}


def _binary_key(path: str) -> tuple[str, int, float]:
    try:
        st = os.stat(path)
    except OSError:
        return (path, 0, 0.0)
    return (path, st.st_size, st.st_mtime)


async def screendump_takes_png(monitor: Any, emulator: str) -> bool:
    """Whether ``screendump`` has a ``format`` argument with a ``png`` value (QEMU's own
    schema; asked once per emulator binary, again when the binary changes)."""
    key = _binary_key(emulator)
    known = _PNG_SUPPORT.get(key)
    if known is None:
        schema = await monitor.execute("query-qmp-schema")
        known = _schema_has_png_screendump(schema)
        _PNG_SUPPORT[key] = known
    return known


def _schema_has_png_screendump(schema: list[dict[str, Any]]) -> bool:
    by_name = {entry.get("name"): entry for entry in schema}
    command = next((e for e in schema if e.get("meta-type") == "command" and e.get("name") == "screendump"), None)
    if command is None:
        return False
    args = by_name.get(command.get("arg-type"), {})
    for member in args.get("members", ()):
        if member.get("name") == "format":
            kind = by_name.get(member.get("type"), {})
            return "png" in kind.get("values", ()) or any(
                m.get("name") == "png" for m in kind.get("members", ()))
    return False


def screen_device(obj: "QemuDomainObj", screen: int) -> tuple[str | None, int]:
    """The video device and head of screen ``screen`` (heads counted before devices)."""
    videos = obj.live.devices.videos
    if not videos:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "no screens to take screenshot from")
    if screen == 0:
        return None, 0
    for video in videos:
        heads = video.heads or 1
        if screen < heads:
            return video.alias, screen
        screen -= heads
    raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "no such screen ID")


async def screenshot(obj: "QemuDomainObj", emulator: str, screen: int, flags: int) -> tuple[str, StreamSink]:
    """The guest's screen as (mime type, the image's stream end).  The caller holds a job."""
    check_flags(flags, 0, "qemuDomainScreenshot")
    device, head = screen_device(obj, screen)
    monitor = obj.process.monitor
    png = await screendump_takes_png(monitor, emulator)
    image = os.memfd_create("qemu.screendump", os.MFD_CLOEXEC)
    try:
        # QEMU opens the fd set write-only (its access mode must match): a write-only
        # descriptor of the same file for it, ours keeps reading
        for_qemu = os.open(f"/proc/self/fd/{image}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            fdset = await monitor.add_fd(for_qemu)
        finally:
            os.close(for_qemu)
        args: dict[str, Any] = {"filename": f"/dev/fdset/{fdset}"}
        if device is not None:
            args.update(device=device, head=head)
        if png:
            args["format"] = "png"
        try:
            await monitor.execute("screendump", args)
        finally:
            await monitor.remove_fd(fdset)
        os.lseek(image, 0, os.SEEK_SET)
    except BaseException:
        os.close(image)
        raise
    return (MIME_PNG if png else MIME_PPM), StreamSink(image, lambda err: None)


def qnum_keycodes(codeset: int, keycodes_in: list[int]) -> list[int]:
    """libvirt's translation of every keycode to QEMU's numbers, refusing what has none."""
    if not keycodes_in:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "nkeycodes in virDomainSendKey must not be zero")
    if len(keycodes_in) > keycodes.SEND_KEY_MAX_KEYS:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"nkeycodes must be <= {keycodes.SEND_KEY_MAX_KEYS}")
    try:
        name = keycodes.KeycodeSet(codeset).name.lower()
    except ValueError:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"unknown keycode set {codeset}") from None
    out = []
    for code in keycodes_in:
        q = keycodes.to_qnum(codeset, code)
        if q is None:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                        f"cannot translate keycode {code} of {_CODESET_TEXT.get(name, name)} codeset to qnum keycode")
        out.append(q)
    return out


_CODESET_TEXT = {"osx": "os_x"}


async def send_key(obj: "QemuDomainObj", qnums: list[int], holdtime: int) -> None:
    args: dict[str, Any] = {"keys": [{"type": "number", "data": q} for q in qnums]}
    if holdtime:
        args["hold-time"] = holdtime
    await obj.process.monitor.execute("send-key", args)


def graphics_protocol(obj: "QemuDomainObj", idx: int, flags: int) -> str:
    check_flags(flags, int(OpenGraphicsFlags.SKIPAUTH), "qemuDomainOpenGraphicsFD")
    graphics = obj.live.devices.graphics
    if idx >= len(graphics):
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU, f"No graphics backend with index {idx}")
    kind = graphics[idx].type
    if kind not in ("vnc", "spice"):
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                    f"Can only open VNC or SPICE graphics backends, not {kind}")
    return kind


async def open_graphics_fd(obj: "QemuDomainObj", protocol: str, flags: int) -> FdReply:
    """One end of a socketpair QEMU's display server serves as a client.  The caller holds a job."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    monitor = obj.process.monitor
    try:
        with theirs:
            await monitor.getfd(theirs.fileno(), GRAPHICS_FD_NAME)
        try:
            await monitor.execute("add_client", {"protocol": protocol, "fdname": GRAPHICS_FD_NAME,
                                                 "skipauth": bool(flags & OpenGraphicsFlags.SKIPAUTH)})
        except BaseException:
            try:
                await monitor.closefd(GRAPHICS_FD_NAME)
            except Exception:
                pass
            raise
    except BaseException:
        ours.close()
        raise
    return FdReply(None, [ours.detach()])


__all__ = ["screenshot", "send_key", "qnum_keycodes", "graphics_protocol", "open_graphics_fd",
           "MIME_PPM", "MIME_PNG"]
