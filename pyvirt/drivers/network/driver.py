"""The host-wide network driver: every virtual network of one root directory.

Files, as libvirt keeps them (under the daemon's state directory)::

    etc/network/NAME.xml          persistent definitions
    etc/network/autostart/NAME    present: started when the driver starts
    run/network/NAME.xml          an active network's live definition (its status)
    run/network/NAME.{conf,pid,leases,hostsfile,addnhosts}   its dnsmasq

A daemon that starts finds the networks a previous one left active: while
their bridge is still there it keeps them (bridge, dnsmasq, nftables table
untouched; a dnsmasq that died is started again), otherwise it forgets them.
Then it starts the autostart networks that are not active.  On first start
(no ``etc/network`` yet) it defines libvirt's ``default`` network, as the
libvirt-daemon-config-network package does, without starting it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid as uuidlib
from pathlib import Path
from typing import NoReturn

from ...conf import network as netconf
from ...conf.fileutil import write_atomic
from ...conf.network import NetworkDef
from ...driver import EventBus
from ...driver_network import NetworkEvent
from ...enums_more import NetworkEventID, NetworkEventLifecycle
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ...refs import NetworkRef, format_uuid
from . import bandwidth, dnsmasq, firewall, netdev, portcheck, update

log = logging.getLogger("pyvirt.network")

LIFECYCLE = NetworkEventID.LIFECYCLE
DEFINED, UNDEFINED, STARTED, STOPPED = (NetworkEventLifecycle.DEFINED, NetworkEventLifecycle.UNDEFINED,
                                        NetworkEventLifecycle.STARTED, NetworkEventLifecycle.STOPPED)
MAX_BRIDGE_INDEX = 256
UPDATE_LIVE, UPDATE_CONFIG = 1, 2              # VIR_NETWORK_UPDATE_AFFECT_*


class NetworkObj:
    """One network: its persistent definition (None: transient), its live one while active."""

    def __init__(self, config: NetworkDef | None, live: NetworkDef | None = None) -> None:
        known = config or live
        assert known is not None
        # a network is never renamed: its name and uuid outlive both definitions
        self.name = known.name
        self.uuid = known.uuid
        self.config = config
        self.live: NetworkDef | None = live
        self.autostart = False
        self.dnsmasq_pid: int | None = None
        self.taps: dict[str, str] = {}          # tap -> the domain it belongs to (listing only)

    @property
    def definition(self) -> NetworkDef:
        current = self.live or self.config
        assert current is not None
        return current

    @property
    def active(self) -> bool:
        return self.live is not None

    @property
    def persistent(self) -> bool:
        return self.config is not None

    def ref(self) -> NetworkRef:
        return NetworkRef(self.name, uuidlib.UUID(self.uuid).bytes)


def no_network(detail: str) -> libvirtError:
    return error(ErrorNumber.NO_NETWORK, ErrorDomain.NETWORK, detail)


def not_active(obj: NetworkObj) -> libvirtError:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK, f"network '{obj.name}' is not active")


class NetworkDriver:
    """Every network under ``root``; one per daemon (or embedded root)."""

    def __init__(self, root: Path | str, default_network: bool = True) -> None:
        self.root = Path(root)
        self.config_dir = self.root / "etc" / "network"
        self.autostart_dir = self.config_dir / "autostart"
        self.run_dir = self.root / "run" / "network"
        self.default_network = default_network
        self.events = EventBus()
        self.networks: dict[str, NetworkObj] = {}      # by uuid
        self.lock = asyncio.Lock()
        self._initialized = False

    # -- lookups -------------------------------------------------------------------------------

    def find_name(self, name: str) -> NetworkObj | None:
        return next((o for o in self.networks.values() if o.name == name), None)

    def by_name(self, name: str) -> NetworkObj:
        obj = self.find_name(name)
        if obj is None:
            raise no_network(f"no network with matching name '{name}'")
        return obj

    def by_uuid(self, uuid: bytes) -> NetworkObj:
        obj = self.networks.get(format_uuid(uuid))
        if obj is None:
            raise no_network(f"no network with matching uuid '{format_uuid(uuid)}'")
        return obj

    def by_ref(self, ref: NetworkRef) -> NetworkObj:
        obj = self.networks.get(format_uuid(ref.uuid))
        if obj is None:
            raise no_network(f"no network with matching uuid '{format_uuid(ref.uuid)}' ({ref.name})")
        return obj

    # -- the host-level API the QEMU driver uses --------------------------------------------------

    def port_for(self, network_name: str) -> tuple[str, str]:
        """(bridge, forward mode: 'nat', 'bridge' or 'none') of an active network a NIC joins."""
        obj = self.by_name(network_name)
        if not obj.active:
            raise not_active(obj)
        live = obj.live
        assert live is not None
        if live.bridge is None:
            _direct_port(live)
        portcheck.check_port(live)          # NICs name no portgroup: the default one's settings apply
        return live.bridge, live.forward or "none"

    def tap_attached(self, network_name: str, tap: str, domain: str) -> None:
        """A guest's tap joined the network's bridge (kept for listing: connections='N')."""
        obj = self.find_name(network_name)
        if obj is not None and obj.active:
            obj.taps[tap] = domain

    def tap_detached(self, network_name: str, tap: str) -> None:
        obj = self.find_name(network_name)
        if obj is not None:
            obj.taps.pop(tap, None)

    # -- files -------------------------------------------------------------------------------------

    def _config_path(self, name: str) -> Path:
        return self.config_dir / f"{name}.xml"

    def _autostart_path(self, name: str) -> Path:
        return self.autostart_dir / name

    def _status_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.xml"

    def files(self, name: str) -> dnsmasq.Files:
        return dnsmasq.Files(self.run_dir, name)

    def save_config(self, net: NetworkDef) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._config_path(net.name), net.to_xml(), mode=0o600)

    def save_status(self, obj: NetworkObj) -> None:
        assert obj.live is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._status_path(obj.name), obj.live.to_xml(), mode=0o600)

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def set_autostart(self, obj: NetworkObj, on: bool) -> None:
        if on:
            self.autostart_dir.mkdir(parents=True, exist_ok=True)
            self._autostart_path(obj.name).write_text("")
        else:
            self._unlink(self._autostart_path(obj.name))
        obj.autostart = on

    def emit(self, obj: NetworkObj, event: int) -> None:
        self.events.emit(NetworkEvent(int(LIFECYCLE), obj.ref(), (int(event), 0)))

    # -- start-up and shut-down ----------------------------------------------------------------

    async def initialize(self) -> None:
        if self._initialized:
            return
        self._initialized = True
        first_start = not self.config_dir.exists()
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.config_dir.glob("*.xml")):
            try:
                net = netconf.parse(path.read_text())
            except (OSError, libvirtError) as exc:
                log.error("skipping network definition %s: %s", path, exc)
                continue
            obj = NetworkObj(net)
            obj.autostart = self._autostart_path(net.name).exists()
            self.networks[net.uuid] = obj
        for path in sorted(self.run_dir.glob("*.xml")):
            await self._adopt(path)
        if first_start and self.default_network and self.find_name("default") is None:
            try:
                await self.define(netconf.default_network())
            except libvirtError as exc:
                log.warning("libvirt's default network not defined: %s", exc)
        for obj in list(self.networks.values()):
            if obj.autostart and not obj.active:
                try:
                    async with self.lock:
                        await self.start(obj)
                except libvirtError as exc:
                    log.error("autostart of network '%s' failed: %s", obj.name, exc)

    async def _adopt(self, path: Path) -> None:
        """A network a previous daemon left active: keep it while its bridge is there."""
        try:
            live = netconf.parse(path.read_text())
        except (OSError, libvirtError) as exc:
            log.error("dropping unreadable network status %s: %s", path, exc)
            self._unlink(path)
            return
        obj = self.networks.get(live.uuid)
        if obj is None:
            obj = NetworkObj(None, live)    # transient
        files = self.files(live.name)
        if live.virtual and (live.bridge is None or not netdev.exists(live.bridge)):
            log.warning("network '%s' lost its bridge %s while no daemon ran: now inactive",
                        live.name, live.bridge)
            await self._teardown(live, files)
            self._unlink(path)
            return
        obj.live = live
        self.networks[live.uuid] = obj
        if firewall.needed(live) and not await firewall.present(live.name):
            log.warning("firewall table of network '%s' is gone: adding it again", live.name)
            try:
                await firewall.add(live)
            except libvirtError as exc:
                log.error("cannot restore the firewall table of network '%s': %s", live.name, exc)
        if dnsmasq.needed(live):
            obj.dnsmasq_pid = dnsmasq.running_pid(files)
            if obj.dnsmasq_pid is None:
                log.warning("dnsmasq of network '%s' is gone: starting it again", live.name)
                try:
                    obj.dnsmasq_pid = await dnsmasq.start(live, files)
                except libvirtError as exc:
                    log.error("cannot restart dnsmasq of network '%s': %s", live.name, exc)
        log.info("network '%s' adopted (bridge %s, dnsmasq %s)", live.name, live.bridge, obj.dnsmasq_pid)

    async def close(self) -> None:
        """Stop managing; active networks keep running for the next daemon to adopt."""

    # -- define / undefine ---------------------------------------------------------------------------

    def _assign_check(self, net: NetworkDef, live: bool) -> NetworkObj | None:
        """libvirt's virNetworkObjAssignDef checks; the existing object of that uuid, if any."""
        same = self.networks.get(net.uuid)
        if same is not None:
            if same.name != net.name:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.NETWORK,
                            f"network '{same.name}' is already defined with uuid {net.uuid}")
            if live and same.active:
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK,
                            f"network is already active as '{same.name}'")
            return same
        other = self.find_name(net.name)
        if other is not None:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.NETWORK,
                        f"network '{net.name}' already exists with uuid {other.uuid}")
        return None

    def _fill_defaults(self, net: NetworkDef) -> None:
        """What libvirt's network driver adds to a new definition: a bridge name, a bridge MAC."""
        if not net.virtual:
            return
        taken = {o.definition.bridge: o.name for o in self.networks.values()
                 if o.definition.bridge and o.uuid != net.uuid}
        taken.update({o.config.bridge: o.name for o in self.networks.values()
                      if o.config is not None and o.config.bridge and o.uuid != net.uuid})
        if net.bridge is None:
            for index in range(MAX_BRIDGE_INDEX):
                candidate = netconf.BRIDGE_TEMPLATE % index
                if candidate not in taken and not netdev.exists(candidate):
                    net.bridge = candidate
                    break
            else:
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NETWORK,
                            "Bridge generation exceeded max id 256")
        elif net.bridge in taken:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NETWORK,
                        f"bridge name '{net.bridge}' already in use.")
        if net.mac is None:
            net.mac = "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))

    async def define(self, net: NetworkDef) -> NetworkObj:
        portcheck.validate(net)
        obj = self._assign_check(net, live=False)
        if obj is not None and obj.config is not None:
            # keep what libvirt assigned the first time when the new text leaves it out
            net.bridge = net.bridge or obj.config.bridge
            net.mac = net.mac or obj.config.mac
        self._fill_defaults(net)
        self.save_config(net)
        if obj is None:
            obj = NetworkObj(net)
            self.networks[net.uuid] = obj
        else:
            obj.config = net           # an active network runs on; the new text is for its next start
        self.emit(obj, DEFINED)
        return obj

    async def undefine(self, obj: NetworkObj) -> None:
        if not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK, "network is not persistent")
        self._unlink(self._config_path(obj.name))
        self.set_autostart(obj, False)
        obj.config = None
        if not obj.active:
            self.networks.pop(obj.uuid, None)
        self.emit(obj, UNDEFINED)

    # -- start / destroy ---------------------------------------------------------------------------

    async def start(self, obj: NetworkObj) -> None:
        """Bring ``obj`` up from its persistent definition (caller holds the lock)."""
        if obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK, "network is already active")
        assert obj.config is not None
        live = netconf.parse(obj.config.to_xml())
        await self._start_live(obj, live)

    async def _start_live(self, obj: NetworkObj, live: NetworkDef) -> None:
        if live.forward == "nat" and live.nat_ports is None:
            live.nat_ports = firewall.DEFAULT_NAT_PORTS     # libvirt's live definition states them
        files = self.files(live.name)
        if live.virtual:
            await self._start_virtual(obj, live, files)
        else:
            await self._start_bridged(live)
        obj.live = live
        self.save_status(obj)
        self.emit(obj, STARTED)
        log.info("network '%s' started on %s", live.name, live.bridge)

    async def _start_bridged(self, live: NetworkDef) -> None:
        bridge = live.bridge
        if bridge is None:
            return      # a macvtap pool, as libvirt's: nothing on the host to set up (see _direct_port)
        link = await netdev.link_info(bridge)
        if link is None:
            raise netdev.system_error(f"Cannot get interface MTU on '{bridge}': No such device")
        if not netdev.is_bridge(link):
            raise netdev.system_error(f"Unable to use '{bridge}' for network '{live.name}': "
                                      "it is not a bridge")
        try:
            await bandwidth.apply(bridge, live.bandwidth)      # libvirt shapes the host's bridge too
        except BaseException:
            if live.bandwidth is not None:
                await bandwidth.clear(bridge)
            raise

    async def _start_virtual(self, obj: NetworkObj, live: NetworkDef, files: dnsmasq.Files) -> None:
        assert live.bridge is not None
        ip = live.ipv4()
        if ip is not None:
            netdev.check_route_collision(ip.network, live.bridge)
        await netdev.create_bridge(live.bridge, live.mac, live.stp, live.delay, live.mtu)
        try:
            if ip is not None:
                await netdev.add_address(live.bridge, ip.interface)
            await netdev.set_up(live.bridge)
            if firewall.needed(live):
                await firewall.add(live)
            if live.forward == "nat":
                netdev.enable_ip_forwarding()
            if dnsmasq.needed(live):
                obj.dnsmasq_pid = await dnsmasq.start(live, files)
            await bandwidth.apply(live.bridge, live.bandwidth)
        except BaseException:
            await self._teardown(live, files)
            obj.dnsmasq_pid = None
            raise

    async def _teardown(self, live: NetworkDef, files: dnsmasq.Files) -> None:
        """Undo a start, each part whether or not the others worked."""
        failures: list[libvirtError] = []
        steps = []
        if live.bandwidth is not None and live.bridge is not None:
            steps.append(bandwidth.clear(live.bridge))
        if live.virtual:
            steps.append(dnsmasq.stop(files))
            if firewall.needed(live):
                steps.append(firewall.remove(live.name))
            if live.bridge is not None:
                steps.append(netdev.delete_bridge(live.bridge))
        for step in steps:
            try:
                await step
            except libvirtError as exc:
                failures.append(exc)
        files.remove()
        if failures:
            raise failures[0]

    async def destroy(self, obj: NetworkObj) -> None:
        if not obj.active:
            raise not_active(obj)
        live = obj.live
        assert live is not None
        try:
            await self._teardown(live, self.files(live.name))
        finally:
            obj.live = None
            obj.dnsmasq_pid = None
            obj.taps.clear()
            self._unlink(self._status_path(live.name))
            if not obj.persistent:
                self.networks.pop(obj.uuid, None)
            self.emit_stopped(obj, live)

    def emit_stopped(self, obj: NetworkObj, live: NetworkDef) -> None:
        self.events.emit(NetworkEvent(int(LIFECYCLE), NetworkRef(live.name, live.uuid_bytes), (int(STOPPED), 0)))

    async def create_transient(self, net: NetworkDef) -> NetworkObj:
        """virNetworkCreateXML: a network that exists while it runs (or runs from now on, when
        a persistent one of that name and uuid is inactive)."""
        portcheck.validate(net)
        obj = self._assign_check(net, live=True)
        fresh = obj is None
        if obj is None:
            obj = NetworkObj(None, net)
        self._fill_defaults(net)
        self.networks[net.uuid] = obj
        try:
            await self._start_live(obj, net)
        except BaseException:
            if fresh:
                self.networks.pop(net.uuid, None)
            raise
        return obj

    # -- update ------------------------------------------------------------------------------------

    async def update(self, obj: NetworkObj, command: int, section: int, parent_index: int, xml: str,
                     flags: int) -> None:
        """virNetworkUpdate on the live definition, the persistent one or both (caller holds the lock)."""
        live, config = bool(flags & UPDATE_LIVE), bool(flags & UPDATE_CONFIG)
        if not live and not config:            # VIR_NETWORK_UPDATE_AFFECT_CURRENT
            live, config = obj.active, not obj.active
        if live and not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK, "network is not running")
        if config and not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK,
                        "cannot change persistent config of a transient network")
        # change copies first: a refused change leaves both definitions as they were
        new_live = netconf.parse(obj.live.to_xml()) if live and obj.live else None
        new_config = netconf.parse(obj.config.to_xml()) if config and obj.config else None
        for net in (new_live, new_config):
            if net is not None:
                update.apply(net, command, section, parent_index, xml)
                netconf.parse(net.to_xml())        # libvirt's final format/parse: nothing illegal added
        if new_config is not None:
            self.save_config(new_config)
            obj.config = new_config
        if new_live is not None:
            obj.live = new_live
            self.save_status(obj)
            await self._update_live(obj, new_live, section)

    async def _update_live(self, obj: NetworkObj, live: NetworkDef, section: int) -> None:
        """Make a running network serve its changed definition, as libvirt's networkUpdate does."""
        if section == update.SECTION_FORWARD_INTERFACE and firewall.needed(live):
            await firewall.add(live)          # the masquerade rule names the forward dev
        if not dnsmasq.needed(live):
            return
        files = self.files(live.name)
        if section in (update.SECTION_IP_DHCP_RANGE, update.SECTION_DNS_TXT, update.SECTION_DNS_SRV):
            # ranges and records live in dnsmasq's configuration, which only a restart re-reads
            await dnsmasq.stop(files)
            obj.dnsmasq_pid = await dnsmasq.start(live, files)
        else:
            dnsmasq.write_hosts(live, files)
            await dnsmasq.reload_hosts(files)

    # -- leases ----------------------------------------------------------------------------------

    def leases(self, obj: NetworkObj, mac: str | None) -> list[tuple]:
        """The network's current DHCP leases as remote_network_dhcp_lease tuples."""
        live = obj.live
        if live is None or live.ipv4() is None or live.bridge is None:
            return []
        ip = live.ipv4()
        assert ip is not None
        now = int(time.time())
        out = []
        for expiry, lease_mac, address, hostname, clientid in dnsmasq.read_leases(self.files(live.name)):
            if expiry and expiry < now:
                continue            # libvirt lists live leases only
            if mac is not None and lease_mac.lower() != mac.lower():
                continue
            out.append((live.bridge, expiry, 0, lease_mac, None, address, ip.prefix, hostname, clientid))
        return out


def _direct_port(live: NetworkDef) -> NoReturn:
    """A bridge-mode network with no bridge hands out macvtap ports: libvirt refuses a port when its
    pool is empty, as here; pyvirt has no macvtap, so it refuses a pool with devices too."""
    if not live.forward_ifs:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NETWORK,
                    f"network '{live.name}' uses a direct mode, but has no forward dev and no interface pool")
    raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.NETWORK,
                f"network '{live.name}' hands out macvtap devices, which pyvirt does not support")
