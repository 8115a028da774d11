"""The REMOTE program (0x20008086): libvirt's main RPC program, as a table.

Numbers, field orders and limits are libvirt's ``remote_protocol.x`` (ABI:
libvirt only appends).  Each row is :func:`_proc`: number, NAME, args
fields, ret fields, then flags:

* ``high``: libvirt's ``@priority: high`` (never waits on the hypervisor);
* ``mutates``: refused on a read-only connection (anything that changes
  state, or reaches the hypervisor monitor, or needs more than read access);
* ``readonly_flags``: flags that get an otherwise harmless call refused on a
  read-only connection (see :meth:`Procedure.refused_read_only`);
* ``kind``: who answers (:class:`~pyvirt.rpc.protocol.Kind`);
* ``stream``: the reply opens a stream carrying data that way.

Struct names follow the .x (``remote_domain_get_info_args``), so errors
name the field that failed.  Event MESSAGEs carry the inner ``msg`` struct
as a nested tuple, exactly as on the wire: ``(callbackID, (dom, event, detail))``.
"""

from __future__ import annotations

from .rows import (  # noqa: F401 - the table's vocabulary
    AUTH_TYPE_LIST_MAX,
    Array,
    CharString,
    D,
    DAEMON,
    DOMAIN_EVENT_GRAPHICS_IDENTITY_MAX,
    DOMAIN_EVENT_TUNABLE_MAX,
    DOMAIN_LIST_MAX,
    DOMAIN_MESSAGES_MAX,
    DOMAIN_SAVE_PARAMS_MAX,
    D_,
    Direction,
    EventID,
    MESSAGE,
    Procedure,
    Program,
    ProgramTable,
    SECURITY_DOI_MAX,
    SECURITY_LABEL_MAX,
    SECURITY_MODEL_MAX,
    Struct,
    TypedParams,
    UChar,
    UShort,
    UUID,
    VCPU_GUEST,
    XMLFlags,
    _cb_event,
    _event,
    _msg,
    _proc,
    cookie,
    h,
    i,
    job_params,
    migrate_params,
    s,
    s_,
    sasl_data,
    u,
    uh,
)


# --- event payloads shared by the legacy and callback forms ------------------------

LIFECYCLE_MSG = _msg("lifecycle", ("dom", D), ("event", i), ("detail", i))
DOM_MSG = {n: _msg(n, ("dom", D)) for n in ("reboot", "control_error", "pmwakeup", "pmsuspend",
                                            "pmsuspend_disk")}
GRAPHICS_ADDRESS = Struct("remote_domain_event_graphics_address",
                          [("family", i), ("node", s), ("service", s)])
GRAPHICS_IDENTITY = Struct("remote_domain_event_graphics_identity", [("type", s), ("name", s)])


def _area_rows() -> list[Procedure]:
    """The rows kept in the area modules (statistics, host, console, devices, ...)."""
    from . import (remote_blockjob, remote_console, remote_devices, remote_host, remote_lifecycle,
                   remote_iface_nodedev, remote_network, remote_object_events, remote_sched, remote_snapshot,
                   remote_stats, remote_storage, remote_tuning, remote_guest, remote_cpu_files,
                   remote_checkpoint)
    rows: list[Procedure] = []
    for part in (remote_stats, remote_host, remote_console, remote_devices, remote_lifecycle,
                 remote_storage, remote_network, remote_snapshot, remote_object_events, remote_blockjob,
                 remote_sched, remote_iface_nodedev, remote_tuning, remote_guest, remote_cpu_files,
                 remote_checkpoint):
        rows.extend(part.PROCEDURES)
    return rows


def _legacy_event_rows(core: list[Procedure]) -> list[Procedure]:
    """The REGISTER_ANY-form event messages (kept with the lifecycle area)."""
    from .remote_lifecycle import legacy_event_rows
    return legacy_event_rows(core)


