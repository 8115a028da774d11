"""Every setting libvirt 9.0 documents in libvirtd.conf and qemu.conf, with
the type libvirt reads its value as.

pyvirtd reads both files' keys from its one configuration file.  A key in
these tables always parses with libvirt's type, whether or not pyvirtd acts
on it, so a libvirt configuration loads unchanged; a key in neither table
(nor one of pyvirt's own) is a typo and an error.  The types are those of
libvirt's ``virConfGetValue*`` readers in ``remote_daemon_config.c`` and
``qemu_conf.c``; a few keys the shipped files still document but libvirt
no longer reads (``keepalive_required``) keep the type the file shows.
"""

from __future__ import annotations

from enum import Enum


class ValueType(Enum):
    """How a value must look; the text is libvirt's wording in its type errors."""

    STRING = "a string"
    INT = "a signed integer"
    UINT = "an unsigned integer"
    BOOL = "a bool"
    STRING_LIST = "a string list"
    STRINGS = "a string or string list"    # virConfGetValueStringList(compatString=true)
    PORT = "a port string"                 # libvirt: a string ("16509"); pyvirt also takes 16509
    CORE_SIZE = "\"unlimited\" or an unsigned integer"


S, I, U, B = ValueType.STRING, ValueType.INT, ValueType.UINT, ValueType.BOOL
SL, SS = ValueType.STRING_LIST, ValueType.STRINGS

LIBVIRTD_KEYS: dict[str, ValueType] = {
    "listen_tls": B, "listen_tcp": B, "tls_port": ValueType.PORT, "tcp_port": ValueType.PORT,
    "listen_addr": S,
    "auth_unix_rw": S, "auth_unix_ro": S, "auth_tcp": S, "auth_tls": S,
    "access_drivers": SL,
    "unix_sock_group": S, "unix_sock_admin_perms": S, "unix_sock_ro_perms": S,
    "unix_sock_rw_perms": S, "unix_sock_dir": S,
    "tls_no_sanity_certificate": B, "tls_no_verify_certificate": B,
    "key_file": S, "cert_file": S, "ca_file": S, "crl_file": S,
    "tls_allowed_dn_list": SL, "tls_priority": S, "tcp_min_ssf": U,
    "sasl_allowed_username_list": SL,
    "min_workers": U, "max_workers": U, "prio_workers": U,
    "max_clients": U, "max_queued_clients": U, "max_anonymous_clients": U,
    "max_client_requests": U,
    "admin_min_workers": U, "admin_max_workers": U, "admin_max_clients": U,
    "admin_max_queued_clients": U, "admin_max_client_requests": U,
    "audit_level": U, "audit_logging": B,
    "host_uuid": S, "host_uuid_source": S,
    "log_level": U, "log_filters": S, "log_outputs": S,
    "keepalive_interval": I, "keepalive_count": U,
    "keepalive_required": B, "admin_keepalive_required": B,
    "admin_keepalive_interval": I, "admin_keepalive_count": U,
    "ovs_timeout": U,
}


def _tls_keys() -> dict[str, ValueType]:
    keys = {"default_tls_x509_cert_dir": S, "default_tls_x509_verify": B,
            "default_tls_x509_secret_uuid": S}
    for service in ("vnc", "chardev", "migrate", "backup", "vxhs", "nbd", "spice"):
        keys[f"{service}_tls_x509_cert_dir"] = S
        if service != "spice":
            keys[f"{service}_tls_x509_secret_uuid"] = S
        if service in ("vnc", "chardev", "migrate", "backup"):
            keys[f"{service}_tls_x509_verify"] = B
    for service in ("vnc", "spice", "chardev", "vxhs", "nbd"):
        keys[f"{service}_tls"] = B
    keys["migrate_tls_force"] = B
    return keys


