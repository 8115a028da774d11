"""Test guests and the fixtures that start and always stop QEMU.

The guests are built by ``guests/build.sh`` (``make guests``) into
``build/guests``.  Every fixture that can leave a QEMU behind records its
pid and kills it at teardown, also when the test failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "guests"
TINY = BUILD / "tiny.elf"
LINUX_KERNEL = BUILD / "linux" / "vmlinuz"
LINUX_INITRD = BUILD / "linux" / "initramfs.cpio.gz"
READY = "PYVIRT-GUEST-READY"


def ensure_guests() -> None:
    if not TINY.exists() or not LINUX_KERNEL.exists():
        subprocess.run(["bash", str(REPO / "guests" / "build.sh")], check=True, cwd=REPO)


def qemu_available() -> bool:
    from shutil import which
    return which("qemu-system-x86_64") is not None


needs_qemu = pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86_64 is not installed")


def tiny_xml(name: str, serial_log: Path, *, virt: str = "qemu", memory_mib: int = 128,
             cmdline: str | None = None, initrd: Path | None = None, extra_devices: str = "",
             uuid: str | None = None) -> str:
    return f"""<domain type='{virt}'>
  <name>{name}</name>{f'''
  <uuid>{uuid}</uuid>''' if uuid else ''}
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{TINY}</kernel>{f'''
    <initrd>{initrd}</initrd>''' if initrd else ''}{f'''
    <cmdline>{cmdline}</cmdline>''' if cmdline else ''}
  </os>
  <devices>
    <serial type='file'>
      <source path='{serial_log}'/>
      <target port='0'/>
    </serial>{extra_devices}
  </devices>
</domain>"""


def linux_xml(name: str, serial_log: Path, virt: str = "qemu") -> str:
    return f"""<domain type='{virt}'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{LINUX_KERNEL}</kernel>
    <initrd>{LINUX_INITRD}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <serial type='file'>
      <source path='{serial_log}'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>"""


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_for_text(path: Path, text: str, timeout: float = 30.0) -> None:
    wait_for(lambda: path.exists() and text in path.read_text(errors="replace"), timeout,
             what=f"'{text}' in {path.name}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def qemu_pids_under(root: Path) -> list[int]:
    """QEMU processes whose command line mentions ``root`` (started by this test)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmd.split(b"\0")[0] and str(root).encode() in cmd:
            pids.append(int(entry.name))
    return pids


def kill_qemus_under(root: Path) -> list[int]:
    """Kill every QEMU started under ``root``; return the pids that were still there."""
    left = [pid for pid in qemu_pids_under(root) if pid_alive(pid)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left
