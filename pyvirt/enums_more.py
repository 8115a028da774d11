"""libvirt's public enums that no plain command-line call needs at start-up.

Part of :mod:`pyvirt.enums` (which gives every name here on first access):
the same rules, libvirt's numeric values, never renumber.  :data:`PUBLIC_PREFIXES`
maps each class of both modules to its libvirt-python prefix.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

from .enums import (BlockedReason, CrashedReason, DomainState, EventID, ListDomainsFlags, MemoryStatTags,
                    NodeMemoryStats, NostateReason, PausedReason, PMSuspendedReason, RunningReason,
                    ShutdownReason, ShutoffReason, TypedParamType, XMLFlags)


class EventType(IntEnum):
    """virDomainEventType (lifecycle event)."""

    DEFINED = 0
    UNDEFINED = 1
    STARTED = 2
    SUSPENDED = 3
    RESUMED = 4
    STOPPED = 5
    SHUTDOWN = 6
    PMSUSPENDED = 7
    CRASHED = 8


class EventDefinedDetail(IntEnum):
    ADDED = 0
    UPDATED = 1
    RENAMED = 2
    FROM_SNAPSHOT = 3


class EventUndefinedDetail(IntEnum):
    REMOVED = 0
    RENAMED = 1


class EventStartedDetail(IntEnum):
    BOOTED = 0
    MIGRATED = 1
    RESTORED = 2
    FROM_SNAPSHOT = 3
    WAKEUP = 4


class EventSuspendedDetail(IntEnum):
    PAUSED = 0
    MIGRATED = 1
    IOERROR = 2
    WATCHDOG = 3
    RESTORED = 4
    FROM_SNAPSHOT = 5
    API_ERROR = 6
    POSTCOPY = 7
    POSTCOPY_FAILED = 8


class EventResumedDetail(IntEnum):
    UNPAUSED = 0
    MIGRATED = 1
    FROM_SNAPSHOT = 2
    POSTCOPY = 3
    POSTCOPY_FAILED = 4


class EventStoppedDetail(IntEnum):
    SHUTDOWN = 0
    DESTROYED = 1
    CRASHED = 2
    MIGRATED = 3
    SAVED = 4
    FAILED = 5
    FROM_SNAPSHOT = 6


class EventShutdownDetail(IntEnum):
    FINISHED = 0
    GUEST = 1
    HOST = 2


class EventPMSuspendedDetail(IntEnum):
    MEMORY = 0
    DISK = 1


class EventCrashedDetail(IntEnum):
    PANICKED = 0
    CRASHLOADED = 1


class JobType(IntEnum):
    NONE = 0
    BOUNDED = 1
    UNBOUNDED = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5


class JobOperation(IntEnum):
    UNKNOWN = 0
    START = 1
    SAVE = 2
    RESTORE = 3
    MIGRATION_IN = 4
    MIGRATION_OUT = 5
    SNAPSHOT = 6
    SNAPSHOT_REVERT = 7
    DUMP = 8
    BACKUP = 9
    SNAPSHOT_DELETE = 10


class ConnectFlags(IntFlag):
    RO = 1
    NO_ALIASES = 2


class StartFlags(IntFlag):
    PAUSED = 1
    AUTODESTROY = 2
    BYPASS_CACHE = 4
    FORCE_BOOT = 8
    VALIDATE = 16
    RESET_NVRAM = 32


class UndefineFlags(IntFlag):
    MANAGED_SAVE = 1
    SNAPSHOTS_METADATA = 2
    NVRAM = 4
    KEEP_NVRAM = 8
    CHECKPOINTS_METADATA = 16
    TPM = 32
    KEEP_TPM = 64


class DestroyFlags(IntFlag):
    DEFAULT = 0
    GRACEFUL = 1
    REMOVE_LOGS = 2


class ShutdownFlags(IntFlag):
    DEFAULT = 0
    ACPI_POWER_BTN = 1
    GUEST_AGENT = 2
    INITCTL = 4
    SIGNAL = 8
    PARAVIRT = 16


class DefineFlags(IntFlag):
    VALIDATE = 1


class SaveFlags(IntFlag):
    BYPASS_CACHE = 1
    RUNNING = 2
    PAUSED = 4
    RESET_NVRAM = 8


class MigrateFlags(IntFlag):
    LIVE = 1
    PEER2PEER = 2
    TUNNELLED = 4
    PERSIST_DEST = 8
    UNDEFINE_SOURCE = 16
    PAUSED = 32
    NON_SHARED_DISK = 64
    NON_SHARED_INC = 128
    CHANGE_PROTECTION = 256
    UNSAFE = 512
    OFFLINE = 1024
    COMPRESSED = 2048
    ABORT_ON_ERROR = 4096
    AUTO_CONVERGE = 8192
    RDMA_PIN_ALL = 16384
    POSTCOPY = 32768
    TLS = 65536
    PARALLEL = 131072
    NON_SHARED_SYNCHRONOUS_WRITES = 262144
    POSTCOPY_RESUME = 524288
    ZEROCOPY = 1048576


class DriverFeature(IntEnum):
    """VIR_DRV_FEATURE_* asked with CONNECT_SUPPORTS_FEATURE."""

    MIGRATION_V1 = 1
    REMOTE = 2
    MIGRATION_V2 = 3
    MIGRATION_P2P = 4
    MIGRATION_DIRECT = 5
    MIGRATION_V3 = 6
    MIGRATE_CHANGE_PROTECTION = 7
    FD_PASSING = 8
    TYPED_PARAM_STRING = 9
    PROGRAM_KEEPALIVE = 10
    XML_MIGRATABLE = 11
    MIGRATION_OFFLINE = 12
    MIGRATION_PARAMS = 13
    REMOTE_EVENT_CALLBACK = 14
    REMOTE_CLOSE_CALLBACK = 15
    NETWORK_UPDATE_HAS_CORRECT_ORDER = 16


# Enum class -> libvirt-python prefix; ``pyvirt`` exports PREFIX + member name.
PUBLIC_PREFIXES: tuple[tuple[type, str], ...] = (
    (DomainState, "VIR_DOMAIN_"),
    (NostateReason, "VIR_DOMAIN_NOSTATE_"),
    (RunningReason, "VIR_DOMAIN_RUNNING_"),
    (BlockedReason, "VIR_DOMAIN_BLOCKED_"),
    (PausedReason, "VIR_DOMAIN_PAUSED_"),
    (ShutdownReason, "VIR_DOMAIN_SHUTDOWN_"),
    (ShutoffReason, "VIR_DOMAIN_SHUTOFF_"),
    (CrashedReason, "VIR_DOMAIN_CRASHED_"),
    (PMSuspendedReason, "VIR_DOMAIN_PMSUSPENDED_"),
    (EventType, "VIR_DOMAIN_EVENT_"),
    (EventDefinedDetail, "VIR_DOMAIN_EVENT_DEFINED_"),
    (EventUndefinedDetail, "VIR_DOMAIN_EVENT_UNDEFINED_"),
    (EventStartedDetail, "VIR_DOMAIN_EVENT_STARTED_"),
    (EventSuspendedDetail, "VIR_DOMAIN_EVENT_SUSPENDED_"),
    (EventResumedDetail, "VIR_DOMAIN_EVENT_RESUMED_"),
    (EventStoppedDetail, "VIR_DOMAIN_EVENT_STOPPED_"),
    (EventShutdownDetail, "VIR_DOMAIN_EVENT_SHUTDOWN_"),
    (EventPMSuspendedDetail, "VIR_DOMAIN_EVENT_PMSUSPENDED_"),
    (EventCrashedDetail, "VIR_DOMAIN_EVENT_CRASHED_"),
    (EventID, "VIR_DOMAIN_EVENT_ID_"),
    (JobType, "VIR_DOMAIN_JOB_"),
    (JobOperation, "VIR_DOMAIN_JOB_OPERATION_"),
    (ConnectFlags, "VIR_CONNECT_"),
    (ListDomainsFlags, "VIR_CONNECT_LIST_DOMAINS_"),
    (StartFlags, "VIR_DOMAIN_START_"),
    (UndefineFlags, "VIR_DOMAIN_UNDEFINE_"),
    (DestroyFlags, "VIR_DOMAIN_DESTROY_"),
    (ShutdownFlags, "VIR_DOMAIN_SHUTDOWN_"),
    (XMLFlags, "VIR_DOMAIN_XML_"),
    (DefineFlags, "VIR_DOMAIN_DEFINE_"),
    (SaveFlags, "VIR_DOMAIN_SAVE_"),
    (MigrateFlags, "VIR_MIGRATE_"),
    (DriverFeature, "VIR_DRV_FEATURE_"),
    (TypedParamType, "VIR_TYPED_PARAM_"),
)


# -- statistics ----------------------------------------------------------------------

class DomainStatsTypes(IntFlag):
    """virDomainStatsTypes: the groups of virConnectGetAllDomainStats."""

    STATE = 1 << 0
    CPU_TOTAL = 1 << 1
    BALLOON = 1 << 2
    VCPU = 1 << 3
    INTERFACE = 1 << 4
    BLOCK = 1 << 5
    PERF = 1 << 6
    IOTHREAD = 1 << 7
    MEMORY = 1 << 8
    DIRTYRATE = 1 << 9
    VM = 1 << 10


class GetAllDomainsStatsFlags(IntFlag):
    """virConnectGetAllDomainStatsFlags: list filters (as CONNECT_LIST_DOMAINS_*) and behaviour."""

    ACTIVE = 1 << 0
    INACTIVE = 1 << 1
    PERSISTENT = 1 << 2
    TRANSIENT = 1 << 3
    RUNNING = 1 << 4
    PAUSED = 1 << 5
    SHUTOFF = 1 << 6
    OTHER = 1 << 7
    NOWAIT = 1 << 29
    BACKING = 1 << 30
    ENFORCE_STATS = 1 << 31


class VcpuState(IntEnum):
    """virVcpuState."""

    OFFLINE = 0
    RUNNING = 1
    BLOCKED = 2


PUBLIC_PREFIXES += (
    (DomainStatsTypes, "VIR_DOMAIN_STATS_"),
    (GetAllDomainsStatsFlags, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_"),
    (MemoryStatTags, "VIR_DOMAIN_MEMORY_STAT_"),
    (VcpuState, "VIR_VCPU_"),
)


# -- devices and tuning (virDomainModificationImpact and the flags built on it) --------

class DomainAffect(IntFlag):
    """VIR_DOMAIN_AFFECT_*: which definition a change applies to."""

    CURRENT = 0
    LIVE = 1
    CONFIG = 2


class DeviceModifyFlags(IntFlag):
    CURRENT = 0
    LIVE = 1
    CONFIG = 2
    FORCE = 4


class MemoryModFlags(IntFlag):
    CURRENT = 0
    LIVE = 1
    CONFIG = 2
    MAXIMUM = 4


class VcpuFlags(IntFlag):
    CURRENT = 0
    LIVE = 1
    CONFIG = 2
    MAXIMUM = 4
    GUEST = 8
    HOTPLUGGABLE = 16


PUBLIC_PREFIXES = PUBLIC_PREFIXES + (
    (DomainAffect, "VIR_DOMAIN_AFFECT_"),
    (DeviceModifyFlags, "VIR_DOMAIN_DEVICE_MODIFY_"),
    (MemoryModFlags, "VIR_DOMAIN_MEM_"),
    (VcpuFlags, "VIR_DOMAIN_VCPU_"),
)


# -- console and graphics ------------------------------------------------------------

class ConsoleFlags(IntFlag):
    """virDomainConsoleFlags (openConsole)."""

    FORCE = 1 << 0      # take the console over from the session holding it
    SAFE = 1 << 1       # only where the driver guards against two sessions (qemu always does)


class OpenGraphicsFlags(IntFlag):
    SKIPAUTH = 1 << 0


class KeycodeSet(IntEnum):
    """virKeycodeSet: the codesets sendKey takes (see pyvirt.keycodes)."""

    LINUX = 0
    XT = 1
    ATSET1 = 2
    ATSET2 = 3
    ATSET3 = 4
    OSX = 5
    XT_KBD = 6
    USB = 7
    WIN32 = 8
    QNUM = 9


PUBLIC_PREFIXES = PUBLIC_PREFIXES + (
    (ConsoleFlags, "VIR_DOMAIN_CONSOLE_"),
    (OpenGraphicsFlags, "VIR_DOMAIN_OPEN_GRAPHICS_"),
    (KeycodeSet, "VIR_KEYCODE_SET_"),
)


# -- lifecycle, metadata and events ----------------------------------------------------

class MetadataType(IntEnum):
    """virDomainMetadataType."""

    DESCRIPTION = 0
    TITLE = 1
    ELEMENT = 2


class RebootFlags(IntFlag):
    DEFAULT = 0
    ACPI_POWER_BTN = 1
    GUEST_AGENT = 2
    INITCTL = 4
    SIGNAL = 8
    PARAVIRT = 16


class EventWatchdogAction(IntEnum):
    NONE = 0
    PAUSE = 1
    RESET = 2
    POWEROFF = 3
    SHUTDOWN = 4
    DEBUG = 5
    INJECTNMI = 6


class EventIOErrorAction(IntEnum):
    NONE = 0
    PAUSE = 1
    REPORT = 2


class EventGraphicsPhase(IntEnum):
    CONNECT = 0
    INITIALIZE = 1
    DISCONNECT = 2


class EventGraphicsAddressType(IntEnum):
    IPV4 = 0
    IPV6 = 1
    UNIX = 2


class EventTrayChangeReason(IntEnum):
    OPEN = 0
    CLOSE = 1


class EventDiskChangeReason(IntEnum):
    MISSING_ON_START = 0
    DROP_MISSING_ON_START = 1


class BlockJobType(IntEnum):
    UNKNOWN = 0
    PULL = 1
    COPY = 2
    COMMIT = 3
    ACTIVE_COMMIT = 4
    BACKUP = 5


class BlockJobStatus(IntEnum):
    COMPLETED = 0
    FAILED = 1
    CANCELED = 2
    READY = 3


PUBLIC_PREFIXES = PUBLIC_PREFIXES + (
    (MetadataType, "VIR_DOMAIN_METADATA_"),
    (RebootFlags, "VIR_DOMAIN_REBOOT_"),
    (EventWatchdogAction, "VIR_DOMAIN_EVENT_WATCHDOG_"),
    (EventIOErrorAction, "VIR_DOMAIN_EVENT_IO_ERROR_"),
    (EventGraphicsPhase, "VIR_DOMAIN_EVENT_GRAPHICS_"),
    (EventGraphicsAddressType, "VIR_DOMAIN_EVENT_GRAPHICS_ADDRESS_"),
    (EventTrayChangeReason, "VIR_DOMAIN_EVENT_TRAY_CHANGE_"),
    (EventDiskChangeReason, "VIR_DOMAIN_EVENT_DISK_CHANGE_"),
    (BlockJobType, "VIR_DOMAIN_BLOCK_JOB_TYPE_"),
    (BlockJobStatus, "VIR_DOMAIN_BLOCK_JOB_"),
)


class ConnectCredentialType(IntEnum):
    """virConnectCredentialType: what an openAuth callback is asked for."""

    USERNAME = 1
    AUTHNAME = 2
    LANGUAGE = 3
    CNONCE = 4
    PASSPHRASE = 5
    ECHOPROMPT = 6
    NOECHOPROMPT = 7
    REALM = 8
    EXTERNAL = 9


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((ConnectCredentialType, "VIR_CRED_"),)


class NodeCPUStats(IntEnum):
    """virNodeGetCPUStats' cpuNum for the whole host."""
    ALL_CPUS = -1


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((NodeCPUStats, "VIR_NODE_CPU_STATS_"),
                                     (NodeMemoryStats, "VIR_NODE_MEMORY_STATS_"))


