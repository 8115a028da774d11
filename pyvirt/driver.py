"""The hypervisor-driver contract.

A *driver* (qemu, test, remote) hands out one :class:`HypervisorConnection`
per client connection.  Its methods are coroutines named after libvirt's
remote procedures in snake case (``REMOTE_PROC_DOMAIN_GET_INFO`` is
``domain_get_info``) and take that procedure's argument fields in wire
order, so the daemon dispatches a call by name and the remote driver
forwards one the same way.  A domain argument is a :class:`DomainRef`
(libvirt's ``remote_nonnull_domain``: name, uuid, id).

Return values: a procedure whose reply has one field returns that value;
one with several returns a tuple in wire order; one with none returns None.

Every method raises VIR_ERR_NO_SUPPORT by default, as a missing entry in
libvirt's driver table does: a driver implements what it supports.
Closing the connection runs its close hooks (autodestroy).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from .driver_network import NETWORK_METHODS, NETWORK_READ_ONLY_SAFE
from .driver_storage import STORAGE_METHODS, STORAGE_READ_ONLY_SAFE
from .errors import ErrorDomain, ErrorNumber, api_name, error, libvirtError, no_support
from .refs import DomainRef, FrozenRecord, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


def _log() -> Any:
    """The module's logger, imported on first use: only error paths log here,
    and logging costs every command-line call its import."""
    import logging
    return logging.getLogger(__name__)


class DomainEvent(FrozenRecord):
    """An event about a domain: ``event_id`` is an :class:`pyvirt.enums.EventID`.

    ``detail`` is the tuple of the event message's fields AFTER ``dom``, in the
    order of libvirt's ``remote_domain_event_callback_<name>_msg`` (or of the
    flattened callback message, for ids added after the callback form), with
    the wire's own types: LIFECYCLE ``(event, detail)``, REBOOT ``()``,
    RTC_CHANGE ``(offset,)``, WATCHDOG ``(action,)``, IO_ERROR ``(srcPath,
    devAlias, action)``, IO_ERROR_REASON ``(srcPath, devAlias, action, reason)``,
    GRAPHICS ``(phase, (family, node, service), (family, node, service),
    authScheme, [(type, name), ...])``, BLOCK_JOB ``(path, type, status)``,
    BLOCK_JOB_2 ``(dst, type, status)``, DISK_CHANGE ``(oldSrcPath, newSrcPath,
    devAlias, reason)``, TRAY_CHANGE ``(devAlias, reason)``, PMWAKEUP /
    PMSUSPEND / PMSUSPEND_DISK ``(reason,)``, BALLOON_CHANGE ``(actual,)``,
    DEVICE_REMOVED / DEVICE_ADDED / DEVICE_REMOVAL_FAILED ``(devAlias,)``,
    TUNABLE ``(params,)`` and JOB_COMPLETED ``(params,)`` as typed-parameter
    lists ``[(name, type, value), ...]``, MIGRATION_ITERATION ``(iteration,)``,
    METADATA_CHANGE ``(type, nsuri)``, AGENT_LIFECYCLE ``(state, reason)``,
    BLOCK_THRESHOLD ``(dev, path, threshold, excess)``, MEMORY_FAILURE
    ``(recipient, action, flags)``, MEMORY_DEVICE_SIZE_CHANGE ``(alias, size)``.
    The daemon sends it as is in either registration form; the remote driver
    decodes it back to the same tuple.
    """

    __slots__ = ("event_id", "dom", "detail")
    _fields = __match_args__ = __slots__
    event_id: int
    dom: DomainRef
    detail: tuple[Any, ...]

    def __init__(self, event_id: int, dom: DomainRef, detail: tuple[Any, ...]) -> None:
        self._set(event_id=event_id, dom=dom, detail=detail)


EventCallback = Callable[[DomainEvent], None]

QEMU_MONITOR_EVENT = -1
"""``event_id`` of a raw QMP event (libvirt-qemu's monitor events);
``detail`` is ``(name, timestamp_seconds, details_json_or_None)``."""


class EventBus:
    """Fan-out of driver events to subscribers.

    A subscriber that raises is logged and kept: an event must never break
    the driver that emits it.
    """

    def __init__(self) -> None:
        self._subs: dict[int, EventCallback] = {}
        self._ids = itertools.count(1)

    def subscribe(self, callback: EventCallback) -> int:
        token = next(self._ids)
        self._subs[token] = callback
        return token

    def unsubscribe(self, token: int) -> None:
        self._subs.pop(token, None)

    def emit(self, event: DomainEvent) -> None:
        for callback in list(self._subs.values()):
            try:
                callback(event)
            except Exception:  # a broken listener must not break the driver
                _log().exception("event listener failed for %s", event)


class StreamSink(Record):
    """The receiving end of an upload stream a driver call opened.

    A procedure that opens a stream returns ``(ret, end)``: on a local driver
    ``end`` is a StreamSink (the daemon writes the stream's data into ``fd``,
    a pipe the driver reads, closes it at the end, then calls ``done`` with
    None, or with the error that ended the stream); on the remote driver it
    is the sending end, with ``send_from_fd``, ``finish`` and ``abort``.
    """

    _fields = __match_args__ = ("fd", "done", "cancel", "length", "sparse")
    fd: int
    done: Callable[[BaseException | None], Any]
    # Set by whoever carries the stream: ends it from the driver's side with an
    # error (a console taken over by a forced open).
    cancel: Callable[[BaseException], None] | None
    # A storage volume's upload/download: ``fd`` is then the volume's file
    # itself, positioned at the call's offset; at most ``length`` bytes (0: to
    # the end) are moved, and with ``sparse`` holes travel as libvirt's stream
    # HOLE messages (download: found with SEEK_DATA/SEEK_HOLE; upload: left as
    # holes in the file) instead of zeros.
    length: int
    sparse: bool

    def __init__(self, fd: int, done: Callable[[BaseException | None], Any],
                 cancel: Callable[[BaseException], None] | None = None,
                 length: int = 0, sparse: bool = False) -> None:
        self.fd, self.done, self.cancel = fd, done, cancel
        self.length, self.sparse = length, sparse


class FdReply(Record):
    """A reply that carries descriptors (libvirt's REPLY_WITH_FDS: openGraphicsFD).

    ``value`` is the reply as usual; ``fds`` go to the client after it over
    the UNIX socket and are closed here once sent (or when they cannot be).
    """

    _fields = __match_args__ = ("value", "fds")
    value: Any
    fds: list[int]

    def __init__(self, value: Any, fds: list[int]) -> None:
        self.value, self.fds = value, fds


class ConnectionInfo(Record):
    """What a driver learns about the client that opened a connection."""

    _fields = __match_args__ = ("uri", "read_only", "client_id", "close_hooks", "unix_uid", "unix_gid",
                                "unix_pid", "x509_dname", "sasl_user", "credentials")
    _hidden = ("credentials",)

    def __init__(self, uri: str, read_only: bool = False, client_id: str = "embedded",
                 close_hooks: list[Callable[[], Any]] | None = None,
                 unix_uid: int | None = None, unix_gid: int | None = None, unix_pid: int | None = None,
                 x509_dname: str | None = None, sasl_user: str | None = None,
                 credentials: Callable[[list[list[Any]]], Any] | None = None) -> None:
        self.uri = uri
        self.read_only = read_only
        self.client_id = client_id
        self.close_hooks: list[Callable[[], Any]] = [] if close_hooks is None else close_hooks
        # Who the client is, as the daemon learnt it (libvirt's virIdentity): UNIX peer
        # credentials, the TLS certificate's distinguished name, the SASL user name.
        self.unix_uid = unix_uid
        self.unix_gid = unix_gid
        self.unix_pid = unix_pid
        self.x509_dname = x509_dname
        self.sasl_user = sasl_user
        # Client side: answers credential requests (SASL) as openAuth's callback does:
        # given [[type, prompt, challenge, defresult, result], ...], fills each result.
        self.credentials = credentials


def api_error_domain(method: str, default: ErrorDomain = ErrorDomain.NONE) -> ErrorDomain:
    """The error domain of the libvirt source file whose API entry point serves ``method``:
    libvirt-domain-checkpoint.c's calls report from VIR_FROM_DOMAIN_CHECKPOINT,
    libvirt-domain-snapshot.c's (every call with "snapshot" in its name) from
    VIR_FROM_DOMAIN_SNAPSHOT, the other virDomain* calls from VIR_FROM_DOMAIN."""
    if "_checkpoint" in method:
        return ErrorDomain.DOMAIN_CHECKPOINT
    if "snapshot" in method:
        return ErrorDomain.DOMAIN_SNAPSHOT
    if method.startswith("domain_") or method in _HOST_API_FROM_DOMAIN:
        return ErrorDomain.DOMAIN
    return default


def _unsupported(name: str) -> Callable[..., Any]:
    async def method(self: "HypervisorConnection", *args: Any, **kwargs: Any) -> Any:
        # libvirt's API entry point reports a missing driver method, naming itself, from its
        # own error domain (virDomain* calls: VIR_FROM_DOMAIN)
        raise no_support(api_error_domain(name, self.error_domain), api_name(name))

    method.__name__ = name
    method.__doc__ = f"Not supported by this driver (libvirt's {name})."
    return method


# The procedures a driver may implement.  Every name here gets a default
# method raising NO_SUPPORT; the RPC tables and the public API use the same
# names.  Keep in procedure-number order within each group.
DRIVER_METHODS: tuple[str, ...] = (
    # connection
    "connect_get_type", "connect_get_version", "connect_get_lib_version",
    "connect_get_hostname", "connect_get_uri", "connect_get_capabilities",
    "connect_get_sysinfo", "node_get_info", "connect_supports_feature",
    "connect_is_secure", "node_get_security_model",
    "connect_list_all_domains", "connect_num_of_domains", "connect_list_domains",
    "connect_num_of_defined_domains", "connect_list_defined_domains",
    # lookup, define, lifecycle
    "domain_lookup_by_id", "domain_lookup_by_name", "domain_lookup_by_uuid",
    "domain_define_xml", "domain_define_xml_flags", "domain_undefine", "domain_undefine_flags",
    "domain_create_xml", "domain_create", "domain_create_with_flags",
    "domain_destroy", "domain_destroy_flags", "domain_suspend", "domain_resume",
    "domain_shutdown", "domain_shutdown_flags", "domain_reboot",
    "domain_reset", "domain_set_metadata", "domain_get_metadata",
    # queries
    "domain_get_info", "domain_get_state", "domain_get_xml_desc", "domain_get_os_type",
    "domain_is_active", "domain_is_persistent", "domain_get_autostart", "domain_set_autostart",
    "domain_has_managed_save_image", "domain_get_security_label", "domain_get_messages",
    "domain_snapshot_num", "domain_get_max_memory", "domain_get_vcpus_flags",
    "domain_get_block_info", "domain_block_stats",
    # statistics
    "domain_block_stats_flags", "domain_interface_stats", "domain_memory_stats",
    "domain_set_memory_stats_period", "domain_get_vcpus", "domain_get_vcpu_pin_info",
    "domain_get_cpu_stats", "connect_get_all_domain_stats", "node_get_cpu_map", "domain_get_disk_errors",
    # jobs
    "domain_get_job_info", "domain_get_job_stats", "domain_abort_job", "domain_abort_job_flags",
    "domain_migrate_set_max_speed", "domain_migrate_get_max_speed",
    "domain_migrate_set_max_downtime", "domain_migrate_get_max_downtime",
    "domain_migrate_get_compression_cache", "domain_migrate_set_compression_cache",
    # save/restore
    "domain_save", "domain_save_flags", "domain_restore", "domain_restore_flags",
    "domain_save_params", "domain_restore_params",
    "domain_managed_save", "domain_managed_save_remove", "domain_save_image_get_xml_desc",
    "domain_save_image_define_xml", "domain_managed_save_get_xml_desc", "domain_managed_save_define_xml",
    # migration
    "domain_migrate_prepare", "domain_migrate_finish", "domain_migrate_start_post_copy",
    "domain_migrate_prepare2", "domain_migrate_perform", "domain_migrate_finish2",
    "domain_migrate_prepare_tunnel", "domain_migrate_begin3", "domain_migrate_prepare3",
    "domain_migrate_prepare_tunnel3", "domain_migrate_perform3", "domain_migrate_finish3",
    "domain_migrate_confirm3", "domain_migrate_begin3_params", "domain_migrate_prepare3_params",
    "domain_migrate_prepare_tunnel3_params", "domain_migrate_perform3_params",
    "domain_migrate_finish3_params", "domain_migrate_confirm3_params",
    # streams and the qemu program
    "domain_open_console", "domain_qemu_monitor_command",
    # devices and tuning
    "domain_attach_device", "domain_detach_device", "domain_attach_device_flags",
    "domain_detach_device_flags", "domain_update_device_flags", "domain_detach_device_alias",
    "domain_set_max_memory", "domain_set_memory", "domain_set_memory_flags",
    "domain_set_vcpus", "domain_set_vcpus_flags",
    # console and graphics
    "domain_screenshot", "domain_send_key", "domain_open_graphics_fd",
    # host and capabilities
    "connect_get_max_vcpus", "node_get_cells_free_memory", "node_get_free_memory",
    "node_get_cpu_stats", "node_get_memory_stats", "connect_get_cpu_model_names",
    "connect_get_domain_capabilities",
    # snapshots
    "domain_snapshot_create_xml", "domain_snapshot_get_xml_desc", "domain_snapshot_list_names",
    "domain_snapshot_lookup_by_name", "domain_has_current_snapshot", "domain_snapshot_current",
    "domain_revert_to_snapshot", "domain_snapshot_delete", "domain_snapshot_get_parent",
    "domain_snapshot_num_children", "domain_snapshot_list_children_names", "domain_snapshot_is_current",
    "domain_snapshot_has_metadata", "domain_list_all_snapshots", "domain_snapshot_list_all_children",
    # block jobs
    "domain_block_job_abort", "domain_get_block_job_info", "domain_block_job_set_speed", "domain_block_pull",
    "domain_block_rebase", "domain_block_commit", "domain_block_copy",
    # scheduler and the queries tools ask the test driver (rpc/protocol/remote_sched.py)
    "domain_get_max_vcpus", "domain_get_scheduler_type", "domain_get_scheduler_parameters",
    "domain_set_scheduler_parameters", "domain_is_updated", "domain_set_scheduler_parameters_flags",
    "domain_get_scheduler_parameters_flags",
    # node devices and host interfaces (rpc/protocol/remote_iface_nodedev.py; the test driver's)
    "node_num_of_devices", "node_list_devices", "node_device_lookup_by_name", "node_device_get_xml_desc",
    "node_device_get_parent", "node_device_num_of_caps", "node_device_list_caps",
    "connect_num_of_interfaces", "connect_list_interfaces", "interface_lookup_by_name",
    "interface_lookup_by_mac_string", "interface_get_xml_desc", "interface_define_xml", "interface_undefine",
    "interface_create", "interface_destroy", "connect_num_of_defined_interfaces",
    "connect_list_defined_interfaces", "interface_is_active", "connect_list_all_interfaces",
    "connect_list_all_node_devices",
    # tuning, pinning, guest time and hostname, free pages (rpc/protocol/remote_tuning.py)
    "domain_pin_vcpu", "domain_set_memory_parameters", "domain_get_memory_parameters",
    "domain_set_blkio_parameters", "domain_get_blkio_parameters", "domain_pin_vcpu_flags",
    "domain_set_block_io_tune", "domain_get_block_io_tune", "domain_set_numa_parameters",
    "domain_get_numa_parameters", "domain_set_interface_parameters", "domain_get_interface_parameters",
    "domain_get_hostname", "domain_pin_emulator", "domain_get_emulator_pin_info", "domain_get_time",
    "domain_set_time", "node_get_free_pages", "domain_get_iothread_info", "domain_get_perf_events",
    "domain_set_perf_events",
    # rename, the guest agent's calls, NMI, signals, control info, lifecycle actions (remote_guest.py)
    "domain_inject_nmi", "domain_get_control_info", "domain_fstrim", "domain_send_process_signal",
    "domain_fsfreeze", "domain_fsthaw", "domain_get_fsinfo", "domain_interface_addresses",
    "domain_set_user_password", "domain_rename", "domain_set_lifecycle_action", "domain_core_dump",
    "domain_core_dump_with_format",
    "interface_change_begin", "interface_change_commit", "interface_change_rollback",
    "domain_pin_iothread", "domain_add_iothread", "domain_del_iothread", "domain_set_iothread_params",
    "node_device_create_xml", "node_device_destroy", "domain_memory_peek",
    # CPU models, launch security, starts with descriptors (rpc/protocol/remote_cpu_files.py)
    "connect_compare_cpu", "connect_baseline_cpu", "domain_create_xml_with_files", "domain_create_with_files",
    "connect_compare_hypervisor_cpu", "connect_baseline_hypervisor_cpu", "domain_get_launch_security_info",
    # checkpoints (rpc/protocol/remote_checkpoint.py)
    "domain_checkpoint_create_xml", "domain_checkpoint_get_xml_desc", "domain_list_all_checkpoints",
    "domain_checkpoint_list_all_children", "domain_checkpoint_lookup_by_name", "domain_checkpoint_get_parent",
    "domain_checkpoint_delete",
)

# virConnect* calls whose entry point lives with libvirt's domain calls (libvirt-host.c reports
# from VIR_FROM_DOMAIN): a driver without them is refused from that domain, not its own
_HOST_API_FROM_DOMAIN = frozenset({"connect_compare_cpu", "connect_baseline_cpu",
                                   "connect_compare_hypervisor_cpu", "connect_baseline_hypervisor_cpu"})


class HypervisorConnection:
    """One client's connection to a driver.  Subclasses override what they support."""

    error_domain: ErrorDomain = ErrorDomain.NONE
    # The secondary drivers' connections, as libvirt's virConnect carries its
    # storage and network drivers: whoever opens the connection attaches them
    # (the daemon, an embedded driver); the storage and network methods below
    # forward to them, and without one they answer NO_SUPPORT.
    storage: Any = None
    network: Any = None

    def __init__(self, info: ConnectionInfo, events: EventBus) -> None:
        self.info = info
        self.events = events
        self.closed = False
        # The client behind this connection has gone, though calls it made may still
        # run (their replies go nowhere; close hooks run after them).  A call whose
        # effect only the client's answer makes safe — a migration's Finish resuming
        # the destination copy — checks this before acting.
        self.client_gone = False

    @property
    def read_only(self) -> bool:
        return self.info.read_only

    def add_close_hook(self, hook: Callable[[], Any]) -> None:
        """Run ``hook`` (sync or async) when this connection closes.

        On a connection already closed it runs at once (an async one as a task): a
        call still running when its connection closed — a Prepare that registers
        its guest for autodestroy, a Perform that watches its peer — must not wait
        for a close that has already happened."""
        if not self.closed:
            self.info.close_hooks.append(hook)
            return
        try:
            result = hook()
        except Exception:
            _log().exception("close hook failed on %s", self.info.uri)
            return
        if hasattr(result, "__await__"):
            import asyncio
            asyncio.ensure_future(result).add_done_callback(self._log_hook_failure)

    def _log_hook_failure(self, task: "asyncio.Future[Any]") -> None:
        if not task.cancelled() and task.exception() is not None:
            _log().error("close hook failed on %s", self.info.uri, exc_info=task.exception())

    def remove_close_hook(self, hook: Callable[[], Any]) -> None:
        try:
            self.info.close_hooks.remove(hook)
        except ValueError:
            pass

    async def connect_close(self) -> None:
        """Close the connection and run its close hooks, newest first."""
        if self.closed:
            return
        self.closed = True
        hooks, self.info.close_hooks = self.info.close_hooks[::-1], []
        for hook in hooks:
            try:
                result = hook()
                if hasattr(result, "__await__"):
                    await result
            except Exception:  # cleanup must not stop other hooks
                _log().exception("close hook failed on %s", self.info.uri)

    def subscribe_events(self, callback: EventCallback) -> int:
        return self.events.subscribe(callback)

    def unsubscribe_events(self, token: int) -> None:
        self.events.unsubscribe(token)

    async def events_subscribe(self, callback: EventCallback, event_id: int = 0) -> int:
        """Subscribe, doing whatever the driver needs first (the remote one registers
        ``event_id`` with its daemon); ``callback`` may still see other ids."""
        return self.subscribe_events(callback)

    # the host-wide bus of node-device events, where the connection lists node devices
    # (the test driver's host); None: no node-device events (libvirt's "not supported")
    node_device_events: Any = None

    def object_event_bus(self, kind: str) -> Any:
        """The bus of pool events (``kind`` 'storage'), network events ('network') or
        node-device events ('nodedev'), or libvirt's NO_SUPPORT when there is none."""
        if kind == "nodedev":
            bus = self.node_device_events
        else:
            target = getattr(self, kind)
            bus = target.events if target is not None else None
        if bus is None:
            raise no_support(self.error_domain, _OBJECT_EVENT_APIS[kind])
        return bus

    async def object_events_subscribe(self, kind: str, callback: Callable[[Any], None],
                                      event_id: int = 0) -> int:
        """Subscribe to one kind of object event (see :meth:`object_event_bus`);
        ``callback`` may see other ids too."""
        return self.object_event_bus(kind).subscribe(callback)

    def object_events_unsubscribe(self, kind: str, token: int) -> None:
        try:
            bus = self.object_event_bus(kind)
        except libvirtError:
            return
        bus.unsubscribe(token)


_OBJECT_EVENT_APIS = {"storage": "virConnectStoragePoolEventRegisterAny",
                      "network": "virConnectNetworkEventRegisterAny",
                      "nodedev": "virConnectNodeDeviceEventRegisterAny"}


def _secondary(kind: str, name: str) -> Callable[..., Any]:
    async def method(self: HypervisorConnection, *args: Any) -> Any:
        target = getattr(self, kind)
        if target is None:
            raise no_support(ErrorDomain.STORAGE if kind == "storage" else ErrorDomain.NETWORK, api_name(name))
        return await getattr(target, name)(*args)

    method.__name__ = name
    method.__doc__ = f"libvirt's {name}, served by the connection's {kind} driver."
    return method


for _name in DRIVER_METHODS:
    setattr(HypervisorConnection, _name, _unsupported(_name))
for _name in STORAGE_METHODS:
    setattr(HypervisorConnection, _name, _secondary("storage", _name))
for _name in NETWORK_METHODS:
    setattr(HypervisorConnection, _name, _secondary("network", _name))
del _name

SECONDARY_METHODS: frozenset[str] = frozenset(STORAGE_METHODS) | frozenset(NETWORK_METHODS)
"""The methods a hypervisor connection forwards to its storage or network driver."""


def implemented(conn: HypervisorConnection, name: str) -> bool:
    """True if ``conn``'s class overrides the default for ``name``."""
    return getattr(type(conn), name) is not getattr(HypervisorConnection, name, None)


# Methods a read-only connection may call; every other driver method mutates
# something and is refused with VIR_ERR_OPERATION_DENIED (libvirt's
# virCheckReadOnly).  The RPC tables are checked against this set by a test.
READ_ONLY_SAFE: frozenset[str] = frozenset({
    "connect_get_type", "connect_get_version", "connect_get_lib_version",
    "connect_get_hostname", "connect_get_uri", "connect_get_capabilities",
    "connect_get_sysinfo", "node_get_info", "connect_supports_feature",
    "connect_is_secure", "node_get_security_model",
    "connect_list_all_domains", "connect_num_of_domains", "connect_list_domains",
    "connect_num_of_defined_domains", "connect_list_defined_domains",
    "domain_lookup_by_id", "domain_lookup_by_name", "domain_lookup_by_uuid",
    "domain_get_info", "domain_get_state", "domain_get_xml_desc", "domain_get_os_type",
    "domain_is_active", "domain_is_persistent", "domain_get_autostart",
    "domain_has_managed_save_image", "domain_get_security_label", "domain_get_messages",
    "domain_snapshot_num", "domain_get_max_memory", "domain_get_vcpus_flags",
    "domain_get_block_info", "domain_block_stats",
    "domain_block_stats_flags", "domain_interface_stats", "domain_memory_stats",
    "domain_get_vcpus", "domain_get_vcpu_pin_info", "domain_get_cpu_stats",
    "connect_get_all_domain_stats", "node_get_cpu_map", "domain_get_disk_errors",
    "domain_get_metadata",
    "domain_get_job_info", "domain_get_job_stats",
    "domain_migrate_get_max_speed", "domain_migrate_get_max_downtime", "domain_migrate_get_compression_cache",
    # host (not connect_get_domain_capabilities: it may run a binary the caller names)
    "connect_get_max_vcpus", "node_get_cells_free_memory", "node_get_free_memory",
    "node_get_cpu_stats", "node_get_memory_stats", "connect_get_cpu_model_names",
    "connect_compare_cpu", "connect_baseline_cpu",
    # not domain_save_image_get_xml_desc: it opens a path the caller names, as root
    # (the managed-save image's is the daemon's own; its row refuses the SECURE flag)
    "domain_managed_save_get_xml_desc",
    # snapshots (the XML with VIR_DOMAIN_SNAPSHOT_XML_SECURE is refused by its row's readonly_flags)
    "domain_snapshot_get_xml_desc", "domain_snapshot_list_names", "domain_snapshot_lookup_by_name",
    "domain_has_current_snapshot", "domain_snapshot_current", "domain_snapshot_get_parent",
    "domain_snapshot_num_children", "domain_snapshot_list_children_names", "domain_snapshot_is_current",
    "domain_snapshot_has_metadata", "domain_list_all_snapshots", "domain_snapshot_list_all_children",
    # block jobs
    "domain_get_block_job_info",
    # scheduler, max vCPUs, isUpdated
    "domain_get_max_vcpus", "domain_get_scheduler_type", "domain_get_scheduler_parameters",
    "domain_is_updated", "domain_get_scheduler_parameters_flags",
    # node devices and host interfaces: lists, lookups, XML
    "node_num_of_devices", "node_list_devices", "node_device_lookup_by_name", "node_device_get_xml_desc",
    "node_device_get_parent", "node_device_num_of_caps", "node_device_list_caps",
    "connect_num_of_interfaces", "connect_list_interfaces", "interface_lookup_by_name",
    "interface_lookup_by_mac_string", "interface_get_xml_desc", "connect_num_of_defined_interfaces",
    "connect_list_defined_interfaces", "interface_is_active", "connect_list_all_interfaces",
    "connect_list_all_node_devices",
    # tuning queries (not domain_get_time, domain_get_hostname: libvirt refuses them read-only)
    "domain_get_memory_parameters", "domain_get_blkio_parameters", "domain_get_block_io_tune",
    "domain_get_numa_parameters", "domain_get_interface_parameters", "domain_get_emulator_pin_info",
    "node_get_free_pages", "domain_get_iothread_info", "domain_get_perf_events",
    "domain_get_control_info", "domain_interface_addresses",
    # checkpoints (the XML with VIR_DOMAIN_CHECKPOINT_XML_SECURE is refused by its row's readonly_flags)
    "domain_checkpoint_get_xml_desc", "domain_list_all_checkpoints", "domain_checkpoint_list_all_children",
    "domain_checkpoint_lookup_by_name", "domain_checkpoint_get_parent",
}) | STORAGE_READ_ONLY_SAFE | NETWORK_READ_ONLY_SAFE


def check_access(conn: HypervisorConnection, method: str) -> None:
    """Refuse a mutating call on a read-only connection, as libvirt does."""
    if conn.read_only and method not in READ_ONLY_SAFE:
        raise error(ErrorNumber.OPERATION_DENIED, api_error_domain(method, ErrorDomain.DOMAIN),
                    f"read only access prevents {api_name(method)}")
