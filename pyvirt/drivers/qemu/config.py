"""The QEMU driver's configuration and the files it keeps under its root.

Layout (architecture.md): ``ROOT/etc/qemu/NAME.xml`` persistent definitions,
``ROOT/run/qemu/NAME.xml`` status of running guests and ``NAME.qmp`` their
monitors, ``ROOT/log/qemu/NAME.log`` QEMU's stderr, ``ROOT/lib/qemu/save``
managed-save images.
"""

from __future__ import annotations

import os
import shutil
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

from .saveimage import image_format


def default_emulator() -> str:
    return shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"


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
    user: str = "root"                # who QEMU runs as: what the DAC security driver labels for
    group: str = "root"
    security_driver: str = "dac"      # pyvirt.security.DRIVERS: dac, none
    save_image_format: str = "raw"    # saveimage.FORMATS: raw, gzip, bzip2, xz, lzop, zstd
    helper_path: str | None = None    # where compression helpers are looked up; None: $PATH
    stop_timeout: float = 3.0         # SIGTERM grace before SIGKILL on destroy
    monitor_timeout: float = 30.0

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        image_format(self.save_image_format)      # an unknown format fails here, not at the first save
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
        return self.config_dir / f"{name}.xml"

    def status_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.xml"

    def monitor_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.qmp"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def shutoff_reason_path(self, name: str) -> Path:
        """Why a persistent domain last stopped, so the reason survives a restart."""
        return self.shutoff_dir / f"{name}.reason"

    def managed_save_path(self, name: str) -> Path:
        return self.save_dir / f"{name}.save"

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