PROCEDURES: list[Procedure] = [
    # --- connection -------------------------------------------------------------
    _proc(1, "CONNECT_OPEN", [("name", s_), ("flags", u)], high=True, kind=DAEMON),
    _proc(2, "CONNECT_CLOSE", high=True, kind=DAEMON),
    _proc(3, "CONNECT_GET_TYPE", ret=[("type", s)], high=True),
    _proc(4, "CONNECT_GET_VERSION", ret=[("hv_ver", uh)], high=True),
    _proc(6, "NODE_GET_INFO", ret=[
        ("model", CharString(32, fixed=True)), ("memory", uh), ("cpus", i), ("mhz", i),
        ("nodes", i), ("sockets", i), ("cores", i), ("threads", i)], high=True),
    _proc(7, "CONNECT_GET_CAPABILITIES", ret=[("capabilities", s)]),
    _proc(59, "CONNECT_GET_HOSTNAME", ret=[("hostname", s)], high=True),
    _proc(60, "CONNECT_SUPPORTS_FEATURE", [("feature", i)], [("supported", i)],
          high=True, kind=DAEMON),
    _proc(110, "CONNECT_GET_URI", ret=[("uri", s)], high=True),
    _proc(149, "CONNECT_IS_SECURE", ret=[("secure", i)], high=True),
    _proc(157, "CONNECT_GET_LIB_VERSION", ret=[("lib_ver", uh)], high=True),
    _proc(203, "CONNECT_GET_SYSINFO", [("flags", u)], [("sysinfo", s)], high=True),
    _proc(122, "NODE_GET_SECURITY_MODEL", ret=[
        ("model", CharString(SECURITY_MODEL_MAX)), ("doi", CharString(SECURITY_DOI_MAX))], high=True),
    _proc(360, "CONNECT_REGISTER_CLOSE_CALLBACK", high=True, kind=DAEMON),
    _proc(361, "CONNECT_UNREGISTER_CLOSE_CALLBACK", high=True, kind=DAEMON),
    _event(362, "CONNECT_EVENT_CONNECTION_CLOSED", ("reason", i)),

    # --- authentication -------------------------------------------------------------
    _proc(66, "AUTH_LIST", ret=[("types", Array(i, AUTH_TYPE_LIST_MAX))], high=True, kind=DAEMON),
    _proc(67, "AUTH_SASL_INIT", ret=[("mechlist", s)], high=True, kind=DAEMON),
    _proc(68, "AUTH_SASL_START", [("mech", s), ("nil", i), ("data", sasl_data)],
          [("complete", i), ("nil", i), ("data", sasl_data)], high=True, kind=DAEMON),
    _proc(69, "AUTH_SASL_STEP", [("nil", i), ("data", sasl_data)],
          [("complete", i), ("nil", i), ("data", sasl_data)], high=True, kind=DAEMON),
    _proc(70, "AUTH_POLKIT", ret=[("complete", i)], high=True, kind=DAEMON),

    # --- listing and lookup -------------------------------------------------------------
    _proc(273, "CONNECT_LIST_ALL_DOMAINS", [("need_results", i), ("flags", u)],
          [("domains", Array(D, DOMAIN_LIST_MAX)), ("ret", u)], high=True),
    _proc(51, "CONNECT_NUM_OF_DOMAINS", ret=[("num", i)], high=True),
    _proc(37, "CONNECT_LIST_DOMAINS", [("maxids", i)], [("ids", Array(i, DOMAIN_LIST_MAX))], high=True),
    _proc(25, "CONNECT_NUM_OF_DEFINED_DOMAINS", ret=[("num", i)], high=True),
    _proc(21, "CONNECT_LIST_DEFINED_DOMAINS", [("maxnames", i)],
          [("names", Array(s, DOMAIN_LIST_MAX))], high=True),
    _proc(22, "DOMAIN_LOOKUP_BY_ID", [("id", i)], [("dom", D)], high=True),
    _proc(23, "DOMAIN_LOOKUP_BY_NAME", [("name", s)], [("dom", D)], high=True),
    _proc(24, "DOMAIN_LOOKUP_BY_UUID", [("uuid", UUID)], [("dom", D)], high=True),

    # --- define and lifecycle ---------------------------------------------------------------
    _proc(11, "DOMAIN_DEFINE_XML", [("xml", s)], [("dom", D)], high=True, mutates=True),
    _proc(350, "DOMAIN_DEFINE_XML_FLAGS", [("xml", s), ("flags", u)], [("dom", D)],
          high=True, mutates=True),
    _proc(35, "DOMAIN_UNDEFINE", [("dom", D)], high=True, mutates=True),
    _proc(231, "DOMAIN_UNDEFINE_FLAGS", [("dom", D), ("flags", u)], high=True, mutates=True),
    _proc(10, "DOMAIN_CREATE_XML", [("xml_desc", s), ("flags", u)], [("dom", D)], mutates=True),
    _proc(9, "DOMAIN_CREATE", [("dom", D)], mutates=True),
    _proc(196, "DOMAIN_CREATE_WITH_FLAGS", [("dom", D), ("flags", u)], [("dom", D)], mutates=True),
    _proc(12, "DOMAIN_DESTROY", [("dom", D)], high=True, mutates=True),
    _proc(234, "DOMAIN_DESTROY_FLAGS", [("dom", D), ("flags", u)], high=True, mutates=True),
    _proc(34, "DOMAIN_SUSPEND", [("dom", D)], mutates=True),
    _proc(28, "DOMAIN_RESUME", [("dom", D)], mutates=True),
    _proc(33, "DOMAIN_SHUTDOWN", [("dom", D)], mutates=True),
    _proc(258, "DOMAIN_SHUTDOWN_FLAGS", [("dom", D), ("flags", u)], mutates=True),
    _proc(27, "DOMAIN_REBOOT", [("dom", D), ("flags", u)], mutates=True),
    _proc(29, "DOMAIN_SET_AUTOSTART", [("dom", D), ("autostart", i)], high=True, mutates=True),

    # --- queries ------------------------------------------------------------------------
    _proc(16, "DOMAIN_GET_INFO", [("dom", D)], [
        ("state", UChar), ("maxMem", uh), ("memory", uh), ("nrVirtCpu", UShort), ("cpuTime", uh)]),
    _proc(212, "DOMAIN_GET_STATE", [("dom", D), ("flags", u)], [("state", i), ("reason", i)], high=True),
    _proc(14, "DOMAIN_GET_XML_DESC", [("dom", D), ("flags", u)], [("xml", s)],
          readonly_flags=XMLFlags.SECURE),
    _proc(19, "DOMAIN_GET_OS_TYPE", [("dom", D)], [("type", s)], high=True),
    _proc(150, "DOMAIN_IS_ACTIVE", [("dom", D)], [("active", i)], high=True),
    _proc(151, "DOMAIN_IS_PERSISTENT", [("dom", D)], [("persistent", i)], high=True),
    _proc(15, "DOMAIN_GET_AUTOSTART", [("dom", D)], [("autostart", i)], high=True),
    _proc(17, "DOMAIN_GET_MAX_MEMORY", [("dom", D)], [("memory", uh)], high=True),
    _proc(200, "DOMAIN_GET_VCPUS_FLAGS", [("dom", D), ("flags", u)], [("num", i)],
          readonly_flags=VCPU_GUEST),
    _proc(183, "DOMAIN_HAS_MANAGED_SAVE_IMAGE", [("dom", D), ("flags", u)], [("result", i)]),
    _proc(121, "DOMAIN_GET_SECURITY_LABEL", [("dom", D)], [
        ("label", CharString(SECURITY_LABEL_MAX)), ("enforcing", i)], high=True),
    _proc(426, "DOMAIN_GET_MESSAGES", [("dom", D), ("flags", u)],
          [("msgs", Array(s, DOMAIN_MESSAGES_MAX))]),
    _proc(187, "DOMAIN_SNAPSHOT_NUM", [("dom", D), ("flags", u)], [("num", i)], high=True),
    _proc(64, "DOMAIN_BLOCK_STATS", [("dom", D), ("path", s)], [
        ("rd_req", h), ("rd_bytes", h), ("wr_req", h), ("wr_bytes", h), ("errs", h)]),
    _proc(194, "DOMAIN_GET_BLOCK_INFO", [("dom", D), ("path", s), ("flags", u)],
          [("allocation", uh), ("capacity", uh), ("physical", uh)]),

    # --- jobs ------------------------------------------------------------------------------
    _proc(163, "DOMAIN_GET_JOB_INFO", [("dom", D)], [
        ("type", i), ("timeElapsed", uh), ("timeRemaining", uh),
        ("dataTotal", uh), ("dataProcessed", uh), ("dataRemaining", uh),
        ("memTotal", uh), ("memProcessed", uh), ("memRemaining", uh),
        ("fileTotal", uh), ("fileProcessed", uh), ("fileRemaining", uh)]),
    _proc(298, "DOMAIN_GET_JOB_STATS", [("dom", D), ("flags", u)],
          [("type", i), ("params", job_params)]),
    _proc(164, "DOMAIN_ABORT_JOB", [("dom", D)], mutates=True),
    _proc(442, "DOMAIN_ABORT_JOB_FLAGS", [("dom", D), ("flags", u)], mutates=True),
    _proc(207, "DOMAIN_MIGRATE_SET_MAX_SPEED", [("dom", D), ("bandwidth", uh), ("flags", u)],
          mutates=True),
    _proc(242, "DOMAIN_MIGRATE_GET_MAX_SPEED", [("dom", D), ("flags", u)], [("bandwidth", uh)]),
    _proc(166, "DOMAIN_MIGRATE_SET_MAX_DOWNTIME", [("dom", D), ("downtime", uh), ("flags", u)],
          mutates=True),
    _proc(387, "DOMAIN_MIGRATE_GET_MAX_DOWNTIME", [("dom", D), ("flags", u)], [("downtime", uh)]),
    _proc(299, "DOMAIN_MIGRATE_GET_COMPRESSION_CACHE", [("dom", D), ("flags", u)], [("cacheSize", uh)]),
    _proc(300, "DOMAIN_MIGRATE_SET_COMPRESSION_CACHE", [("dom", D), ("cacheSize", uh), ("flags", u)],
          mutates=True),
    _proc(364, "DOMAIN_MIGRATE_START_POST_COPY", [("dom", D), ("flags", u)], mutates=True),

    # --- save and restore ---------------------------------------------------------------------
    _proc(55, "DOMAIN_SAVE", [("dom", D), ("to", s)], mutates=True),
    _proc(232, "DOMAIN_SAVE_FLAGS", [("dom", D), ("to", s), ("dxml", s_), ("flags", u)], mutates=True),
    _proc(440, "DOMAIN_SAVE_PARAMS",
          [("dom", D), ("params", TypedParams(DOMAIN_SAVE_PARAMS_MAX)), ("flags", u)], mutates=True),
    _proc(54, "DOMAIN_RESTORE", [("from", s)], mutates=True),
    _proc(233, "DOMAIN_RESTORE_FLAGS", [("from", s), ("dxml", s_), ("flags", u)], mutates=True),
    _proc(441, "DOMAIN_RESTORE_PARAMS",
          [("params", TypedParams(DOMAIN_SAVE_PARAMS_MAX)), ("flags", u)], mutates=True),
    _proc(182, "DOMAIN_MANAGED_SAVE", [("dom", D), ("flags", u)], mutates=True),
    _proc(184, "DOMAIN_MANAGED_SAVE_REMOVE", [("dom", D), ("flags", u)], mutates=True),
    # Opens a path the caller names, as root: refused on read-only connections whatever the flags.
    _proc(235, "DOMAIN_SAVE_IMAGE_GET_XML_DESC", [("file", s), ("flags", u)], [("xml", s)],
          high=True, mutates=True),
    _proc(236, "DOMAIN_SAVE_IMAGE_DEFINE_XML", [("file", s), ("dxml", s), ("flags", u)],
          high=True, mutates=True),
    _proc(388, "DOMAIN_MANAGED_SAVE_GET_XML_DESC", [("dom", D), ("flags", u)], [("xml", s)],
          readonly_flags=XMLFlags.SECURE),
    _proc(389, "DOMAIN_MANAGED_SAVE_DEFINE_XML", [("dom", D), ("dxml", s_), ("flags", u)], mutates=True),

    # --- console ------------------------------------------------------------------------------
    _proc(201, "DOMAIN_OPEN_CONSOLE", [("dom", D), ("dev_name", s_), ("flags", u)],
          mutates=True, stream=Direction.BOTH),

    # --- event registration -------------------------------------------------------------------
    _proc(105, "CONNECT_DOMAIN_EVENT_REGISTER", ret=[("cb_registered", i)], high=True, kind=DAEMON),
    _proc(106, "CONNECT_DOMAIN_EVENT_DEREGISTER", ret=[("cb_registered", i)], high=True, kind=DAEMON),
    _proc(167, "CONNECT_DOMAIN_EVENT_REGISTER_ANY", [("eventID", i)], high=True, kind=DAEMON),
    _proc(168, "CONNECT_DOMAIN_EVENT_DEREGISTER_ANY", [("eventID", i)], high=True, kind=DAEMON),
    _proc(316, "CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY", [("eventID", i), ("dom", D_)],
          [("callbackID", i)], high=True, kind=DAEMON),
    _proc(317, "CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY", [("callbackID", i)],
          high=True, kind=DAEMON),

    # --- events (MESSAGE) ---------------------------------------------------------------------
    _proc(107, "DOMAIN_EVENT_LIFECYCLE", LIFECYCLE_MSG, kind=MESSAGE),
    _cb_event(318, "DOMAIN_EVENT_CALLBACK_LIFECYCLE", LIFECYCLE_MSG),
    _cb_event(319, "DOMAIN_EVENT_CALLBACK_REBOOT", DOM_MSG["reboot"]),
    _cb_event(320, "DOMAIN_EVENT_CALLBACK_RTC_CHANGE", _msg("rtc_change", ("dom", D), ("offset", h))),
    _cb_event(321, "DOMAIN_EVENT_CALLBACK_WATCHDOG", _msg("watchdog", ("dom", D), ("action", i))),
    _cb_event(322, "DOMAIN_EVENT_CALLBACK_IO_ERROR", _msg(
        "io_error", ("dom", D), ("srcPath", s), ("devAlias", s), ("action", i))),
    _cb_event(323, "DOMAIN_EVENT_CALLBACK_GRAPHICS", _msg(
        "graphics", ("dom", D), ("phase", i), ("local", GRAPHICS_ADDRESS),
        ("remote", GRAPHICS_ADDRESS), ("authScheme", s),
        ("subject", Array(GRAPHICS_IDENTITY, DOMAIN_EVENT_GRAPHICS_IDENTITY_MAX)))),
    _cb_event(324, "DOMAIN_EVENT_CALLBACK_IO_ERROR_REASON", _msg(
        "io_error_reason", ("dom", D), ("srcPath", s), ("devAlias", s), ("action", i),
        ("reason", s))),
    _cb_event(325, "DOMAIN_EVENT_CALLBACK_CONTROL_ERROR", DOM_MSG["control_error"]),
    _cb_event(326, "DOMAIN_EVENT_CALLBACK_BLOCK_JOB", _msg(
        "block_job", ("dom", D), ("path", s), ("type", i), ("status", i))),
    _cb_event(327, "DOMAIN_EVENT_CALLBACK_DISK_CHANGE", _msg(
        "disk_change", ("dom", D), ("oldSrcPath", s_), ("newSrcPath", s_), ("devAlias", s),
        ("reason", i))),
    _cb_event(328, "DOMAIN_EVENT_CALLBACK_TRAY_CHANGE", _msg(
        "tray_change", ("dom", D), ("devAlias", s), ("reason", i))),
    _cb_event(329, "DOMAIN_EVENT_CALLBACK_PMWAKEUP", DOM_MSG["pmwakeup"], reason=True),
    _cb_event(330, "DOMAIN_EVENT_CALLBACK_PMSUSPEND", DOM_MSG["pmsuspend"], reason=True),
    _cb_event(331, "DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE", _msg(
        "balloon_change", ("dom", D), ("actual", uh))),
    _cb_event(332, "DOMAIN_EVENT_CALLBACK_PMSUSPEND_DISK", DOM_MSG["pmsuspend_disk"], reason=True),
    _cb_event(333, "DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED", _msg(
        "device_removed", ("dom", D), ("devAlias", s))),
    # Events added after the callback form flatten the msg into the outer struct.
    _event(339, "DOMAIN_EVENT_BLOCK_JOB_2", ("callbackID", i), ("dom", D), ("dst", s),
           ("type", i), ("status", i)),
    _event(346, "DOMAIN_EVENT_CALLBACK_TUNABLE", ("callbackID", i), ("dom", D),
           ("params", TypedParams(DOMAIN_EVENT_TUNABLE_MAX))),
    _event(348, "DOMAIN_EVENT_CALLBACK_AGENT_LIFECYCLE", ("callbackID", i), ("dom", D),
           ("state", i), ("reason", i)),
    _event(354, "DOMAIN_EVENT_CALLBACK_DEVICE_ADDED", ("callbackID", i), ("dom", D),
           ("devAlias", s)),
    _event(359, "DOMAIN_EVENT_CALLBACK_MIGRATION_ITERATION", ("callbackID", i), ("dom", D),
           ("iteration", i)),
    _event(363, "DOMAIN_EVENT_CALLBACK_JOB_COMPLETED", ("callbackID", i), ("dom", D),
           ("params", job_params)),
    _event(367, "DOMAIN_EVENT_CALLBACK_DEVICE_REMOVAL_FAILED", ("callbackID", i), ("dom", D),
           ("devAlias", s)),
    _event(379, "DOMAIN_EVENT_CALLBACK_METADATA_CHANGE", ("callbackID", i), ("dom", D),
           ("type", i), ("nsuri", s_)),
    _event(385, "DOMAIN_EVENT_BLOCK_THRESHOLD", ("callbackID", i), ("dom", D), ("dev", s),
           ("path", s_), ("threshold", uh), ("excess", uh)),
    _event(423, "DOMAIN_EVENT_MEMORY_FAILURE", ("callbackID", i), ("dom", D), ("recipient", i),
           ("action", i), ("flags", u)),
    _event(438, "DOMAIN_EVENT_MEMORY_DEVICE_SIZE_CHANGE", ("callbackID", i), ("dom", D),
           ("alias", s), ("size", uh)),

    # --- migration: v1/v2 (flags are 64-bit; resource = bandwidth MiB/s) -------------------
    _proc(61, "DOMAIN_MIGRATE_PREPARE",
          [("uri_in", s_), ("flags", uh), ("dname", s_), ("resource", uh)],
          [("cookie", cookie), ("uri_out", s_)], mutates=True),
    _proc(62, "DOMAIN_MIGRATE_PERFORM",
          [("dom", D), ("cookie", cookie), ("uri", s), ("flags", uh), ("dname", s_),
           ("resource", uh)], mutates=True),
    _proc(63, "DOMAIN_MIGRATE_FINISH",
          [("dname", s), ("cookie", cookie), ("uri", s), ("flags", uh)], [("ddom", D)], mutates=True),
    _proc(108, "DOMAIN_MIGRATE_PREPARE2",
          [("uri_in", s_), ("flags", uh), ("dname", s_), ("resource", uh), ("dom_xml", s)],
          [("cookie", cookie), ("uri_out", s_)], mutates=True),
    _proc(109, "DOMAIN_MIGRATE_FINISH2",
          [("dname", s), ("cookie", cookie), ("uri", s), ("flags", uh), ("retcode", i)],
          [("ddom", D)], mutates=True),
    _proc(148, "DOMAIN_MIGRATE_PREPARE_TUNNEL",
          [("flags", uh), ("dname", s_), ("resource", uh), ("dom_xml", s)],
          mutates=True, stream=Direction.UPLOAD),

    # --- migration: v3 ----------------------------------------------------------------------
    _proc(213, "DOMAIN_MIGRATE_BEGIN3",
          [("dom", D), ("xmlin", s_), ("flags", uh), ("dname", s_), ("resource", uh)],
          [("cookie_out", cookie), ("xml", s)], mutates=True),
    _proc(214, "DOMAIN_MIGRATE_PREPARE3",
          [("cookie_in", cookie), ("uri_in", s_), ("flags", uh), ("dname", s_), ("resource", uh),
           ("dom_xml", s)],
          [("cookie_out", cookie), ("uri_out", s_)], mutates=True),
    _proc(215, "DOMAIN_MIGRATE_PREPARE_TUNNEL3",
          [("cookie_in", cookie), ("flags", uh), ("dname", s_), ("resource", uh), ("dom_xml", s)],
          [("cookie_out", cookie)], mutates=True, stream=Direction.UPLOAD),
    _proc(216, "DOMAIN_MIGRATE_PERFORM3",
          [("dom", D), ("xmlin", s_), ("cookie_in", cookie), ("dconnuri", s_), ("uri", s_),
           ("flags", uh), ("dname", s_), ("resource", uh)],
          [("cookie_out", cookie)], mutates=True),
    _proc(217, "DOMAIN_MIGRATE_FINISH3",
          [("dname", s), ("cookie_in", cookie), ("dconnuri", s_), ("uri", s_), ("flags", uh),
           ("cancelled", i)],
          [("dom", D), ("cookie_out", cookie)], mutates=True),
    _proc(218, "DOMAIN_MIGRATE_CONFIRM3",
          [("dom", D), ("cookie_in", cookie), ("flags", uh), ("cancelled", i)], mutates=True),

    # --- migration: v3 with typed parameters (flags are 32-bit) -------------------------------
    _proc(302, "DOMAIN_MIGRATE_BEGIN3_PARAMS",
          [("dom", D), ("params", migrate_params), ("flags", u)],
          [("cookie_out", cookie), ("xml", s)], mutates=True),
    _proc(303, "DOMAIN_MIGRATE_PREPARE3_PARAMS",
          [("params", migrate_params), ("cookie_in", cookie), ("flags", u)],
          [("cookie_out", cookie), ("uri_out", s_)], mutates=True),
    _proc(304, "DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS",
          [("params", migrate_params), ("cookie_in", cookie), ("flags", u)],
          [("cookie_out", cookie)], mutates=True, stream=Direction.UPLOAD),
    _proc(305, "DOMAIN_MIGRATE_PERFORM3_PARAMS",
          [("dom", D), ("dconnuri", s_), ("params", migrate_params), ("cookie_in", cookie),
           ("flags", u)],
          [("cookie_out", cookie)], mutates=True),
    _proc(306, "DOMAIN_MIGRATE_FINISH3_PARAMS",
          [("params", migrate_params), ("cookie_in", cookie), ("flags", u), ("cancelled", i)],
          [("dom", D), ("cookie_out", cookie)], mutates=True),
    _proc(307, "DOMAIN_MIGRATE_CONFIRM3_PARAMS",
          [("dom", D), ("params", migrate_params), ("cookie_in", cookie), ("flags", u),
           ("cancelled", i)], mutates=True),
] + _area_rows()
PROCEDURES += _legacy_event_rows(PROCEDURES)

