"""libvirt's public enums and flag sets, with libvirt's numeric values.

Each class is exported by :mod:`pyvirt` under libvirt-python's names through
:data:`PUBLIC_PREFIXES` (``DomainState.RUNNING`` is ``VIR_DOMAIN_RUNNING``,
``ShutoffReason.DESTROYED`` is ``VIR_DOMAIN_SHUTOFF_DESTROYED``), so the values
are written once.  The status-XML spelling of states and reasons lives here
too (``STATE_NAMES``, ``REASON_NAMES``).  Values are ABI: never renumber.

Only the classes a plain command-line call uses are made here (an enum class
costs its import a tenth of a millisecond or more, and there are dozens); the
others, and :data:`PUBLIC_PREFIXES`, live in :mod:`pyvirt.enums_more` and are
made on first access (``from pyvirt.enums import JobType`` works as before).
New classes go at the end of :mod:`pyvirt.enums_more` unless a plain command
needs them at start-up.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class DomainState(IntEnum):
    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7


class NostateReason(IntEnum):
    UNKNOWN = 0


class RunningReason(IntEnum):
    UNKNOWN = 0
    BOOTED = 1
    MIGRATED = 2
    RESTORED = 3
    FROM_SNAPSHOT = 4
    UNPAUSED = 5
    MIGRATION_CANCELED = 6
    SAVE_CANCELED = 7
    WAKEUP = 8
    CRASHED = 9
    POSTCOPY = 10
    POSTCOPY_FAILED = 11


class BlockedReason(IntEnum):
    UNKNOWN = 0


class PausedReason(IntEnum):
    UNKNOWN = 0
    USER = 1
    MIGRATION = 2
    SAVE = 3
    DUMP = 4
    IOERROR = 5
    WATCHDOG = 6
    FROM_SNAPSHOT = 7
    SHUTTING_DOWN = 8
    SNAPSHOT = 9
    CRASHED = 10
    STARTING_UP = 11
    POSTCOPY = 12
    POSTCOPY_FAILED = 13


class ShutdownReason(IntEnum):
    UNKNOWN = 0
    USER = 1


class ShutoffReason(IntEnum):
    UNKNOWN = 0
    SHUTDOWN = 1
    DESTROYED = 2
    CRASHED = 3
    MIGRATED = 4
    SAVED = 5
    FAILED = 6
    FROM_SNAPSHOT = 7
    DAEMON = 8


class CrashedReason(IntEnum):
    UNKNOWN = 0
    PANICKED = 1


class PMSuspendedReason(IntEnum):
    UNKNOWN = 0


REASONS: dict[DomainState, type[IntEnum]] = {
    DomainState.NOSTATE: NostateReason,
    DomainState.RUNNING: RunningReason,
    DomainState.BLOCKED: BlockedReason,
    DomainState.PAUSED: PausedReason,
    DomainState.SHUTDOWN: ShutdownReason,
    DomainState.SHUTOFF: ShutoffReason,
    DomainState.CRASHED: CrashedReason,
    DomainState.PMSUSPENDED: PMSuspendedReason,
}

# Status-XML spellings (libvirt's virDomainState/…Reason TypeToString tables).
STATE_NAMES: dict[DomainState, str] = {
    DomainState.NOSTATE: "nostate",
    DomainState.RUNNING: "running",
    DomainState.BLOCKED: "blocked",
    DomainState.PAUSED: "paused",
    DomainState.SHUTDOWN: "shutdown",
    DomainState.SHUTOFF: "shutoff",
    DomainState.CRASHED: "crashed",
    DomainState.PMSUSPENDED: "pmsuspended",
}

REASON_NAMES: dict[DomainState, tuple[str, ...]] = {
    DomainState.NOSTATE: ("unknown",),
    DomainState.RUNNING: ("unknown", "booted", "migrated", "restored", "from snapshot", "unpaused",
                          "migration canceled", "save canceled", "wakeup", "crashed", "post-copy",
                          "post-copy failed"),
    DomainState.BLOCKED: ("unknown",),
    DomainState.PAUSED: ("unknown", "user", "migration", "save", "dump", "ioerror", "watchdog",
                         "from snapshot", "shutdown", "snapshot", "panicked", "starting up",
                         "post-copy", "post-copy failed"),
    DomainState.SHUTDOWN: ("unknown", "user"),
    DomainState.SHUTOFF: ("unknown", "shutdown", "destroyed", "crashed", "migrated", "saved",
                          "failed", "from snapshot", "daemon"),
    DomainState.CRASHED: ("unknown", "panicked"),
    DomainState.PMSUSPENDED: ("unknown",),
}


def state_name(state: int) -> str:
    return STATE_NAMES[DomainState(state)]


def reason_name(state: int, reason: int) -> str:
    names = REASON_NAMES[DomainState(state)]
    return names[reason] if 0 <= reason < len(names) else "unknown"


def state_from_name(name: str) -> DomainState:
    for state, text in STATE_NAMES.items():
        if text == name:
            return state
    raise ValueError(f"unknown domain state '{name}'")


def reason_from_name(state: DomainState, name: str) -> int:
    names = REASON_NAMES[state]
    if name in names:
        return names.index(name)
    raise ValueError(f"unknown reason '{name}' for state '{STATE_NAMES[state]}'")


class EventID(IntEnum):
    LIFECYCLE = 0
    REBOOT = 1
    RTC_CHANGE = 2
    WATCHDOG = 3
    IO_ERROR = 4
    GRAPHICS = 5
    IO_ERROR_REASON = 6
    CONTROL_ERROR = 7
    BLOCK_JOB = 8
    DISK_CHANGE = 9
    TRAY_CHANGE = 10
    PMWAKEUP = 11
    PMSUSPEND = 12
    BALLOON_CHANGE = 13
    PMSUSPEND_DISK = 14
    DEVICE_REMOVED = 15
    BLOCK_JOB_2 = 16
    TUNABLE = 17
    AGENT_LIFECYCLE = 18
    DEVICE_ADDED = 19
    MIGRATION_ITERATION = 20
    JOB_COMPLETED = 21
    DEVICE_REMOVAL_FAILED = 22
    METADATA_CHANGE = 23
    BLOCK_THRESHOLD = 24
    MEMORY_FAILURE = 25
    MEMORY_DEVICE_SIZE_CHANGE = 26


class ListDomainsFlags(IntFlag):
    ACTIVE = 1
    INACTIVE = 2
    PERSISTENT = 4
    TRANSIENT = 8
    RUNNING = 16
    PAUSED = 32
    SHUTOFF = 64
    OTHER = 128
    MANAGEDSAVE = 256
    NO_MANAGEDSAVE = 512
    AUTOSTART = 1024
    NO_AUTOSTART = 2048
    HAS_SNAPSHOT = 4096
    NO_SNAPSHOT = 8192
    HAS_CHECKPOINT = 16384
    NO_CHECKPOINT = 32768


class XMLFlags(IntFlag):
    SECURE = 1
    INACTIVE = 2
    UPDATE_CPU = 4
    MIGRATABLE = 8


class TypedParamType(IntEnum):
    INT = 1
    UINT = 2
    LLONG = 3
    ULLONG = 4
    DOUBLE = 5
    BOOLEAN = 6
    STRING = 7


class MemoryStatTags(IntEnum):
    """virDomainMemoryStatTags."""

    SWAP_IN = 0
    SWAP_OUT = 1
    MAJOR_FAULT = 2
    MINOR_FAULT = 3
    UNUSED = 4
    AVAILABLE = 5
    ACTUAL_BALLOON = 6
    RSS = 7
    USABLE = 8
    LAST_UPDATE = 9
    DISK_CACHES = 10
    HUGETLB_PGALLOC = 11
    HUGETLB_PGFAIL = 12
    NR = 13


class NodeMemoryStats(IntEnum):
    """virNodeGetMemoryStats' cellNum for the whole host."""
    ALL_CELLS = -1


def __getattr__(name: str) -> object:
    """The classes defined in :mod:`pyvirt.enums_more`, made on first access."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import enums_more
    try:
        value = getattr(enums_more, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    from . import enums_more
    return sorted(set(globals()) | {n for n in vars(enums_more) if not n.startswith("_")})
