"""The test host's calls into its guests: rename, the guest agent's answers (password,
file-system freeze/thaw/trim/info, interface addresses), NMI, process signals, the control
channel's state and lifecycle actions.

Nothing runs, so the answers are libvirt 9.0's test driver's: two file systems ('/' and
'/boot') on the first disk, addresses made from each NIC's network, a control channel that
reports what the guest's clock (setTime) says.
"""

from __future__ import annotations

import ipaddress

from ...enums import EventType
from ...enums_more import EventDefinedDetail, EventUndefinedDetail
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef
from ..domainlist import DomainObj, emit_lifecycle
from .tuning import AFFECT_CONFIG, AFFECT_LIVE, bare_invalid_arg

_T = ErrorDomain.TEST
MOUNTS = ("/", "/boot")
ADDR_SOURCES = 3                # virDomainInterfaceAddressesSource: lease, agent, arp
SOURCE_AGENT = 1
IP_ADDR_TYPE_IPV4 = 0
PROCESS_SIGNAL_LAST = 65        # VIR_DOMAIN_PROCESS_SIGNAL_LAST
LIFECYCLE_TYPES = ("poweroff", "reboot", "crash")
LIFECYCLE_ACTIONS = ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart")
TIME_SECONDS = 627319920
# virDomainControlState / virDomainControlErrorReason
CONTROL_OK, CONTROL_JOB, CONTROL_OCCUPIED, CONTROL_ERROR = 0, 1, 2, 3
PASSWORD_ENCRYPTED = 1
MEMORY_VIRTUAL, MEMORY_PHYSICAL = 1, 2      # virDomainMemoryFlags
PEEK_BUFFER_MAX = 4194304                   # REMOTE_DOMAIN_MEMORY_PEEK_BUFFER_MAX


def _check_active(obj: DomainObj) -> None:
    """virDomainObjCheckActive."""
    if not obj.active:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")


def _frozen(obj: DomainObj) -> list[bool]:
    state = obj.extra.get("frozen")
    if not isinstance(state, list):
        state = obj.extra["frozen"] = [False, False]        # type: ignore[assignment]
    return state