class DomainSnapshotCreateFlags(IntFlag):
    """virDomainSnapshotCreateFlags."""

    REDEFINE = 1
    CURRENT = 2
    NO_METADATA = 4
    HALT = 8
    DISK_ONLY = 16
    REUSE_EXT = 32
    QUIESCE = 64
    ATOMIC = 128
    LIVE = 256
    VALIDATE = 512


class DomainSnapshotListFlags(IntFlag):
    """virDomainSnapshotListFlags (ROOTS for a domain's list, DESCENDANTS for a snapshot's: one bit)."""

    ROOTS = 1
    METADATA = 2
    LEAVES = 4
    NO_LEAVES = 8
    NO_METADATA = 16
    INACTIVE = 32
    ACTIVE = 64
    DISK_ONLY = 128
    INTERNAL = 256
    EXTERNAL = 512
    TOPOLOGICAL = 1024


class DomainSnapshotChildrenFlags(IntFlag):
    """VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS: ROOTS' bit, as a snapshot's children list reads it."""

    DESCENDANTS = 1


class DomainSnapshotRevertFlags(IntFlag):
    """virDomainSnapshotRevertFlags."""

    RUNNING = 1
    PAUSED = 2
    FORCE = 4
    RESET_NVRAM = 8


class DomainSnapshotDeleteFlags(IntFlag):
    """virDomainSnapshotDeleteFlags."""

    CHILDREN = 1
    METADATA_ONLY = 2
    CHILDREN_ONLY = 4


