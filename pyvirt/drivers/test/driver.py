"""The in-memory ``test`` driver (``test:///default``).

Like libvirt's test driver, every ``test:///default`` connection in a
process (or daemon) shares one host, which starts with one running domain
named ``test``.  It accepts only ``type='test'`` domains.  Nothing runs:
state changes are bookkeeping, which makes it the reference for the
driver contract and a fast target for protocol tests.
"""

from __future__ import annotations

import copy
import socket
import time
from typing import Any

from ... import conf
from ...conf import drives
from ...driver import ConnectionInfo, EventBus, HypervisorConnection
from ...refs import DomainRef
from ...enums import (DomainState, EventDefinedDetail, EventResumedDetail,
                      EventStartedDetail, EventStoppedDetail, EventSuspendedDetail, EventType,
                      EventUndefinedDetail, PausedReason, RunningReason, ShutoffReason, StartFlags,
                      XMLFlags, DriverFeature, DestroyFlags, UndefineFlags)
from ...errors import ErrorDomain, ErrorLevel, ErrorNumber, check_flags, error, libvirtError
from ..domainlist import DomainList, DomainObj, DomainQueries, emit_lifecycle, not_running
from . import content
from .cpu_files import CPUFilesAPI
from .devices import DeviceAPI
from .domains import DomainExtrasAPI
from .ifaces import IfaceNodedevAPI
from .jobs import JobsAPI
from .network import TestNetworkConnection, TestNetworks
from .checkpoints import CheckpointAPI
from .snapshots import SnapshotAPI, snapshot_tree
from .stats import StatsAPI
from .storage import TestPools, TestStorageConnection
from . import tuning
from .tuning_api import TuningAPI
from .guest import GuestAPI
from .postparse import complete_videos

# libvirt's test driver takes any virt type a caller writes (its parser has no driver check);
# pyvirt's leaves out lxc, whose container definitions (<init>, os type 'exe') its XML model lacks
DOMAIN_TYPES = ("test", "qemu", "kvm", "xen", "uml", "openvz", "vmware", "hyperv", "vbox", "phyp",
                "parallels", "bhyve", "vz", "none")
LIB_VERSION = 9000000
DEFAULT_DOMAIN_XML = content.DOMAIN_XML

# What the test host answers to CONNECT_SUPPORTS_FEATURE: the features every libvirt driver
# reports (FD_PASSING 8, TYPED_PARAM_STRING 9, NETWORK_UPDATE_HAS_CORRECT_ORDER 16), no others
_FEATURES = {8, int(DriverFeature.TYPED_PARAM_STRING), 16}


class TestHost:
    """The shared state of one test host."""

    def __init__(self, populate: bool = True) -> None:
        self.events = EventBus()
        self.nodedev_events = EventBus()       # NodeDeviceEvent, as libvirt's test driver sends them
        self.domains = DomainList(ErrorDomain.TEST)
        self.domains.has_snapshots = lambda obj: bool(snapshot_tree(self, obj)["snaps"])
        self.next_id = 1
        self.networks = TestNetworks()
        self.pools = TestPools()
        self.uri = "test:///default"
        self.node_info = content.NODE_INFO
        self.cells = content.CELLS
        self.interfaces: list[str] = [content.INTERFACE_XML] if populate else []
        self.node_devices: list[str] = [xml for _name, _parent, _caps, xml in content.NODE_DEVICES] if populate else []
        if populate:
            default = DomainObj(conf.parse(DEFAULT_DOMAIN_XML, DOMAIN_TYPES, "test"), persistent=True)
            self.domains.add(default)
            self.start(default, RunningReason.UNKNOWN, emit=False)   # libvirt's: running, reason unknown
            self.networks.add(content.NETWORK_XML)
            self.pools.add(content.POOL_XML)

    def start(self, obj: DomainObj, reason: int, emit: bool = True, paused: bool = False,
              live_def: conf.DomainDef | None = None, detail: int = EventStartedDetail.BOOTED) -> None:
        if live_def is None and obj.persistent:
            # libvirt runs the definition it has and keeps, as the one to come back to, a copy
            # made through its XML (virDomainObjSetDefTransient): parsed again, disks given a bus
            # by the first parse sort anew (a floppy then follows the IDE disks)
            obj.live, obj.definition = obj.definition, _parse(obj.definition.format(secure=True))
        obj.live = (live_def or obj.live or obj.definition).copy()
        obj.id = self.next_id
        obj.live.id = obj.id
        obj.extra["start_time"] = str(time.monotonic())
        self.next_id += 1
        tuning.live_tune(obj)     # the running definition's tuning starts as the persistent one's
        if paused:
            obj.set_state(DomainState.PAUSED, PausedReason.USER)
        else:
            obj.set_state(DomainState.RUNNING, reason)
        if emit:
            emit_lifecycle(self.events, obj, EventType.STARTED, detail)
            if paused:
                emit_lifecycle(self.events, obj, EventType.SUSPENDED, EventSuspendedDetail.PAUSED)

    def stop(self, obj: DomainObj, reason: ShutoffReason, detail: EventStoppedDetail) -> None:
        obj.id = -1
        obj.live = None
        obj.set_state(DomainState.SHUTOFF, reason)
        emit_lifecycle(self.events, obj, EventType.STOPPED, detail)
        if not obj.persistent:
            self.domains.remove(obj)