class GuestAPI:
    """Mixed into TestConnection (which supplies _obj, host, read_only)."""

    async def domain_rename(self, dom: DomainRef, new_name: str | None, flags: int) -> int:
        check_flags(flags, 0, "testDomainRename", _T)
        obj = self._obj(dom)
        if new_name is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, "new_name in virDomainRename must not be NULL")
        if obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "cannot rename active domain")
        if not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "cannot rename a transient domain")
        if obj.name == new_name:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "Can't rename domain to itself")
        if self.host.domains.find_name(new_name) is not None:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN,
                        f"domain with name '{new_name}' already exists")
        if "/" in new_name:
            raise error(ErrorNumber.XML_ERROR, _T, f"name {new_name} cannot contain '/'")
        emit_lifecycle(self.host.events, obj, EventType.UNDEFINED, EventUndefinedDetail.RENAMED)
        obj.definition.name = new_name
        emit_lifecycle(self.host.events, obj, EventType.DEFINED, EventDefinedDetail.RENAMED)
        return 0

    async def domain_set_user_password(self, dom: DomainRef, user: str | None, password: str | None,
                                       flags: int) -> None:
        check_flags(flags, PASSWORD_ENCRYPTED, "testDomainSetUserPassword", _T)
        _check_active(self._obj(dom))

    # -- file systems ---------------------------------------------------------------------------
    def _mounts(self, mountpoints: list[str]) -> list[int]:
        out = []
        for mount in mountpoints:
            if mount not in MOUNTS:
                raise error(ErrorNumber.OPERATION_INVALID, _T, f"mount point not found: {mount}")
            out.append(MOUNTS.index(mount))
        return out

    async def domain_fsfreeze(self, dom: DomainRef, mountpoints: list[str], flags: int) -> int:
        check_flags(flags, 0, "testDomainFSFreeze", _T)
        obj = self._obj(dom)
        _check_active(obj)
        frozen = _frozen(obj)
        wanted = self._mounts(mountpoints) if mountpoints else [0, 1]
        changed = sum(1 for n in set(wanted) if not frozen[n])
        for n in wanted:
            frozen[n] = True
        return changed

    async def domain_fsthaw(self, dom: DomainRef, mountpoints: list[str], flags: int) -> int:
        check_flags(flags, 0, "testDomainFSThaw", _T)
        obj = self._obj(dom)
        _check_active(obj)
        frozen = _frozen(obj)
        wanted = self._mounts(mountpoints) if mountpoints else [0, 1]
        changed = sum(1 for n in set(wanted) if frozen[n])
        for n in wanted:
            frozen[n] = False
        return changed

    async def domain_fstrim(self, dom: DomainRef, mountPoint: str | None, minimum: int,  # noqa: N803
                            flags: int) -> None:
        check_flags(flags, 0, "testDomainFSTrim", _T)
        _check_active(self._obj(dom))
        if mountPoint is not None:
            self._mounts([mountPoint])

    async def domain_get_fsinfo(self, dom: DomainRef, flags: int) -> tuple[list, int]:
        check_flags(flags, 0, "testDomainGetFSInfo", _T)
        obj = self._obj(dom)
        _check_active(obj)
        for disk in obj.current.devices.disks:
            if disk.device == "disk":
                name = disk.target_dev
                info = [("/", f"{name}1", "ext4", [name]), ("/boot", f"{name}2", "ext4", [name])]
                return info, len(info)
        return [], 0

    # -- addresses ----------------------------------------------------------------------------------
    async def domain_interface_addresses(self, dom: DomainRef, source: int, flags: int) -> list:
        check_flags(flags, 0, "testDomainInterfaceAddresses", _T)
        if source == SOURCE_AGENT and self.read_only:      # libvirt's API refuses the agent's source
            raise error(ErrorNumber.OPERATION_DENIED, ErrorDomain.DOMAIN,
                        "read only access prevents virDomainInterfaceAddresses")
        if source >= ADDR_SOURCES:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, _T, f"Unknown IP address data source {source}")
        obj = self._obj(dom)
        _check_active(obj)
        d = obj.current
        out = []
        for n, net in enumerate(d.devices.interfaces):
            if net.type == "network":
                # a different address per interface and domain, counted from the network's first range
                offset = 20 * ((d.id or obj.id) - 1) + n + 1
                address, prefix = self._network_address(net.source, offset)
            else:
                address, prefix = f"192.168.0.{1 + n}", 24
            out.append((net.target_dev or "", net.mac, [(IP_ADDR_TYPE_IPV4, address, prefix)]))
        return out

    def _network_address(self, name: str | None, offset: int) -> tuple[str, int]:
        found = self.host.networks.by_name.get(name or "")
        if found is None:
            raise error(ErrorNumber.NO_NETWORK, _T, f"no network with matching name '{name}'")
        ip = found.definition.ipv4()
        if ip is None:
            return str(ipaddress.IPv4Address(offset)), 0
        base = ip.ranges[0][0] if ip.ranges else ip.address
        return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(base)) + offset)), ip.prefix

    async def domain_memory_peek(self, dom: DomainRef, offset: int, size: int, flags: int) -> bytes:
        if flags & MEMORY_VIRTUAL and flags & MEMORY_PHYSICAL:       # libvirt's API checks this first
            raise bare_invalid_arg("Flags 'VIR_MEMORY_VIRTUAL' and 'VIR_MEMORY_PHYSICAL' are mutually exclusive")
        check_flags(flags, MEMORY_VIRTUAL | MEMORY_PHYSICAL, "testDomainMemoryPeek", _T)
        if flags not in (MEMORY_VIRTUAL, MEMORY_PHYSICAL):
            raise error(ErrorNumber.INVALID_ARG, _T,
                        "flags parameter must be VIR_MEMORY_VIRTUAL or VIR_MEMORY_PHYSICAL")
        if size > PEEK_BUFFER_MAX:         # what libvirt's daemon refuses
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, "size > maximum buffer size")
        _check_active(self._obj(dom))
        # libvirt's test driver's memory: each byte its offset's low byte
        return bytes((offset + i) & 0xFF for i in range(size))

    async def domain_get_messages(self, dom: DomainRef, flags: int) -> list[str]:
        check_flags(flags, 3, "testDomainGetMessages", _T)    # DEPRECATION, TAINTING
        self._obj(dom)
        return []           # nothing taints or deprecates a test domain

    # -- NMI, signals, the control channel ------------------------------------------------------------
    async def domain_inject_nmi(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, 0, "testDomainInjectNMI", _T)
        _check_active(self._obj(dom))

    async def domain_send_process_signal(self, dom: DomainRef, pid_value: int, signum: int, flags: int) -> None:
        check_flags(flags, 0, "testDomainSendProcessSignal", _T)
        if pid_value != 1:
            raise error(ErrorNumber.INVALID_ARG, _T, "only sending a signal to pid 1 is supported")
        if signum >= PROCESS_SIGNAL_LAST:
            raise error(ErrorNumber.INVALID_ARG, _T, f"signum value {signum} is out of range")
        self._obj(dom)

    async def domain_get_control_info(self, dom: DomainRef, flags: int) -> tuple[int, int, int]:
        check_flags(flags, 0, "testDomainGetControlInfo", _T)
        obj = self._obj(dom)
        _check_active(obj)
        seconds = obj.extra.get("time", (TIME_SECONDS, 0))[0]     # type: ignore[index]
        # libvirt's test driver reads a control state out of the guest's clock
        if 0 < seconds < 10000:
            return CONTROL_JOB, 0, seconds
        if 10000 <= seconds < 30000:
            return CONTROL_OCCUPIED, 0, seconds - 10000
        if 30000 <= seconds < 60000:
            return CONTROL_ERROR, seconds % 4, seconds - 30000
        return CONTROL_OK, 0, 0

    async def domain_set_lifecycle_action(self, dom: DomainRef, type: int, action: int,  # noqa: A002
                                          flags: int) -> None:
        check_flags(flags, AFFECT_LIVE | AFFECT_CONFIG, "testDomainSetLifecycleAction", _T)
        if type >= len(LIFECYCLE_TYPES) or action >= len(LIFECYCLE_ACTIONS):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, f"invalid lifecycle type '{type}' or action "
                        f"'{action}'")
        if type != 2 and action >= 4:            # only a crash may dump core
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN,
                        f"Lifecycle event '{LIFECYCLE_TYPES[type]}' doesn't support "
                        f"'{LIFECYCLE_ACTIONS[action]}' action")
        obj = self._obj(dom)
        # virDomainObjGetDefs: CURRENT is the live definition when running, else the persistent one
        if not flags & (AFFECT_LIVE | AFFECT_CONFIG):
            flags |= AFFECT_LIVE if obj.active else AFFECT_CONFIG
        if flags & AFFECT_LIVE and not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")
        if flags & AFFECT_CONFIG and not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN,
                        "transient domains do not have any persistent config")
        targets = []
        if obj.active and flags & AFFECT_LIVE:
            targets.append(obj.live)
        if flags & AFFECT_CONFIG or not obj.active:
            targets.append(obj.definition)
        for d in targets:
            setattr(d, f"on_{LIFECYCLE_TYPES[type]}", LIFECYCLE_ACTIONS[action])