class DomainSnapshotXMLFlags(IntFlag):
    """virDomainSnapshotXMLFlags."""

    SECURE = 1


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((DomainSnapshotCreateFlags, "VIR_DOMAIN_SNAPSHOT_CREATE_"),
                                     (DomainSnapshotListFlags, "VIR_DOMAIN_SNAPSHOT_LIST_"),
                                     (DomainSnapshotChildrenFlags, "VIR_DOMAIN_SNAPSHOT_LIST_"),
                                     (DomainSnapshotRevertFlags, "VIR_DOMAIN_SNAPSHOT_REVERT_"),
                                     (DomainSnapshotDeleteFlags, "VIR_DOMAIN_SNAPSHOT_DELETE_"),
                                     (DomainSnapshotXMLFlags, "VIR_DOMAIN_SNAPSHOT_XML_"))


# -- domain checkpoints (libvirt-domain-checkpoint.h) --------------------------------------

class DomainCheckpointCreateFlags(IntFlag):
    """virDomainCheckpointCreateFlags."""

    REDEFINE = 1
    QUIESCE = 2
    REDEFINE_VALIDATE = 4


class DomainCheckpointXMLFlags(IntFlag):
    """virDomainCheckpointXMLFlags."""

    SECURE = 1
    NO_DOMAIN = 2
    SIZE = 4


