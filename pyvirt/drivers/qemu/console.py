"""A guest's text console as a stream: its pty or UNIX-socket character device.

libvirt's virChrdevOpen: the console opens the host end of the guest's
serial port (the pty QEMU allocated, shown in the live XML, or the socket
QEMU listens on) and hands it to the stream.  One session per device: a
second open is refused unless forced, and a forced one ends the session it
replaces.  A session ends with its stream, however that ends (the client
finishes, aborts or vanishes), and the device is free again; the guest is
not touched.
"""

from __future__ import annotations

import logging
import os
import socket
import tty
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...driver import StreamSink
from ...enums import ConsoleFlags
from ...errors import ErrorDomain, ErrorNumber, check_flags, error

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Session:
    sink: StreamSink


class ConsoleSessions:
    """The open consoles of one driver, by (domain UUID and QEMU pid, host path of the device)."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], _Session] = {}

    def claim(self, key: tuple[str, str], force: bool) -> None:
        old = self.open.get(key)
        if old is None:
            return
        if not force:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        "Active console session exists for this domain")
        del self.open[key]
        log.info("console %s of %s taken over by a forced open", key[1], key[0])
        if old.sink.cancel is not None:
            # libvirt aborts the old stream, and its daemon tells that stream's client what
            # it tells of any stream whose descriptor failed
            old.sink.cancel(error(ErrorNumber.RPC, ErrorDomain.STREAMS, "stream had I/O failure"))
        else:      # nobody carries it yet (its reply is still being sent): close it here
            _close(old.sink.fd)

    def add(self, key: tuple[str, str], fd: int) -> StreamSink:
        session = _Session(StreamSink(fd, lambda err: None))

        def done(err: BaseException | None) -> None:
            if self.open.get(key) is session:
                del self.open[key]
            log.debug("console %s of %s closed: %s", key[1], key[0], err or "finished")
        session.sink.done = done
        self.open[key] = session
        return session.sink


_SESSIONS: "weakref.WeakKeyDictionary[Any, ConsoleSessions]" = weakref.WeakKeyDictionary()


def sessions_of(driver: Any) -> ConsoleSessions:
    found = _SESSIONS.get(driver)
    if found is None:
        found = _SESSIONS[driver] = ConsoleSessions()
    return found


def find_chardev(obj: "QemuDomainObj", dev_name: str | None) -> Any:
    """The device ``dev_name`` names (a console's or serial port's alias), or the first console."""
    devs = obj.live.devices
    if dev_name:
        for dev in (*devs.consoles, *devs.serials):
            if dev.alias == dev_name:
                return dev
    elif devs.consoles or devs.serials:
        return (devs.consoles or devs.serials)[0]
    raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                f"cannot find character device {dev_name if dev_name is not None else '<null>'}")


def open_console(driver: Any, obj: "QemuDomainObj", dev_name: str | None, flags: int) -> StreamSink:
    """The host end of the guest's console, ready for a stream (no job: it never waits on QEMU)."""
    check_flags(flags, int(ConsoleFlags.FORCE | ConsoleFlags.SAFE), "qemuDomainOpenConsole")
    dev = find_chardev(obj, dev_name)
    if dev.type not in ("pty", "unix"):
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                    f"character device {dev_name or dev.alias} is not using a PTY")
    if dev.type == "pty" and not dev.path:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "PTY device is not yet assigned")
    if dev.type == "unix" and dev.mode == "connect":
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                    f"character device {dev_name or dev.alias} connects to its socket: nothing to open")
    sessions = sessions_of(driver)
    # per QEMU process: a session a stopped guest left (its client never finished) does
    # not hold the device of the next start
    process = getattr(obj, "process", None)
    key = (f"{obj.uuid}/{process.pid if process is not None else 0}", dev.path)
    sessions.claim(key, bool(flags & ConsoleFlags.FORCE))
    fd = _open_pty(dev.path) if dev.type == "pty" else _connect_unix(dev.path)
    return sessions.add(key, fd)


def _open_pty(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                    f"Unable to open stream for '{path}': {exc.strerror}") from None
    try:
        if not os.isatty(fd):
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU, f"'{path}' is not a terminal")
        # raw, as libvirt's virFDStreamOpenPTY: no echo back into the guest, no line editing
        tty.setraw(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _connect_unix(path: str) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STREAMS,
                    f"Unable to connect to UNIX socket '{path}': {exc.strerror}") from None
    return sock.detach()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


__all__ = ["open_console", "sessions_of", "find_chardev", "ConsoleSessions"]