_DEFAULT_HOST: TestHost | None = None


def default_host() -> TestHost:
    """The process-wide ``test:///default`` host, created on first use."""
    global _DEFAULT_HOST
    if _DEFAULT_HOST is None:
        _DEFAULT_HOST = TestHost()
    return _DEFAULT_HOST


def reset_default_host() -> None:
    """Forget the shared host (tests use this for isolation)."""
    global _DEFAULT_HOST
    _DEFAULT_HOST = None


def _parse(xml: str) -> conf.DomainDef:
    """A caller's domain XML, with the defaults libvirt's test driver fills in (its host is i686)."""
    new = conf.parse(xml, DOMAIN_TYPES, "test")
    if new.os.arch is None:
        new.os.arch = "i686"
    drives.complete(new)      # libvirt's generic post-parse: drive addresses, disk controllers
    complete_videos(new)
    # testDomainGenerateIfnames: each interface without a host-side name gets the first free testnetN
    for net in new.devices.interfaces:
        if not net.target_dev:
            taken = {n.target_dev for n in new.devices.interfaces}
            net.target_dev = next(f"testnet{i}" for i in range(len(taken) + 1) if f"testnet{i}" not in taken)
    return new


async def _plain_not_found(lookup: Any) -> DomainRef:
    try:
        return await lookup
    except libvirtError as exc:
        if exc.get_error_code() != ErrorNumber.NO_DOMAIN:
            raise
        raise libvirtError("Domain not found", ErrorNumber.NO_DOMAIN, ErrorDomain.TEST, ErrorLevel.ERROR,
                           "Domain not found", None, None) from None


async def open_connection(info: ConnectionInfo, host: TestHost | None = None) -> "TestConnection":
    return TestConnection(info, host or default_host())


def load_host(path: str) -> TestHost:
    """A private host from a node document in libvirt's format (``test:///PATH``): as in
    libvirt, each connection to a file gets its own host, read when it opens."""
    from . import hostxml
    host = TestHost(populate=False)
    host.uri = f"test://{path}"
    hostxml.load(path, host, DOMAIN_TYPES, _parse)
    return host


async def open_path(path: str, info: ConnectionInfo) -> "TestConnection":
    import asyncio
    host = await asyncio.get_running_loop().run_in_executor(None, load_host, path)   # file I/O off the loop
    return TestConnection(info, host)


