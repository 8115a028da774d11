"""Encrypted migration (``VIR_MIGRATE_TLS``, ``virsh migrate --tls``): QEMU's own TLS.

As libvirt 9.0 does it (qemuMigrationParamsEnableTLS / ResetTLS): both QEMUs
get a ``tls-creds-x509`` object with libvirt's id ``objlibvirt_migrate_tls0``
reading the certificate directory — ``endpoint=server`` on the destination,
whose ``verify-peer`` follows ``migrate_tls_x509_verify``, ``client`` on the
source, which always checks the server — and the migration parameters
``tls-creds`` (that id) and, on the source, ``tls-hostname``: the name the
destination's certificate must carry (``VIR_MIGRATE_PARAM_TLS_DESTINATION``,
else the host of the migration URI, as libvirt sets it; a tunnelled stream
would have no host, but TLS cannot go through the one-way tunnel at all).  After the migration the
parameters are cleared and the objects deleted on the destination; a source
that goes on (failed or cancelled migration) is cleared the same way, one
that migrated is stopped anyway.

The directory (qemu.conf): ``migrate_tls_x509_cert_dir``, else
``/etc/pki/libvirt-migrate`` when it exists, else ``default_tls_x509_cert_dir``
(``/etc/pki/qemu``).  libvirt always ends up with a directory name and lets
QEMU fail on missing files; here a default that does not exist counts as no
directory at all, and gets libvirt's refusal for that case, which says what
to configure.  ``migrate_tls_force`` refuses every migration that is neither
TLS nor tunnelled, with libvirt's message.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from ....enums import MigrateFlags
from ....errors import ErrorDomain, ErrorNumber, error

if TYPE_CHECKING:
    from ..config import QemuConfig

log = logging.getLogger(__name__)

ALIAS_BASE = "libvirt_migrate"
ALIAS = f"obj{ALIAS_BASE}_tls0"         # libvirt's qemuAliasTLSObjFromSrcAlias
MIGRATE_DIR = "/etc/pki/libvirt-migrate"
DEFAULT_DIR = "/etc/pki/qemu"
# What the directory must hold for each end (QEMU's names).
FILES = {"server": ("ca-cert.pem", "server-cert.pem", "server-key.pem"),
         "client": ("ca-cert.pem", "client-cert.pem", "client-key.pem")}


def cert_dir(cfg: "QemuConfig") -> str | None:
    """The migration certificate directory qemu.conf gives, or None."""
    if cfg.migrate_tls_x509_cert_dir:
        return cfg.migrate_tls_x509_cert_dir
    if os.path.isdir(MIGRATE_DIR):
        return MIGRATE_DIR
    if cfg.default_tls_x509_cert_dir:
        return cfg.default_tls_x509_cert_dir
    return DEFAULT_DIR if os.path.isdir(DEFAULT_DIR) else None


def verify_peer(cfg: "QemuConfig") -> bool:
    """``migrate_tls_x509_verify``, else ``default_tls_x509_verify``, else on (libvirt's default)."""
    for value in (cfg.migrate_tls_x509_verify, cfg.default_tls_x509_verify):
        if value is not None:
            return bool(value)
    return True


def check_allowed(cfg: "QemuConfig", flags: int) -> None:
    """``migrate_tls_force``: only TLS (or tunnelled, which the daemons carry) migrations.

    TLS inside the tunnel is refused before anything starts: the tunnel carries
    QEMU's stream one way only (a pipe at each end), and a TLS handshake needs
    both (libvirt lets QEMU fail on it: "TLS handshake failed").  The daemons'
    link, qemu+tls://, already encrypts a tunnelled stream.
    """
    if flags & MigrateFlags.TLS and flags & MigrateFlags.TUNNELLED:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    "TLS migration cannot be tunnelled (the tunnel carries the stream one way only): "
                    "use VIR_MIGRATE_TLS without VIR_MIGRATE_TUNNELLED, or a tunnelled migration over "
                    "qemu+tls://")
    if cfg.migrate_tls_force and not flags & (MigrateFlags.TLS | MigrateFlags.TUNNELLED):
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    "this libvirtd instance allows migration only with VIR_MIGRATE_TLS flag")


def required_dir(cfg: "QemuConfig") -> str:
    directory = cert_dir(cfg)
    if directory is None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "host migration TLS directory not configured")
    return directory


def creds_object(directory: str, listen: bool, verify: bool) -> dict[str, Any]:
    """``object-add`` arguments of the credentials (libvirt's qemuBuildTLSx509BackendProps)."""
    return {"qom-type": "tls-creds-x509", "id": ALIAS, "dir": directory,
            "endpoint": "server" if listen else "client",
            "verify-peer": verify if listen else True}


async def enable(mon: Any, cfg: "QemuConfig", *, listen: bool, hostname: str | None) -> dict[str, str]:
    """Add the credentials to this QEMU; return the migration parameters that use them."""
    directory = required_dir(cfg)
    # One left by an earlier migration that never cleaned up would make object-add fail.
    await _delete_quietly(mon)
    await mon.execute("object-add", creds_object(directory, listen, verify_peer(cfg)))
    log.info("%s: migration TLS credentials %s from %s (%s)", mon.name, ALIAS, directory,
             "server" if listen else "client")
    return {"tls_creds": ALIAS, "tls_hostname": hostname or ""}


# What a migration without TLS sets: nothing left over from an earlier one applies.
DISABLED: dict[str, str] = {"tls_creds": "", "tls_hostname": ""}


async def reset(mon: Any) -> None:
    """Clear the parameters and delete the credentials; never raises (a step after the
    migration's outcome, whose error is the one reported)."""
    try:
        await mon.migrate_set_parameters(**DISABLED)
    except Exception as exc:
        log.debug("clearing the migration TLS parameters: %s", exc)
    await _delete_quietly(mon)


async def _delete_quietly(mon: Any) -> None:
    try:
        await mon.execute("object-del", {"id": ALIAS})
    except Exception as exc:     # not there: the usual case
        log.debug("object-del %s: %s", ALIAS, exc)


__all__ = ["ALIAS", "DISABLED", "check_allowed", "cert_dir", "creds_object", "enable", "required_dir",
           "reset", "verify_peer"]
