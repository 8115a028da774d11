"""Test guests and the fixtures that start and always stop QEMU.

The guests are built by ``guests/build.sh`` (``make guests``) into
``build/guests``.  Every fixture that can leave a QEMU behind records its
pid and kills it at teardown, also when the test failed.

QEMU runs as an unprivileged user, which must reach the guest images: when
the checkout sits under a directory others cannot enter (a 0700 home), the
images are used from a copy in a world-readable directory under the system
temporary directory instead (refreshed by :func:`ensure_guests`).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "guests"
READY = "PYVIRT-GUEST-READY"
_GUEST_FILES = ("tiny.elf", "linux/vmlinuz", "linux/initramfs.cpio.gz")


def make_traversable(path: Path) -> None:
    """o+x on ``path`` and on every parent that lacks it (those we own), so a
    process of another user can reach what is inside — nothing more: no read
    access to the directories is added."""
    for d in (Path(path), *Path(path).parents):
        try:
            st = d.stat()
        except OSError:
            continue
        if not st.st_mode & stat.S_IXOTH and st.st_uid == os.geteuid():
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _reachable_by_others(path: Path) -> bool:
    return all(d.stat().st_mode & stat.S_IXOTH for d in path.parents)


def _guest_dir() -> Path:
    if _reachable_by_others(BUILD / "x"):
        return BUILD
    return Path(tempfile.gettempdir()) / f"pyvirt-guests-{os.geteuid()}"


GUEST_DIR = _guest_dir()
TINY = GUEST_DIR / "tiny.elf"
LINUX_KERNEL = GUEST_DIR / "linux" / "vmlinuz"
LINUX_INITRD = GUEST_DIR / "linux" / "initramfs.cpio.gz"


def ensure_guests() -> None:
    if not (BUILD / "tiny.elf").exists() or not (BUILD / "linux" / "vmlinuz").exists():
        subprocess.run(["bash", str(REPO / "guests" / "build.sh")], check=True, cwd=REPO)
    if GUEST_DIR != BUILD:
        _publish(BUILD, GUEST_DIR)


def _publish(src: Path, dst: Path) -> None:
    """Copy the built guests into ``dst`` (ours, 0755; never through a symlink)."""
    dst.mkdir(mode=0o755, exist_ok=True)
    st = os.lstat(dst)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise RuntimeError(f"{dst} is not a directory of ours: cannot publish the test guests there")
    os.chmod(dst, 0o755)
    for name in _GUEST_FILES:
        source, target = src / name, dst / name
        if not source.exists():
            continue
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        target.parent.mkdir(mode=0o755, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)


def qemu_available() -> bool:
    from shutil import which
    return which("qemu-system-x86_64") is not None


needs_qemu = pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86_64 is not installed")


def private_copy(image: Path, where: Path) -> Path:
    """``image`` copied into ``where`` (a test's own directory), once.

    QEMU's user is given the files a guest uses and they are given back when
    it stops, counted across guests and daemons: a test running QEMU as
    another user, or a daemon killed with its guests' counts still on the
    file, must not meet another test's labels on one shared kernel."""
    if not where.is_dir():
        return image
    target = where / image.name
    if not target.exists():
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(image, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return target


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
    <kernel>{private_copy(TINY, Path(serial_log).parent)}</kernel>{f'''
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
    <kernel>{private_copy(LINUX_KERNEL, Path(serial_log).parent)}</kernel>
    <initrd>{private_copy(LINUX_INITRD, Path(serial_log).parent)}</initrd>
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
    """Poll ``predicate`` every few ms until it is truthy; fail the test after ``timeout``.

    Only for conditions that nothing signals (a file QEMU appends to, a process
    leaving /proc, a job a daemon reports only when asked); where an event
    exists (a QMP or lifecycle event, a line on a pipe), wait for the event.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def wait_for_text(path: Path, text: str, timeout: float = 30.0) -> None:
    """Wait for ``text`` in a log file (a guest's serial output: plain file, no event)."""
    def tail() -> str:
        return path.read_text(errors="replace")[-500:] if path.exists() else "(no such file)"
    wait_for(lambda: path.exists() and text in path.read_text(errors="replace"), timeout,
             what=lambda: f"'{text}' in {path} (it ends with: {tail()!r})")


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
