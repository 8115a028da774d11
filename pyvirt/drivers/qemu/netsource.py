"""``<interface type='network'>`` and ``type='ethernet'``: the host side.

A NIC on a virtual network gets its tap as a bridged NIC does (see
:mod:`.tap`), on the bridge the network driver names
(``NetworkDriver.port_for``: libvirt's errors for a missing or inactive
network); the live XML shows that bridge as libvirt's does
(``<source network='N' bridge='virbr0'/>``).  An ``ethernet`` NIC is a plain
tap on no bridge: made by the daemon (``vnetN`` or its ``<target dev>``)
with the guest's MAC (first byte 0xFE), or, with ``<target managed='no'>``,
a tap the user made and keeps, only opened.  Every tap the daemon made
goes away with QEMU.

Bridges can go while guests run: a network destroyed and started again has
a new bridge with nothing on it.  As libvirt does when it reconnects to its
guests, every network NIC's tap is put back on its network's bridge when
that network starts and when the daemon (re)starts (:func:`reattach`).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
from typing import Any

from ...conf import DomainDef
from ...conf.devices import GENERATED_TAP_PREFIXES, Interface
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import tap as tapmod

log = logging.getLogger(__name__)

NETWORK_EVENT_STARTED = 2          # VIR_NETWORK_EVENT_STARTED


def network_nics(d: DomainDef) -> list[Interface]:
    return [nic for nic in d.devices.interfaces if nic.type == "network"]


def resolve(d: DomainDef, networks: Any) -> None:
    """Give each network NIC of ``d`` (a live definition) its network's bridge."""
    for nic in network_nics(d):
        nic.source_bridge = bridge_of(networks, nic)


def bridge_of(networks: Any, nic: Interface) -> str:
    if networks is None:
        raise error(ErrorNumber.NO_SUPPORT, ErrorDomain.QEMU,
                    f"interface '{nic.mac}': a network NIC needs the network driver, "
                    "which this connection does not have")
    bridge, _mode = networks.port_for(nic.source)
    return bridge


async def create_ethernet(nic: Interface, vhost: bool) -> tapmod.Tap:
    """The tap of an ``ethernet`` NIC: made here, or the user's (managed='no') opened."""
    virtio = nic.model in (None, "virtio")
    if nic.target_managed is False:
        name = nic.target_dev or ""
        tapmod.check_ifname(name)
        if not tapmod._exists(name):
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NONE,
                        f"Unable to get index for interface {name}: No such device")
        tap = tapmod.Tap(nic.alias or "", name, _open_existing(name, virtio))
    else:
        wanted = nic.target_dev if nic.target_dev and not nic.target_dev.startswith(GENERATED_TAP_PREFIXES) \
            else None
        if wanted is not None:
            tapmod.check_ifname(wanted)
        name, fd = tapmod._open_tap(wanted, vnet_hdr=virtio)
        tap = tapmod.Tap(nic.alias or "", name, fd)
        try:
            await tapmod._ip("link", "set", "dev", name, "address", tapmod.host_mac(nic.mac), "up",
                             failure=f"Unable to set up tap device {name}")
        except BaseException:
            tap.close()
            raise
    try:
        if vhost:
            tap.vhost_fd = tapmod._open_vhost()
            if tap.vhost_fd is None:
                raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NONE,
                            f"Unable to open {tapmod.VHOST_NET_DEVICE}")
    except BaseException:
        tap.close()
        raise
    nic.target_dev = tap.name
    return tap


def _open_existing(name: str, vnet_hdr: bool) -> int:
    """A descriptor on the existing tap ``name`` (no IFF_TUN_EXCL: it is meant to exist)."""
    flags = tapmod.IFF_TAP | tapmod.IFF_NO_PI | (tapmod.IFF_VNET_HDR if vnet_hdr else 0)
    fd = os.open(tapmod.TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, tapmod.TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    except OSError as exc:
        os.close(fd)
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NONE,
                    f"Unable to open tap device {name}: {os.strerror(exc.errno or 0)}") from exc
    return fd


# -- bookkeeping with the network driver ----------------------------------------------

def attached(networks: Any, d: DomainDef | None, nics: list[Interface] | None = None) -> None:
    """Tell the network driver which taps joined its bridges (for its listing)."""
    if networks is None or d is None:
        return
    for nic in network_nics(d) if nics is None else nics:
        if nic.type == "network" and nic.target_dev:
            networks.tap_attached(nic.source, nic.target_dev, d.name)


def detached(networks: Any, d: DomainDef | None, nics: list[Interface] | None = None) -> None:
    if networks is None or d is None:
        return
    for nic in network_nics(d) if nics is None else nics:
        if nic.type == "network" and nic.target_dev:
            networks.tap_detached(nic.source, nic.target_dev)


async def reattach(qemu: Any, network: str | None = None) -> None:
    """Put the taps of running guests' network NICs (on ``network``, or all) back
    on their network's bridge; a network that is not active is skipped."""
    networks = qemu.networks
    if networks is None:
        return
    for obj in list(qemu.domains):
        live = obj.live if obj.active else None
        if live is None:
            continue
        changed = False
        for nic in network_nics(live):
            if (network is not None and nic.source != network) or not nic.target_dev:
                continue
            try:
                bridge = bridge_of(networks, nic)
                await tapmod._ip("link", "set", "dev", nic.target_dev, "master", bridge, "up",
                                 failure=f"Unable to add bridge {bridge} port {nic.target_dev}")
            except libvirtError as exc:
                log.warning("%s: tap %s stays off network %s: %s", live.name, nic.target_dev, nic.source, exc)
                continue
            networks.tap_attached(nic.source, nic.target_dev, live.name)
            if nic.source_bridge != bridge:
                nic.source_bridge, changed = bridge, True
        if changed:
            obj.save_status()


def wire(qemu: Any, networks: Any) -> None:
    """Join a QemuDriver and the NetworkDriver beside it: network NICs resolve
    through it, and a network that starts gets its running guests' taps back."""
    qemu.networks = networks
    tasks: set[asyncio.Task[None]] = set()

    def on_event(event: Any) -> None:
        if event.event_id == 0 and event.detail and event.detail[0] == NETWORK_EVENT_STARTED:
            task = asyncio.get_running_loop().create_task(reattach(qemu, event.net.name),
                                                          name=f"reattach-{event.net.name}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    networks.events.subscribe(on_event)
