"""Encrypted migration's choices without QEMU: which certificate directory, whether the
destination checks the source's certificate, and libvirt's refusals (drivers/qemu/migration/tls.py)."""

from __future__ import annotations

import pytest

from pyvirt.drivers.qemu.config import QemuConfig as _QemuConfig
from pyvirt.drivers.qemu.migration import tls
from pyvirt.enums import MigrateFlags
from pyvirt.errors import ErrorNumber, libvirtError


def QemuConfig(**keys) -> _QemuConfig:      # noqa: N802 - qemu.conf's keys, no state root needed
    return _QemuConfig(root="/nonexistent", **keys)


@pytest.fixture
def system_dirs(tmp_path, monkeypatch):
    """Stand-ins for /etc/pki/libvirt-migrate and /etc/pki/qemu (absent until a test makes them)."""
    migrate, default = tmp_path / "libvirt-migrate", tmp_path / "qemu"
    monkeypatch.setattr(tls, "MIGRATE_DIR", str(migrate))
    monkeypatch.setattr(tls, "DEFAULT_DIR", str(default))
    return migrate, default


def test_the_directory_follows_libvirts_order(system_dirs, tmp_path):
    migrate, default = system_dirs
    assert tls.cert_dir(QemuConfig()) is None                          # nothing configured or present
    with pytest.raises(libvirtError) as err:
        tls.required_dir(QemuConfig())
    assert (err.value.get_error_code(), err.value.get_error_message()) == (
        ErrorNumber.OPERATION_INVALID, "Requested operation is not valid: host migration TLS directory not configured")
    default.mkdir()
    assert tls.cert_dir(QemuConfig()) == str(default)                  # /etc/pki/qemu, the last resort
    assert tls.cert_dir(QemuConfig(default_tls_x509_cert_dir="/srv/qemu-pki")) == "/srv/qemu-pki"
    migrate.mkdir()
    assert tls.cert_dir(QemuConfig(default_tls_x509_cert_dir="/srv/qemu-pki")) == str(migrate)
    assert tls.cert_dir(QemuConfig(migrate_tls_x509_cert_dir="/srv/mig")) == "/srv/mig"   # qemu.conf wins


def test_verify_peer_falls_back_to_the_default_then_on():
    assert tls.verify_peer(QemuConfig()) is True
    assert tls.verify_peer(QemuConfig(default_tls_x509_verify=False)) is False
    assert tls.verify_peer(QemuConfig(default_tls_x509_verify=False, migrate_tls_x509_verify=True)) is True
    # the destination (server end) applies it; the source always checks the destination
    assert tls.creds_object("/d", True, False)["verify-peer"] is False
    assert tls.creds_object("/d", False, False) == {"qom-type": "tls-creds-x509", "id": "objlibvirt_migrate_tls0",
                                                     "dir": "/d", "endpoint": "client", "verify-peer": True}


def test_migrate_tls_force_and_the_tunnel():
    forced = QemuConfig(migrate_tls_force=True)
    with pytest.raises(libvirtError, match="this libvirtd instance allows migration only with VIR_MIGRATE_TLS flag"):
        tls.check_allowed(forced, MigrateFlags.LIVE)
    tls.check_allowed(forced, MigrateFlags.LIVE | MigrateFlags.TLS)
    tls.check_allowed(forced, MigrateFlags.LIVE | MigrateFlags.PEER2PEER | MigrateFlags.TUNNELLED)
    with pytest.raises(libvirtError) as err:
        tls.check_allowed(QemuConfig(), MigrateFlags.TLS | MigrateFlags.PEER2PEER | MigrateFlags.TUNNELLED)
    assert err.value.get_error_code() == ErrorNumber.ARGUMENT_UNSUPPORTED