QEMU_KEYS: dict[str, ValueType] = {
    **_tls_keys(),
    "vnc_auto_unix_socket": B, "vnc_listen": S, "vnc_password": S, "vnc_sasl": B,
    "vnc_sasl_dir": S, "vnc_allow_host_audio": B, "nographics_allow_host_audio": B,
    "spice_sasl": B, "spice_sasl_dir": S, "spice_listen": S, "spice_password": S,
    "spice_auto_unix_socket": B,
    "remote_websocket_port_min": U, "remote_websocket_port_max": U,
    "remote_display_port_min": U, "remote_display_port_max": U,
    "save_image_format": S, "dump_image_format": S, "snapshot_image_format": S,
    "auto_dump_path": S, "auto_dump_bypass_cache": B, "auto_start_bypass_cache": B,
    "hugetlbfs_mount": SS, "bridge_helper": S, "pr_helper": S, "slirp_helper": S, "dbus_daemon": S,
    "set_process_name": B, "max_processes": U, "max_files": U, "max_threads_per_process": U,
    "max_core": ValueType.CORE_SIZE, "dump_guest_core": B, "stdio_handler": S, "sched_core": S,
    "mac_filter": B, "relaxed_acs_check": B, "lock_manager": S, "allow_disk_format_probing": B,
    "max_queued": U, "keepalive_interval": I, "keepalive_count": U,
    "migration_port_min": U, "migration_port_max": U, "migration_host": S, "migration_address": S,
    "log_timestamp": B, "nvram": SL,
    "gluster_debug_level": U, "virtiofsd_debug": B, "deprecation_behavior": S,
    "security_driver": SS, "security_default_confined": B, "security_require_confined": B,
    "user": S, "group": S, "dynamic_ownership": B, "remember_owner": B,
    "cgroup_controllers": SL, "cgroup_device_acl": SL, "seccomp_sandbox": I, "namespaces": SL,
    "memory_backing_dir": S, "swtpm_user": S, "swtpm_group": S, "capability_filters": SL,
}

# pyvirt's own settings, beside libvirt's.
PYVIRT_KEYS: dict[str, ValueType] = {
    "state_dir": S,           # the QEMU driver's root (libvirt: fixed paths)
    "migration_params": B,    # advertise the *_PARAMS migration procedures
    "migration_v3": B,        # advertise migration protocol v3
    "remote_event_callback": B,   # advertise the callback form of domain events (feature 14)
    "max_message_size": U,    # largest RPC message accepted from a client
    "frame_timeout": U,       # seconds an incomplete frame may take before its client is dropped
    "max_large_frame_bytes": U,    # frames over 256 KiB read at once, all clients, by announced length
    "max_client_output_bytes": U,  # output a client leaves unread before it is dropped
    "tls_handshake_timeout": U,    # seconds a TLS client may take over its handshake (libvirt: no bound)
    "default_network": B,     # define libvirt's 'default' network on first start (not started)
    "save_image_compat": S,   # who must restore every save image ("libvirt-9.0": no zstd)
    # the lockd lock manager (libvirt's lockd.conf; file_lockspace_dir is lock_file_lockspace_dir here)
    "auto_disk_leases": B, "require_lease_for_disks": B, "lock_file_lockspace_dir": S,
    # the etcd lock manager: the cluster, the lease TTL in seconds, the key prefix, TLS to etcd
    "lock_etcd_endpoints": SS, "lock_etcd_ttl": U, "lock_etcd_prefix": S,
    "lock_etcd_ca_file": S, "lock_etcd_cert_file": S, "lock_etcd_key_file": S,
    # the convergence policy of outgoing migrations (drivers/qemu/migration/converge.py): on for
    # every migration that does not say; its completion bound (s per GiB of RAM, at least _min s);
    # the downtime bound (ms) and steps; stalled passes per stage; vCPU throttle; the stages' order
    "migration_converge": B, "migration_converge_timeout_per_gib": U, "migration_converge_timeout_min": U,
    "migration_converge_downtime_max": U, "migration_converge_downtime_steps": U,
    "migration_converge_stall_passes": U, "migration_converge_throttle_initial": U,
    "migration_converge_throttle_increment": U, "migration_converge_order": SS,
}


def source_of(key: str) -> str | None:
    """Which file documents ``key``: 'libvirtd.conf', 'qemu.conf', 'pyvirtd' or None."""
    if key in LIBVIRTD_KEYS:
        return "libvirtd.conf"
    if key in QEMU_KEYS:
        return "qemu.conf"
    if key in PYVIRT_KEYS:
        return "pyvirtd"
    return None


def value_type(key: str) -> ValueType | None:
    return LIBVIRTD_KEYS.get(key) or QEMU_KEYS.get(key) or PYVIRT_KEYS.get(key)