class TestConnection(CPUFilesAPI, DeviceAPI, JobsAPI, TuningAPI, GuestAPI, DomainExtrasAPI, StatsAPI, SnapshotAPI,
                     CheckpointAPI, IfaceNodedevAPI,
                     DomainQueries, HypervisorConnection):
    driver_prefix = "test"
    error_domain = ErrorDomain.TEST

    def __init__(self, info: ConnectionInfo, host: TestHost) -> None:
        super().__init__(info, host.events)
        self.host = host
        # libvirt's test driver is its own storage and network driver too
        self.storage = TestStorageConnection(info, host.pools)
        self.network = TestNetworkConnection(info, host.networks)
        self.node_device_events = host.nodedev_events

    @property
    def domains(self) -> DomainList:
        return self.host.domains

    def _obj(self, dom: DomainRef) -> DomainObj:
        return self.host.domains.by_ref(dom)

    @staticmethod
    def _parse_domain(xml: str) -> conf.DomainDef:
        return _parse(xml)

    # libvirt's test driver reports a failed lookup as plain "Domain not found"
    async def domain_lookup_by_id(self, id: int) -> DomainRef:  # noqa: A002 - the wire field's name
        return await _plain_not_found(super().domain_lookup_by_id(id))

    async def domain_lookup_by_name(self, name: str) -> DomainRef:
        return await _plain_not_found(super().domain_lookup_by_name(name))

    async def domain_lookup_by_uuid(self, uuid: bytes) -> DomainRef:
        return await _plain_not_found(super().domain_lookup_by_uuid(uuid))

    # -- connection --------------------------------------------------------
    async def connect_get_type(self) -> str:
        return "TEST"

    async def connect_get_version(self) -> int:
        return 2

    async def connect_get_lib_version(self) -> int:
        return LIB_VERSION

    async def connect_get_hostname(self) -> str:
        return socket.gethostname()

    async def connect_get_uri(self) -> str:
        return self.host.uri

    async def connect_get_capabilities(self) -> str:
        return content.capabilities(self.host.cells)

    async def node_get_info(self) -> tuple:
        return self.host.node_info

    async def connect_supports_feature(self, feature: int) -> int:
        return int(feature in _FEATURES)

    async def connect_is_secure(self) -> int:
        return 1

    # -- lookup and definition ---------------------------------------------
    async def domain_define_xml(self, xml: str) -> DomainRef:
        return await self.domain_define_xml_flags(xml, 0)

    async def domain_define_xml_flags(self, xml: str, flags: int) -> DomainRef:
        check_flags(flags, 1, "testDomainDefineXMLFlags", ErrorDomain.TEST)
        new = _parse(xml)
        old = self.host.domains.check_new(new)
        if old is None:
            obj = DomainObj(new, persistent=True)
            self.host.domains.add(obj)
            detail = EventDefinedDetail.ADDED
        else:
            old.definition = new
            detail = EventDefinedDetail.ADDED if not old.persistent else EventDefinedDetail.UPDATED
            old.persistent = True
            obj = old
        tuning.set_config(obj, tuning.parse_tune(xml, new))
        emit_lifecycle(self.host.events, obj, EventType.DEFINED, detail)
        return obj.ref()

    async def domain_undefine(self, dom: DomainRef) -> None:
        await self.domain_undefine_flags(dom, 0)

    async def domain_undefine_flags(self, dom: DomainRef, flags: int) -> None:
        # libvirt 9.0's test driver knows these two only: it refuses CHECKPOINTS_METADATA (and
        # undefines a domain with checkpoints without it)
        check_flags(flags, int(UndefineFlags.MANAGED_SAVE | UndefineFlags.SNAPSHOTS_METADATA),
                    "testDomainUndefineFlags", ErrorDomain.TEST)
        obj = self._obj(dom)
        # (a running transient domain is "undefined" too: libvirt's test driver has no check)
        if obj.has_managed_save and not flags & UndefineFlags.MANAGED_SAVE:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.TEST,
                        "Refusing to undefine while domain managed save image exists")
        snapshots = len(snapshot_tree(self.host, obj)["snaps"])
        if not obj.active and snapshots and not flags & UndefineFlags.SNAPSHOTS_METADATA:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.TEST,
                        f"cannot delete inactive domain with {snapshots} snapshots")
        obj.has_managed_save = False
        obj.persistent = False
        emit_lifecycle(self.host.events, obj, EventType.UNDEFINED, EventUndefinedDetail.REMOVED)
        if not obj.active:
            self.host.domains.remove(obj)

    # -- lifecycle -----------------------------------------------------------
    async def domain_create_xml(self, xml_desc: str, flags: int) -> DomainRef:
        # libvirt 9.0's test driver starts neither paused nor autodestroyed: it refuses both
        check_flags(flags, int(StartFlags.VALIDATE), "testDomainCreateXML", ErrorDomain.TEST)
        new = _parse(xml_desc)
        old = self.host.domains.check_new(new, allow_active_same=False)
        if old is not None:
            obj = old    # boots the XML given; the persistent definition stays for the next start
        else:
            obj = DomainObj(new, persistent=False)
            self.host.domains.add(obj)
        tune = tuning.parse_tune(xml_desc, new)
        if old is None:
            tuning.set_config(obj, tune)
        self.host.start(obj, RunningReason.BOOTED, live_def=new)
        tuning.set_live(obj, copy.deepcopy(tune))
        return obj.ref()

    async def domain_create(self, dom: DomainRef) -> None:
        await self.domain_create_with_flags(dom, 0)

    async def domain_create_with_flags(self, dom: DomainRef, flags: int) -> DomainRef:
        check_flags(flags, 0, "testDomainCreateWithFlags", ErrorDomain.TEST)
        obj = self._obj(dom)
        if obj.active:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.TEST, f"Domain '{obj.name}' is already running")
        if obj.has_managed_save:     # start restores the managed-save image, as libvirt's
            obj.has_managed_save = False
            self.host.start(obj, RunningReason.RESTORED, detail=EventStartedDetail.RESTORED)
            return obj.ref()
        self.host.start(obj, RunningReason.BOOTED)
        return obj.ref()

    async def domain_destroy(self, dom: DomainRef) -> None:
        await self.domain_destroy_flags(dom, 0)

    async def domain_destroy_flags(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, int(DestroyFlags.GRACEFUL), "testDomainDestroyFlags", ErrorDomain.TEST)
        obj = self._active(dom)
        self.host.stop(obj, ShutoffReason.DESTROYED, EventStoppedDetail.DESTROYED)

    # libvirt's test driver looks at the state alone (no "domain is not running" check first)
    async def domain_suspend(self, dom: DomainRef) -> None:
        obj = self._obj(dom)
        if obj.state in (DomainState.SHUTOFF, DomainState.PAUSED):
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.TEST, f"domain '{obj.name}' not running")
        obj.set_state(DomainState.PAUSED, PausedReason.USER)
        emit_lifecycle(self.host.events, obj, EventType.SUSPENDED, EventSuspendedDetail.PAUSED)

    async def domain_resume(self, dom: DomainRef) -> None:
        obj = self._obj(dom)
        if obj.state != DomainState.PAUSED:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.TEST, f"domain '{obj.name}' not paused")
        obj.set_state(DomainState.RUNNING, RunningReason.UNPAUSED)
        emit_lifecycle(self.host.events, obj, EventType.RESUMED, EventResumedDetail.UNPAUSED)

    async def domain_shutdown(self, dom: DomainRef) -> None:
        await self.domain_shutdown_flags(dom, 0)

    async def domain_shutdown_flags(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, 0x1F, "testDomainShutdownFlags", ErrorDomain.TEST)
        obj = self._active(dom)
        self.host.stop(obj, ShutoffReason.SHUTDOWN, EventStoppedDetail.SHUTDOWN)

    async def domain_reboot(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, 0x1F, "testDomainReboot", ErrorDomain.TEST)
        self._active(dom)

    def _active(self, dom: DomainRef) -> DomainObj:
        obj = self._obj(dom)
        if not obj.active:
            raise not_running(obj)
        return obj

    # -- queries -------------------------------------------------------------
    async def domain_get_info(self, dom: DomainRef) -> tuple[int, int, int, int, int]:
        obj = self._obj(dom)
        d = obj.current
        # libvirt's test driver gives every domain, running or not, the time of day as its CPU time
        cpu_time = time.time_ns()
        memory = d.current_memory_kib if obj.active else d.memory_kib
        return int(obj.state), d.memory_kib, memory, d.current_vcpus, cpu_time

    async def domain_get_xml_desc(self, dom: DomainRef, flags: int) -> str:
        check_flags(flags, int(XMLFlags.SECURE | XMLFlags.INACTIVE | XMLFlags.UPDATE_CPU
                               | XMLFlags.MIGRATABLE), "testDomainGetXMLDesc", ErrorDomain.TEST)
        obj = self._obj(dom)
        inactive = bool(flags & XMLFlags.INACTIVE)
        config = inactive or not obj.active
        d = obj.definition if config else obj.current
        text = d.format(secure=bool(flags & XMLFlags.SECURE), inactive=inactive)
        return tuning.decorate_xml(text, tuning.config_tune(obj) if config else tuning.live_tune(obj), d.vcpus)

    async def domain_set_autostart(self, dom: DomainRef, autostart: int) -> None:
        obj = self._obj(dom)
        if not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN,
                        "cannot set autostart for transient domain")
        obj.autostart = bool(autostart)

    async def domain_has_managed_save_image(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, 0, "testDomainHasManagedSaveImage", ErrorDomain.TEST)
        return int(self._obj(dom).has_managed_save)
