"""The QEMU driver's configuration and the files it keeps under its root.

Layout (architecture.md): ``ROOT/etc/qemu/NAME.xml`` persistent definitions,
``ROOT/run/qemu/NAME.xml`` status of running guests, ``ROOT/run/qemu/domain-ID-SHORT/``
the sockets of one running guest (its ``monitor.sock``; libvirt's per-domain
directory, SHORT the name cut to 20 characters, so a long name never makes a
socket path too long), ``ROOT/log/qemu/NAME.log`` QEMU's stderr,
``ROOT/lib/qemu/save`` managed-save images.

Every path built from a name goes through :func:`pyvirt.conf.names.contained`:
whatever slipped past the name checks, no such path leaves its directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

from ...conf.names import contained, short_name
from ...errors import ErrorDomain, ErrorNumber, error
from .saveimage import check_compat, image_format
from .migration.converge import ConvergeSettings

log = logging.getLogger(__name__)

MONITOR_SOCKET = "monitor.sock"      # in the per-domain directory, as libvirt names it


def default_emulator() -> str:
    return shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"


# libvirt's Debian build runs QEMU as libvirt-qemu in group kvm (which opens /dev/kvm).
DEFAULT_USER, DEFAULT_GROUP = "libvirt-qemu", "kvm"


def default_user() -> str:
    return DEFAULT_USER if os.geteuid() == 0 else f"+{os.geteuid()}"


def default_group() -> str:
    return DEFAULT_GROUP if os.geteuid() == 0 else f"+{os.getegid()}"


@dataclass
class QemuConfig:
    root: Path
    emulator: str = field(default_factory=default_emulator)
    host_uuid: str = ""
    vnc_port_min: int = 5900
    vnc_port_max: int = 65535
    spice_tls: bool = False
    migration_address: str = "127.0.0.1"
    migration_host: str = ""          # what the destination puts in uri_out; default: migration_address
    migration_port_min: int = 49152
    migration_port_max: int = 49215
    # Who QEMU runs as (qemu.conf's user/group): libvirt's Debian default when
    # we are root, ourselves otherwise; root only when configured.
    user: str = field(default_factory=default_user)
    group: str = field(default_factory=default_group)
    security_driver: str | list[str] = "dac"   # pyvirt.security.KNOWN; DAC is always first
    dynamic_ownership: bool = True    # the DAC driver chowns what QEMU opens, and gives it back
    remember_owner: bool = True       # ... to the owner it found (xattrs), not to root
    save_image_format: str = "raw"    # saveimage.FORMATS: raw, gzip, bzip2, xz, lzop, zstd
    # who must be able to restore every save image: "" anyone pyvirt; "libvirt-9.0" refuses zstd
    save_image_compat: str = ""
    # Encrypted migration (qemu.conf; "" / None: libvirt's defaults, see migration/tls.py)
    migrate_tls_x509_cert_dir: str = ""
    migrate_tls_x509_verify: bool | None = None
    default_tls_x509_cert_dir: str = ""
    default_tls_x509_verify: bool | None = None
    migrate_tls_force: bool = False
    helper_path: str | None = None    # where compression helpers are looked up; None: $PATH
    stop_timeout: float = 3.0         # SIGTERM grace before SIGKILL on destroy
    monitor_timeout: float = 30.0
    # pyvirt's convergence policy for outgoing migrations (migration/converge.py)
    converge: ConvergeSettings = field(default_factory=ConvergeSettings)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        # an unknown format, or one the compatibility asked for forbids, fails here, not at the first save
        check_compat(image_format(self.save_image_format), self.save_image_compat,
                     f'save_image_compat = "{self.save_image_compat}"')
        if not self.host_uuid:
            self.host_uuid = self._load_host_uuid()

    @property
    def config_dir(self) -> Path:
        return self.root / "etc" / "qemu"

    @property
    def autostart_dir(self) -> Path:
        return self.config_dir / "autostart"

    @property
    def state_dir(self) -> Path:
        return self.root / "run" / "qemu"

    @property
    def log_dir(self) -> Path:
        return self.root / "log" / "qemu"

    @property
    def save_dir(self) -> Path:
        return self.root / "lib" / "qemu" / "save"

    @property
    def shutoff_dir(self) -> Path:
        return self.root / "lib" / "qemu" / "shutoff"

    def make_dirs(self) -> None:
        for d in (self.config_dir, self.autostart_dir, self.state_dir, self.log_dir, self.save_dir,
                  self.shutoff_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)

    def config_path(self, name: str) -> Path:
        return contained(self.config_dir, f"{name}.xml")

    def autostart_path(self, name: str) -> Path:
        return contained(self.autostart_dir, f"{name}.xml")

    def status_path(self, name: str) -> Path:
        return contained(self.state_dir, f"{name}.xml")

    def log_path(self, name: str) -> Path:
        return contained(self.log_dir, f"{name}.log")

    def shutoff_reason_path(self, name: str) -> Path:
        """Why a persistent domain last stopped, so the reason survives a restart."""
        return contained(self.shutoff_dir, f"{name}.reason")

    def managed_save_path(self, name: str) -> Path:
        return contained(self.save_dir, f"{name}.save")

    # -- the per-domain directory of a running guest ------------------------------------
    def domain_dir(self, name: str, dom_id: int) -> Path:
        """``run/qemu/domain-ID-SHORT``: unique among running guests (IDs are), short
        whatever the name."""
        return contained(self.state_dir, f"domain-{short_name(dom_id, name)}")

    def monitor_path(self, name: str, dom_id: int) -> Path:
        return self.domain_dir(name, dom_id) / MONITOR_SOCKET

    def make_domain_dir(self, name: str, dom_id: int) -> Path:
        """Create the guest's directory (root only, 0700: QEMU gets its sockets as
        descriptors); one left by a guest that died unseen is reused."""
        path = self.domain_dir(name, dom_id)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                            f"cannot create the directory of domain '{name}': '{path}' exists and "
                            "is not a directory") from None
            os.chmod(path, 0o700)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                        f"cannot create the directory of domain '{name}' '{path}': {exc.strerror}") from exc
        return path

    def recorded_monitor(self, path: str | None) -> Path | None:
        """A monitor path read back from a status file, if it is one of ours: in the
        state directory itself (older layout, ``NAME.qmp``) or in a per-domain
        directory there.  Anything else is ignored, never connected to or removed."""
        if not path:
            return None
        candidate = Path(os.path.normpath(path))
        state = Path(os.path.normpath(self.state_dir))
        if candidate.parent == state or (candidate.parent.parent == state
                                         and candidate.parent.name.startswith("domain-")):
            return candidate
        log.warning("ignoring monitor path %s recorded outside %s", path, state)
        return None

    def remove_monitor(self, path: Path) -> None:
        """Remove a stopped guest's monitor socket and, when it has one, its per-domain
        directory with whatever else is in it."""
        ours = self.recorded_monitor(str(path))
        if ours is None:
            return
        path = ours
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        parent = path.parent
        if parent.name.startswith("domain-") and parent.parent == Path(os.path.normpath(self.state_dir)):
            try:
                if stat.S_ISDIR(os.lstat(parent).st_mode):
                    shutil.rmtree(parent)
            except FileNotFoundError:
                pass

    def _load_host_uuid(self) -> str:
        """A host UUID generated once and kept under the root: two hosts with
        one UUID would refuse to migrate between each other as 'same host'."""
        path = self.root / "lib" / "host-uuid"
        try:
            return str(uuidlib.UUID(path.read_text().strip()))
        except (OSError, ValueError):
            value = str(uuidlib.uuid4())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value + "\n")
            return value