class DomainCheckpointListFlags(IntFlag):
    """virDomainCheckpointListFlags (ROOTS for a domain's list, DESCENDANTS for a checkpoint's: one bit)."""

    ROOTS = 1
    TOPOLOGICAL = 2
    LEAVES = 4
    NO_LEAVES = 8


class DomainCheckpointChildrenFlags(IntFlag):
    """VIR_DOMAIN_CHECKPOINT_LIST_DESCENDANTS: ROOTS' bit, as a checkpoint's children list reads it."""

    DESCENDANTS = 1


class DomainCheckpointDeleteFlags(IntFlag):
    """virDomainCheckpointDeleteFlags."""

    CHILDREN = 1
    METADATA_ONLY = 2
    CHILDREN_ONLY = 4


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((DomainCheckpointCreateFlags, "VIR_DOMAIN_CHECKPOINT_CREATE_"),
                                     (DomainCheckpointXMLFlags, "VIR_DOMAIN_CHECKPOINT_XML_"),
                                     (DomainCheckpointListFlags, "VIR_DOMAIN_CHECKPOINT_LIST_"),
                                     (DomainCheckpointChildrenFlags, "VIR_DOMAIN_CHECKPOINT_LIST_"),
                                     (DomainCheckpointDeleteFlags, "VIR_DOMAIN_CHECKPOINT_DELETE_"))


