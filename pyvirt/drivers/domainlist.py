"""What every hypervisor driver keeps about its domains, independent of the hypervisor.

:class:`DomainObj` holds a domain's persistent and live definitions, its
state and reason, and whether it is persistent; :class:`DomainList` indexes
them by name, UUID and id and raises libvirt's own errors on a miss, so the
test and qemu drivers answer lookups identically.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterator

from ..conf import DomainDef
from ..driver import DomainEvent, EventBus
from ..refs import DomainRef
from ..enums import DomainState, EventID, EventType, ListDomainsFlags as LF
from ..errors import ErrorDomain, ErrorNumber, check_flags, error, libvirtError, no_domain


@dataclass(eq=False)
class DomainObj:
    """One domain: definitions, state and reason, persistence, autostart."""

    definition: DomainDef                   # persistent definition (or the only one, if transient)
    live: DomainDef | None = None           # running definition, None when inactive
    state: DomainState = DomainState.SHUTOFF
    reason: int = 0
    id: int = -1
    persistent: bool = False
    autostart: bool = False
    has_managed_save: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    # Set once the object left its list (undefined, or a transient domain that
    # stopped): a job waiting on it must not go on to act on a domain nobody sees.
    removed: bool = False

    @property
    def name(self) -> str:
        return (self.live or self.definition).name

    @property
    def uuid(self) -> str:
        return self.definition.uuid

    @cached_property   # a domain's UUID never changes; handles are built per call
    def uuid_bytes(self) -> bytes:
        return uuidlib.UUID(self.definition.uuid).bytes

    @property
    def active(self) -> bool:
        return self.id >= 0

    @property
    def current(self) -> DomainDef:
        """The definition a query should show: the live one when running."""
        return self.live if self.live is not None else self.definition

    def ref(self) -> DomainRef:
        return DomainRef(self.name, self.uuid_bytes, self.id)

    def set_state(self, state: DomainState, reason: int) -> None:
        self.state = DomainState(state)
        self.reason = int(reason)


def _state_class(obj: DomainObj) -> LF:
    if obj.state == DomainState.RUNNING:
        return LF.RUNNING
    if obj.state == DomainState.PAUSED:
        return LF.PAUSED
    if obj.state == DomainState.SHUTOFF:
        return LF.SHUTOFF
    return LF.OTHER


# Each pair of flags filters on one property; asking for neither or both keeps all.
_FILTERS: tuple[tuple[LF, LF, Callable[[DomainObj], bool]], ...] = (
    (LF.ACTIVE, LF.INACTIVE, lambda o: o.active),
    (LF.PERSISTENT, LF.TRANSIENT, lambda o: o.persistent),
    (LF.MANAGEDSAVE, LF.NO_MANAGEDSAVE, lambda o: o.has_managed_save),
    (LF.AUTOSTART, LF.NO_AUTOSTART, lambda o: o.autostart),
    (LF.HAS_CHECKPOINT, LF.NO_CHECKPOINT, lambda o: bool(o.extra.get("checkpoints"))),   # the test driver's
)
_STATE_FLAGS = LF.RUNNING | LF.PAUSED | LF.SHUTOFF | LF.OTHER
ALL_LIST_FLAGS = int(sum(LF))


def _no_snapshots(obj: DomainObj) -> bool:
    return False


def matches_list_flags(obj: DomainObj, flags: int,
                       has_snapshots: Callable[[DomainObj], bool] = _no_snapshots) -> bool:
    """libvirt's virDomainObjListFilter semantics for CONNECT_LIST_ALL_DOMAINS; the
    snapshots are the driver's to count (``has_snapshots``)."""
    for yes, no, prop in (*_FILTERS, (LF.HAS_SNAPSHOT, LF.NO_SNAPSHOT, has_snapshots)):
        want_yes, want_no = bool(flags & yes), bool(flags & no)
        if want_yes != want_no and prop(obj) != want_yes:
            return False
    if flags & _STATE_FLAGS and not flags & _state_class(obj):
        return False
    return True