REMOTE = ProgramTable(Program.REMOTE, "REMOTE", PROCEDURES)

EVENT_CALLBACK_PROCEDURES: dict[EventID, Procedure] = {
    EventID.LIFECYCLE: REMOTE[318],
    EventID.REBOOT: REMOTE[319],
    EventID.RTC_CHANGE: REMOTE[320],
    EventID.WATCHDOG: REMOTE[321],
    EventID.IO_ERROR: REMOTE[322],
    EventID.GRAPHICS: REMOTE[323],
    EventID.IO_ERROR_REASON: REMOTE[324],
    EventID.CONTROL_ERROR: REMOTE[325],
    EventID.BLOCK_JOB: REMOTE[326],
    EventID.DISK_CHANGE: REMOTE[327],
    EventID.TRAY_CHANGE: REMOTE[328],
    EventID.PMWAKEUP: REMOTE[329],
    EventID.PMSUSPEND: REMOTE[330],
    EventID.BALLOON_CHANGE: REMOTE[331],
    EventID.PMSUSPEND_DISK: REMOTE[332],
    EventID.DEVICE_REMOVED: REMOTE[333],
    EventID.BLOCK_JOB_2: REMOTE[339],
    EventID.TUNABLE: REMOTE[346],
    EventID.AGENT_LIFECYCLE: REMOTE[348],
    EventID.DEVICE_ADDED: REMOTE[354],
    EventID.MIGRATION_ITERATION: REMOTE[359],
    EventID.JOB_COMPLETED: REMOTE[363],
    EventID.DEVICE_REMOVAL_FAILED: REMOTE[367],
    EventID.METADATA_CHANGE: REMOTE[379],
    EventID.BLOCK_THRESHOLD: REMOTE[385],
    EventID.MEMORY_FAILURE: REMOTE[423],
    EventID.MEMORY_DEVICE_SIZE_CHANGE: REMOTE[438],
}
"""Event id -> the callback-form MESSAGE that carries it (clients with feature 14).

Clients without feature 14 register with REGISTER_ANY and get the legacy
DOMAIN_EVENT_<NAME> messages (107 here, the others in :mod:`.remote_lifecycle`),
which exist for the ids up to DEVICE_REMOVED only.
"""

__all__ = ["REMOTE", "PROCEDURES", "EVENT_CALLBACK_PROCEDURES"]