# -- storage pools and volumes (libvirt-storage.h) ----------------------------------------

class StoragePoolState(IntEnum):
    """virStoragePoolState."""

    INACTIVE = 0
    BUILDING = 1
    RUNNING = 2
    DEGRADED = 3
    INACCESSIBLE = 4


class StoragePoolBuildFlags(IntFlag):
    """virStoragePoolBuildFlags."""

    NEW = 0
    REPAIR = 1
    RESIZE = 2
    NO_OVERWRITE = 4
    OVERWRITE = 8


class StoragePoolCreateFlags(IntFlag):
    """virStoragePoolCreateFlags."""

    NORMAL = 0
    WITH_BUILD = 1
    WITH_BUILD_OVERWRITE = 2
    WITH_BUILD_NO_OVERWRITE = 4


class StoragePoolDeleteFlags(IntFlag):
    """virStoragePoolDeleteFlags."""

    NORMAL = 0
    ZEROED = 1


class StoragePoolDefineFlags(IntFlag):
    """virStoragePoolDefineFlags."""

    VALIDATE = 1


class ConnectListStoragePoolsFlags(IntFlag):
    """virConnectListAllStoragePoolsFlags."""

    INACTIVE = 1
    ACTIVE = 2
    PERSISTENT = 4
    TRANSIENT = 8
    AUTOSTART = 16
    NO_AUTOSTART = 32
    DIR = 64
    FS = 128
    NETFS = 256
    LOGICAL = 512
    DISK = 1024
    ISCSI = 2048
    SCSI = 4096
    MPATH = 8192
    RBD = 16384
    SHEEPDOG = 32768
    GLUSTER = 65536
    ZFS = 131072
    VSTORAGE = 262144
    ISCSI_DIRECT = 524288


class StorageVolType(IntEnum):
    """virStorageVolType."""

    FILE = 0
    BLOCK = 1
    DIR = 2
    NETWORK = 3
    NETDIR = 4
    PLOOP = 5


class StorageVolCreateFlags(IntFlag):
    """virStorageVolCreateFlags."""

    PREALLOC_METADATA = 1
    REFLINK = 2
    VALIDATE = 4


class StorageVolDeleteFlags(IntFlag):
    """virStorageVolDeleteFlags."""

    NORMAL = 0
    ZEROED = 1
    WITH_SNAPSHOTS = 2


class StorageVolWipeAlgorithm(IntEnum):
    """virStorageVolWipeAlgorithm."""

    ZERO = 0
    NNSA = 1
    DOD = 2
    BSI = 3
    GUTMANN = 4
    SCHNEIER = 5
    PFITZNER7 = 6
    PFITZNER33 = 7
    RANDOM = 8
    TRIM = 9


