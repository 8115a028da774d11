"""Host interfaces a network needs: its bridge, the bridge's address, IPv4 forwarding.

Everything goes through ``ip`` (iproute2), as the QEMU driver's taps do; the
checks libvirt makes before starting a network (a route to the same subnet on
another interface, a bridge name already taken) read the kernel's own tables.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket

from ...errors import ErrorDomain, ErrorNumber, error, libvirtError

IP = "/usr/sbin/ip"
PROC_NET_ROUTE = "/proc/net/route"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def system_error(detail: str) -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NETWORK, detail)


def exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


async def ip(*args: str, failure: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            IP, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
    except OSError as exc:
        raise system_error(f"{failure}: cannot run '{IP}': {exc.strerror}") from exc
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        raise system_error(f"{failure}: {text or f'ip exited with status {proc.returncode}'}")
    return out.decode()


async def link_info(name: str) -> dict | None:
    """``ip -details link show``'s record of ``name``, None if there is no such interface."""
    if not exists(name):
        return None
    out = await ip("-json", "-details", "link", "show", "dev", name, failure=f"Cannot query interface '{name}'")
    try:
        return json.loads(out)[0]
    except (ValueError, IndexError):
        return None


def is_bridge(link: dict | None) -> bool:
    return bool(link) and link.get("linkinfo", {}).get("info_kind") == "bridge"


def check_route_collision(network: ipaddress.IPv4Network, own_bridge: str) -> None:
    """libvirt's networkCheckRouteCollision: refuse a subnet some interface already routes."""
    try:
        with open(PROC_NET_ROUTE) as f:
            lines = f.read().splitlines()
    except OSError:
        return
    if not lines or not lines[0].startswith("Iface"):
        return
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        iface, dest, mask = parts[0], parts[1], parts[7]
        try:
            # /proc/net/route prints the addresses as host-order hex of network-order words
            d = ipaddress.IPv4Address(socket.ntohl(int(dest, 16)))
            m = ipaddress.IPv4Address(socket.ntohl(int(mask, 16)))
        except ValueError:
            continue
        if iface == own_bridge:
            continue
        if int(d) & int(m) == int(network.network_address) and m == network.netmask:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NETWORK,
                        f"Network is already in use by interface {iface}")


async def create_bridge(name: str, mac: str | None, stp: bool, delay: int, mtu: int | None) -> None:
    if exists(name):
        raise system_error(f"error creating bridge interface {name}: File exists")
    args = ["link", "add", "name", name]
    if mac:
        args += ["address", mac]
    if mtu:
        args += ["mtu", str(mtu)]
    # the kernel takes the delay in centiseconds; it is set before STP is switched on,
    # as libvirt does, since with STP on the kernel refuses a delay under 2 s
    args += ["type", "bridge", "forward_delay", str(delay * 100)]
    await ip(*args, failure=f"error creating bridge interface {name}")
    try:
        if stp:
            await ip("link", "set", "dev", name, "type", "bridge", "stp_state", "1",
                     failure=f"Unable to set STP on bridge {name}")
    except BaseException:
        await delete_bridge(name)
        raise


async def add_address(name: str, interface: ipaddress.IPv4Interface) -> None:
    await ip("addr", "add", str(interface), "broadcast", str(interface.network.broadcast_address),
             "dev", name, failure=f"Failed to add IP address {interface} to {name}")


async def set_up(name: str) -> None:
    await ip("link", "set", "dev", name, "up", failure=f"Failed to set bridge {name} up")


async def delete_bridge(name: str) -> None:
    if not exists(name):
        return
    try:
        await ip("link", "del", "dev", name, failure=f"Failed to delete bridge {name}")
    except libvirtError:
        if exists(name):
            raise


def enable_ip_forwarding() -> None:
    """NAT needs the kernel to forward IPv4 (libvirt's networkEnableIPForwarding)."""
    try:
        with open(IP_FORWARD) as f:
            if f.read().strip() == "1":
                return
        with open(IP_FORWARD, "w") as f:
            f.write("1\n")
    except OSError as exc:
        raise system_error(f"cannot enable {IP_FORWARD}: {exc.strerror}") from exc