class DomainList:
    """Domains indexed by UUID, looked up by name, UUID or id."""

    def __init__(self, error_domain: ErrorDomain) -> None:
        self._by_uuid: dict[str, DomainObj] = {}
        self._by_raw: dict[bytes, DomainObj] = {}   # the key handles carry: no conversion per call
        self.error_domain = error_domain
        # whether a domain has snapshots: the driver keeps them, and sets this
        self.has_snapshots: Callable[[DomainObj], bool] = _no_snapshots

    def __iter__(self) -> Iterator[DomainObj]:
        return iter(list(self._by_uuid.values()))

    def __len__(self) -> int:
        return len(self._by_uuid)

    def add(self, obj: DomainObj) -> None:
        self._by_uuid[obj.uuid] = obj
        self._by_raw[obj.uuid_bytes] = obj
        obj.removed = False

    def remove(self, obj: DomainObj) -> None:
        """Remove this very object: a stale one (already replaced by a new definition
        with the same UUID) never takes its replacement with it."""
        obj.removed = True
        if self._by_uuid.get(obj.uuid) is obj:
            del self._by_uuid[obj.uuid]
        if self._by_raw.get(obj.uuid_bytes) is obj:
            del self._by_raw[obj.uuid_bytes]

    def __contains__(self, obj: object) -> bool:
        return isinstance(obj, DomainObj) and self._by_uuid.get(obj.uuid) is obj

    def find_name(self, name: str) -> DomainObj | None:
        for obj in self._by_uuid.values():
            if obj.name == name or obj.definition.name == name:
                return obj
        return None

    def find_uuid(self, uuid: str) -> DomainObj | None:
        return self._by_uuid.get(uuid)

    def by_name(self, name: str) -> DomainObj:
        obj = self.find_name(name)
        if obj is None:
            raise no_domain(f"no domain with matching name '{name}'", self.error_domain)
        return obj

    def by_uuid(self, raw: bytes) -> DomainObj:
        obj = self._by_raw.get(bytes(raw))
        if obj is None:
            raise no_domain(f"no domain with matching uuid '{uuidlib.UUID(bytes=bytes(raw))}'", self.error_domain)
        return obj

    def by_id(self, dom_id: int) -> DomainObj:
        for obj in self._by_uuid.values():
            if obj.id == dom_id and dom_id >= 0:
                return obj
        raise no_domain(f"no domain with matching id {dom_id}", self.error_domain)

    def by_ref(self, ref: DomainRef) -> DomainObj:
        """Resolve a handle by UUID, the stable key (ids in handles can be stale)."""
        obj = self._by_raw.get(ref.uuid)
        if obj is None:
            raise no_domain(f"no domain with matching uuid '{uuidlib.UUID(bytes=ref.uuid)}' ({ref.name})",
                            self.error_domain)
        return obj

    def check_new(self, new: DomainDef, allow_active_same: bool = True) -> DomainObj | None:
        """Check a definition against existing domains; return the one it replaces.

        Same name with another UUID, or same UUID with another name, is refused
        as libvirt does.
        """
        by_uuid = self._by_uuid.get(new.uuid)
        if by_uuid is not None:
            if by_uuid.definition.name != new.name:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.DOMAIN,
                            f"domain '{by_uuid.definition.name}' is already defined with uuid {new.uuid}")
            if by_uuid.active and not allow_active_same:
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN,
                            f"domain '{new.name}' is already active")
            return by_uuid
        by_name = self.find_name(new.name)
        if by_name is not None:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.DOMAIN,
                        f"domain '{new.name}' already exists with uuid {by_name.uuid}")
        return None

    def list(self, flags: int) -> list[DomainObj]:
        return [obj for obj in self._by_uuid.values() if matches_list_flags(obj, flags, self.has_snapshots)]


def emit_lifecycle(bus: EventBus, obj: DomainObj, event: EventType, detail: int) -> None:
    bus.emit(DomainEvent(EventID.LIFECYCLE, obj.ref(), (int(event), int(detail))))


def not_running(obj: DomainObj) -> libvirtError:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")


def removed_domain(obj: DomainObj, error_domain: ErrorDomain) -> libvirtError:
    """libvirt's answer to a job acquired on a domain removed while the call waited."""
    return no_domain(f"no domain with matching uuid '{obj.uuid}' ({obj.definition.name})", error_domain)


class DomainQueries:
    """Calls every driver answers the same way from its DomainList.

    Mixed in before :class:`pyvirt.driver.HypervisorConnection`; the driver
    provides ``domains`` and ``driver_prefix`` (libvirt's function-name prefix,
    used in "unsupported flags" messages).
    """

    domains: DomainList
    driver_prefix: str

    async def connect_list_all_domains(self, need_results: int, flags: int) -> tuple[list[DomainRef], int]:
        check_flags(flags, ALL_LIST_FLAGS, f"{self.driver_prefix}ConnectListAllDomains", self.domains.error_domain)
        objs = self.domains.list(flags)
        return ([o.ref() for o in objs] if need_results else []), len(objs)

    async def connect_num_of_domains(self) -> int:
        return sum(1 for o in self.domains if o.active)

    async def connect_list_domains(self, maxids: int) -> list[int]:
        return sorted(o.id for o in self.domains if o.active)[:maxids]

    async def connect_num_of_defined_domains(self) -> int:
        return sum(1 for o in self.domains if not o.active)

    async def connect_list_defined_domains(self, maxnames: int) -> list[str]:
        return sorted(o.name for o in self.domains if not o.active)[:maxnames]

    async def domain_lookup_by_id(self, id: int) -> DomainRef:  # noqa: A002 - the wire field's name
        return self.domains.by_id(id).ref()

    async def domain_lookup_by_name(self, name: str) -> DomainRef:
        return self.domains.by_name(name).ref()

    async def domain_lookup_by_uuid(self, uuid: bytes) -> DomainRef:
        return self.domains.by_uuid(uuid).ref()

    async def domain_get_state(self, dom: DomainRef, flags: int) -> tuple[int, int]:
        check_flags(flags, 0, f"{self.driver_prefix}DomainGetState", self.domains.error_domain)
        obj = self.domains.by_ref(dom)
        return int(obj.state), obj.reason

    async def domain_get_os_type(self, dom: DomainRef) -> str:
        return self.domains.by_ref(dom).current.os.type

    async def domain_is_active(self, dom: DomainRef) -> int:
        return int(self.domains.by_ref(dom).active)

    async def domain_is_persistent(self, dom: DomainRef) -> int:
        return int(self.domains.by_ref(dom).persistent)

    async def domain_get_autostart(self, dom: DomainRef) -> int:
        return int(self.domains.by_ref(dom).autostart)