class StorageVolResizeFlags(IntFlag):
    """virStorageVolResizeFlags."""

    ALLOCATE = 1
    DELTA = 2
    SHRINK = 4


class StorageVolInfoFlags(IntFlag):
    """virStorageVolInfoFlags."""

    USE_ALLOCATION = 0
    GET_PHYSICAL = 1


class StorageVolUploadFlags(IntFlag):
    """virStorageVolUploadFlags."""

    SPARSE_STREAM = 1


class StorageVolDownloadFlags(IntFlag):
    """virStorageVolDownloadFlags."""

    SPARSE_STREAM = 1


class StorageXMLFlags(IntFlag):
    """virStorageXMLFlags."""

    INACTIVE = 1


class StoragePoolEventID(IntEnum):
    """virStoragePoolEventID."""

    LIFECYCLE = 0
    REFRESH = 1


class StoragePoolEventLifecycle(IntEnum):
    """virStoragePoolEventLifecycleType."""

    DEFINED = 0
    UNDEFINED = 1
    STARTED = 2
    STOPPED = 3
    CREATED = 4
    DELETED = 5


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((StoragePoolState, "VIR_STORAGE_POOL_"),
                                     (StoragePoolBuildFlags, "VIR_STORAGE_POOL_BUILD_"),
                                     (StoragePoolCreateFlags, "VIR_STORAGE_POOL_CREATE_"),
                                     (StoragePoolDeleteFlags, "VIR_STORAGE_POOL_DELETE_"),
                                     (StoragePoolDefineFlags, "VIR_STORAGE_POOL_DEFINE_"),
                                     (ConnectListStoragePoolsFlags, "VIR_CONNECT_LIST_STORAGE_POOLS_"),
                                     (StorageVolType, "VIR_STORAGE_VOL_"),
                                     (StorageVolCreateFlags, "VIR_STORAGE_VOL_CREATE_"),
                                     (StorageVolDeleteFlags, "VIR_STORAGE_VOL_DELETE_"),
                                     (StorageVolWipeAlgorithm, "VIR_STORAGE_VOL_WIPE_ALG_"),
                                     (StorageVolResizeFlags, "VIR_STORAGE_VOL_RESIZE_"),
                                     (StorageVolInfoFlags, "VIR_STORAGE_VOL_"),
                                     (StorageVolUploadFlags, "VIR_STORAGE_VOL_UPLOAD_"),
                                     (StorageVolDownloadFlags, "VIR_STORAGE_VOL_DOWNLOAD_"),
                                     (StorageXMLFlags, "VIR_STORAGE_XML_"),
                                     (StoragePoolEventID, "VIR_STORAGE_POOL_EVENT_ID_"),
                                     (StoragePoolEventLifecycle, "VIR_STORAGE_POOL_EVENT_"))


# -- virtual networks (libvirt-network.h), the client's side ------------------------------

class ConnectListNetworksFlags(IntFlag):
    """virConnectListAllNetworksFlags."""

    INACTIVE = 1
    ACTIVE = 2
    PERSISTENT = 4
    TRANSIENT = 8
    AUTOSTART = 16
    NO_AUTOSTART = 32


class NetworkXMLFlags(IntFlag):
    """virNetworkXMLFlags."""

    INACTIVE = 1


class NetworkUpdateCommand(IntEnum):
    """virNetworkUpdateCommand."""

    NONE = 0
    MODIFY = 1
    DELETE = 2
    ADD_LAST = 3
    ADD_FIRST = 4


class NetworkUpdateSection(IntEnum):
    """virNetworkUpdateSection."""

    NONE = 0
    BRIDGE = 1
    DOMAIN = 2
    IP = 3
    IP_DHCP_HOST = 4
    IP_DHCP_RANGE = 5
    FORWARD = 6
    FORWARD_INTERFACE = 7
    FORWARD_PF = 8
    PORTGROUP = 9
    DNS_HOST = 10
    DNS_TXT = 11
    DNS_SRV = 12


class NetworkUpdateFlags(IntFlag):
    """virNetworkUpdateFlags."""

    AFFECT_CURRENT = 0
    AFFECT_LIVE = 1
    AFFECT_CONFIG = 2


class NetworkCreateFlags(IntFlag):
    """virNetworkCreateFlags."""

    VALIDATE = 1


class NetworkDefineFlags(IntFlag):
    """virNetworkDefineFlags."""

    VALIDATE = 1


