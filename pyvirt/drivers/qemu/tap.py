"""The host side of ``<interface type='bridge'>``: a tap device the daemon
creates, puts on the bridge and hands to QEMU as a descriptor.

QEMU's own ``-netdev bridge`` would run ``qemu-bridge-helper`` (and
``helper=`` any program); pyvirt never lets QEMU run programs.  As libvirt
does, the daemon opens ``/dev/net/tun`` itself, names the tap ``vnetN``,
gives it the guest's MAC with a first byte of 0xFE (so the bridge never
takes the tap's address as its own), the bridge's MTU, enslaves it and
brings it up (iproute2), and passes the descriptor — plus one of
``/dev/vhost-net`` for virtio NICs when it can be opened.  The tap is not
persistent: it disappears when the last descriptor closes, i.e. when QEMU
exits, whatever ends it.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import itertools
import json
import os
import socket
import struct
from dataclasses import dataclass

from ...conf import DomainDef
from ...conf.devices import GENERATED_TAP_PREFIXES, Interface
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from .command import TAP_FD, VHOST_FD

TUN_DEVICE = "/dev/net/tun"
VHOST_NET_DEVICE = "/dev/vhost-net"
TUNSETIFF = 0x400454CA           # _IOW('T', 202, int)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000               # no packet-information header before each frame
IFF_VNET_HDR = 0x4000            # virtio-net header, for virtio NICs (as libvirt)
IFF_TUN_EXCL = 0x8000            # fail instead of attaching to an existing device
IFNAMSIZ = 16                    # with the terminating NUL
HOST_MAC_FIRST_BYTE = 0xFE
TAP_PREFIX = "vnet"
MAX_NAME_TRIES = 256
IP = "ip"

_next_index = itertools.count()   # like libvirt: names are not reused at once


def _system_error(detail: str) -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NONE, detail)


def check_ifname(name: str) -> None:
    """The kernel's rule for interface names (dev_valid_name)."""
    if len(name.encode()) >= IFNAMSIZ:
        raise _system_error(f"Network interface name '{name}' is too long")
    if not name or name in (".", "..") or any(c == "/" or c == ":" or c.isspace() for c in name):
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN,
                    f"invalid network interface name '{name}'")


def host_mac(guest_mac: str) -> str:
    return f"{HOST_MAC_FIRST_BYTE:02x}{guest_mac[2:]}"


@dataclass
class Tap:
    """A tap the daemon holds until QEMU has its own copy."""

    alias: str
    name: str
    fd: int
    vhost_fd: int | None = None

    @property
    def descriptors(self) -> tuple[int, ...]:
        return (self.fd,) if self.vhost_fd is None else (self.fd, self.vhost_fd)

    def close(self) -> None:
        for fd in self.descriptors:
            os.close(fd)
        self.fd, self.vhost_fd = -1, None


def close_all(taps: list[Tap]) -> None:
    for tap in taps:
        if tap.fd >= 0:
            tap.close()


def vhost_net_available() -> bool:
    fd = _open_vhost()
    if fd is None:
        return False
    os.close(fd)
    return True


async def create_for(d: DomainDef, argv: list[str]) -> list[Tap]:
    """Taps for every bridged NIC of ``d`` (aliases assigned), with a vhost-net
    descriptor where ``argv`` asks for one; each NIC's ``target_dev`` names
    its tap, as libvirt's live XML shows it."""
    taps: list[Tap] = []
    try:
        for nic in d.devices.interfaces:
            vhost = any(VHOST_FD.format(nic.alias) in arg for arg in argv)
            if nic.type in ("bridge", "network"):      # a network NIC's bridge: see .netsource
                taps.append(await _create_in_bridge(nic, vhost))
            elif nic.type == "ethernet":
                from .netsource import create_ethernet
                taps.append(await create_ethernet(nic, vhost))
    except BaseException:
        close_all(taps)
        raise
    return taps


def substitute(argv: list[str], taps: list[Tap]) -> list[str]:
    """``argv`` with the tap placeholders of :mod:`.command` replaced by descriptor numbers."""
    table = {TAP_FD.format(t.alias): str(t.fd) for t in taps}
    table.update({VHOST_FD.format(t.alias): str(t.vhost_fd) for t in taps if t.vhost_fd is not None})
    out = []
    for arg in argv:
        if "_FD:" in arg:
            for placeholder, fd in table.items():
                arg = arg.replace(placeholder, fd)
        out.append(arg)
    return out


async def _create_in_bridge(nic: Interface, vhost: bool) -> Tap:
    bridge = nic.bridge or ""
    check_ifname(bridge)
    wanted = nic.target_dev if nic.target_dev and not nic.target_dev.startswith(GENERATED_TAP_PREFIXES) else None
    if wanted is not None:
        check_ifname(wanted)
    mtu = await _bridge_mtu(bridge)
    virtio = nic.model in (None, "virtio")
    name, fd = _open_tap(wanted, vnet_hdr=virtio)
    tap = Tap(nic.alias or "", name, fd)
    try:
        await _ip("link", "set", "dev", name, "address", host_mac(nic.mac), "mtu", str(mtu),
                  "master", bridge, "up",
                  failure=f"Unable to add bridge {bridge} port {name}")
        if vhost:
            tap.vhost_fd = _open_vhost()
            if tap.vhost_fd is None:
                raise _system_error(f"Unable to open {VHOST_NET_DEVICE}")
    except BaseException:
        tap.close()
        raise
    nic.target_dev = name
    return tap


async def _bridge_mtu(bridge: str) -> int:
    """The bridge's MTU; refuses a bridge that is missing or not a bridge."""
    out = await _ip("-json", "-details", "link", "show", "dev", bridge,
                    failure=f"Cannot get interface MTU on '{bridge}'", missing="No such device")
    try:
        link = json.loads(out)[0]
    except (ValueError, IndexError) as exc:
        raise _system_error(f"Cannot get interface MTU on '{bridge}': unreadable answer from ip") from exc
    if link.get("linkinfo", {}).get("info_kind") != "bridge":
        raise _system_error(f"Unable to add a port to '{bridge}': Operation not supported "
                            "(it is not a bridge)")
    return int(link["mtu"])


def _open_tap(wanted: str | None, vnet_hdr: bool) -> tuple[str, int]:
    flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL | (IFF_VNET_HDR if vnet_hdr else 0)
    names = [wanted] if wanted else (f"{TAP_PREFIX}{next(_next_index)}" for _ in range(MAX_NAME_TRIES))
    for name in names:
        if wanted is None and _exists(name):
            continue
        try:
            fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise _system_error(f"Unable to open {TUN_DEVICE}, is tun module loaded?: "
                                f"{os.strerror(exc.errno or 0)}") from exc
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
            return name, fd
        except OSError as exc:
            os.close(fd)
            if wanted is None and exc.errno in (errno.EBUSY, errno.EEXIST):
                continue      # taken between the check and the ioctl
            raise _system_error(f"Unable to create tap device {name}: "
                                f"{os.strerror(exc.errno or 0)}") from exc
    raise _system_error(f"Unable to generate a free name for a tap device ({TAP_PREFIX}N)")


def _exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _open_vhost() -> int | None:
    try:
        return os.open(VHOST_NET_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None    # QEMU then moves packets itself, as libvirt falls back


async def _ip(*args: str, failure: str, missing: str | None = None) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            IP, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
    except OSError as exc:
        raise _system_error(f"{failure}: cannot run '{IP}': {exc.strerror}") from exc
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        if missing is not None and "does not exist" in text:
            text = missing
        raise _system_error(f"{failure}: {text or f'ip exited with status {proc.returncode}'}")
    return out.decode()