class IPAddrType(IntEnum):
    """virIPAddrType (a DHCP lease's ``type``)."""

    IPV4 = 0
    IPV6 = 1


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((ConnectListNetworksFlags, "VIR_CONNECT_LIST_NETWORKS_"),
                                     (NetworkXMLFlags, "VIR_NETWORK_XML_"),
                                     (NetworkUpdateCommand, "VIR_NETWORK_UPDATE_COMMAND_"),
                                     (NetworkUpdateSection, "VIR_NETWORK_SECTION_"),
                                     (NetworkUpdateFlags, "VIR_NETWORK_UPDATE_"),
                                     (NetworkCreateFlags, "VIR_NETWORK_CREATE_"),
                                     (NetworkDefineFlags, "VIR_NETWORK_DEFINE_"),
                                     (IPAddrType, "VIR_IP_ADDR_TYPE_"))


# -- streams (libvirt-stream.h) ------------------------------------------------------------

class StreamFlags(IntFlag):
    """virStreamFlags."""

    NONBLOCK = 1


class StreamRecvFlags(IntFlag):
    """virStreamRecvFlagsValues: recvFlags stops at a hole (returns -3) instead of reading zeros."""

    STOP_AT_HOLE = 1


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((StreamFlags, "VIR_STREAM_"), (StreamRecvFlags, "VIR_STREAM_RECV_"))


# -- network events (libvirt-network.h), the network driver's side --------------------------

class NetworkEventID(IntEnum):
    """virNetworkEventID."""

    LIFECYCLE = 0


class NetworkEventLifecycle(IntEnum):
    """virNetworkEventLifecycleType (its detail is always 0)."""

    DEFINED = 0
    UNDEFINED = 1
    STARTED = 2
    STOPPED = 3


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((NetworkEventID, "VIR_NETWORK_EVENT_ID_"),
                                     (NetworkEventLifecycle, "VIR_NETWORK_EVENT_"))


# -- node-device events (libvirt-nodedev.h) -----------------------------------------------------

class NodeDeviceEventID(IntEnum):
    """virNodeDeviceEventID."""

    LIFECYCLE = 0
    UPDATE = 1


class NodeDeviceEventLifecycle(IntEnum):
    """virNodeDeviceEventLifecycleType (its detail is always 0)."""

    CREATED = 0
    DELETED = 1
    DEFINED = 2
    UNDEFINED = 3


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((NodeDeviceEventID, "VIR_NODE_DEVICE_EVENT_ID_"),
                                     (NodeDeviceEventLifecycle, "VIR_NODE_DEVICE_EVENT_"))


# -- block jobs (libvirt-domain.h) ----------------------------------------------------------

class BlockCopyFlags(IntFlag):
    """virDomainBlockCopyFlags."""

    SHALLOW = 1
    REUSE_EXT = 2
    TRANSIENT_JOB = 4
    SYNCHRONOUS_WRITES = 8


class BlockRebaseFlags(IntFlag):
    """virDomainBlockRebaseFlags (virDomainBlockPullFlags shares BANDWIDTH_BYTES)."""

    SHALLOW = 1
    REUSE_EXT = 2
    COPY_RAW = 4
    COPY = 8
    RELATIVE = 16
    COPY_DEV = 32
    BANDWIDTH_BYTES = 64


class BlockPullFlags(IntFlag):
    BANDWIDTH_BYTES = 64


class BlockCommitFlags(IntFlag):
    """virDomainBlockCommitFlags."""

    SHALLOW = 1
    DELETE = 2
    ACTIVE = 4
    RELATIVE = 8
    BANDWIDTH_BYTES = 16


class BlockJobAbortFlags(IntFlag):
    ASYNC = 1
    PIVOT = 2


class BlockJobSpeedFlags(IntFlag):
    BANDWIDTH_BYTES = 1


class BlockJobInfoFlags(IntFlag):
    BANDWIDTH_BYTES = 1


PUBLIC_PREFIXES = PUBLIC_PREFIXES + (
    (BlockCopyFlags, "VIR_DOMAIN_BLOCK_COPY_"), (BlockRebaseFlags, "VIR_DOMAIN_BLOCK_REBASE_"),
    (BlockPullFlags, "VIR_DOMAIN_BLOCK_PULL_"), (BlockCommitFlags, "VIR_DOMAIN_BLOCK_COMMIT_"),
    (BlockJobAbortFlags, "VIR_DOMAIN_BLOCK_JOB_ABORT_"), (BlockJobSpeedFlags, "VIR_DOMAIN_BLOCK_JOB_SPEED_"),
    (BlockJobInfoFlags, "VIR_DOMAIN_BLOCK_JOB_INFO_"),
)


# -- job statistics and abort flags ------------------------------------------------------

class JobStatsFlags(IntFlag):
    """virDomainGetJobStatsFlags."""

    COMPLETED = 1
    KEEP_COMPLETED = 2


class AbortJobFlags(IntFlag):
    """virDomainAbortJobFlagsValues."""

    POSTCOPY = 1


PUBLIC_PREFIXES = PUBLIC_PREFIXES + (
    (JobStatsFlags, "VIR_DOMAIN_JOB_STATS_"), (AbortJobFlags, "VIR_DOMAIN_ABORT_JOB_"),
)


# -- core dumps, guest-agent calls, lifecycle actions, tuning (the test driver's calls) --------

class DumpFlags(IntFlag):
    """virDomainCoreDumpFlags."""

    CRASH = 1
    LIVE = 2
    BYPASS_CACHE = 4
    RESET = 8
    MEMORY_ONLY = 16


class CoreDumpFormat(IntEnum):
    """virDomainCoreDumpFormat."""

    RAW = 0
    KDUMP_ZLIB = 1
    KDUMP_LZO = 2
    KDUMP_SNAPPY = 3
    WIN_DMP = 4


class InterfaceAddressesSource(IntEnum):
    """virDomainInterfaceAddressesSource."""

    LEASE = 0
    AGENT = 1
    ARP = 2


class IPAddrType(IntEnum):
    """virIPAddrType."""

    IPV4 = 0
    IPV6 = 1


class Lifecycle(IntEnum):
    """virDomainLifecycle."""

    POWEROFF = 0
    REBOOT = 1
    CRASH = 2


class LifecycleAction(IntEnum):
    """virDomainLifecycleAction."""

    DESTROY = 0
    RESTART = 1
    RESTART_RENAME = 2
    PRESERVE = 3
    COREDUMP_DESTROY = 4
    COREDUMP_RESTART = 5


class ControlState(IntEnum):
    """virDomainControlState."""

    OK = 0
    JOB = 1
    OCCUPIED = 2
    ERROR = 3


class ControlErrorReason(IntEnum):
    """virDomainControlErrorReason."""

    NONE = 0
    UNKNOWN = 1
    MONITOR = 2
    INTERNAL = 3


class SetUserPasswordFlags(IntFlag):
    """virDomainSetUserPasswordFlags."""

    ENCRYPTED = 1


class SetTimeFlags(IntFlag):
    """virDomainSetTimeFlags."""

    SYNC = 1


class NumatuneMemMode(IntEnum):
    """virDomainNumatuneMemMode."""

    STRICT = 0
    PREFERRED = 1
    INTERLEAVE = 2
    RESTRICTIVE = 3


PUBLIC_PREFIXES = PUBLIC_PREFIXES + (
    (DumpFlags, "VIR_DUMP_"), (CoreDumpFormat, "VIR_DOMAIN_CORE_DUMP_FORMAT_"),
    (InterfaceAddressesSource, "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_"), (IPAddrType, "VIR_IP_ADDR_TYPE_"),
    (Lifecycle, "VIR_DOMAIN_LIFECYCLE_"), (LifecycleAction, "VIR_DOMAIN_LIFECYCLE_ACTION_"),
    (ControlState, "VIR_DOMAIN_CONTROL_"), (ControlErrorReason, "VIR_DOMAIN_CONTROL_ERROR_REASON_"),
    (SetUserPasswordFlags, "VIR_DOMAIN_PASSWORD_"), (SetTimeFlags, "VIR_DOMAIN_TIME_"),
    (NumatuneMemMode, "VIR_DOMAIN_NUMATUNE_MEM_"),
)


class MemoryFlags(IntFlag):
    """virDomainMemoryFlags (memoryPeek)."""

    VIRTUAL = 1
    PHYSICAL = 2


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((MemoryFlags, "VIR_MEMORY_"),)


class BaselineCPUFlags(IntFlag):
    """virConnectBaseline(Hypervisor)CPUFlags."""

    EXPAND_FEATURES = 1
    MIGRATABLE = 2


class CompareCPUFlags(IntFlag):
    """virConnectCompareCPUFlags."""

    FAIL_INCOMPATIBLE = 1
    VALIDATE_XML = 2


class CPUCompareResult(IntEnum):
    """virCPUCompareResult."""

    ERROR = -1
    INCOMPATIBLE = 0
    IDENTICAL = 1
    SUPERSET = 2


PUBLIC_PREFIXES = PUBLIC_PREFIXES + ((BaselineCPUFlags, "VIR_CONNECT_BASELINE_CPU_"),
                                     (CompareCPUFlags, "VIR_CONNECT_COMPARE_CPU_"),
                                     (CPUCompareResult, "VIR_CPU_COMPARE_"))
