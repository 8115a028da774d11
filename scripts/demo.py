#!/usr/bin/env python3
"""``make demo``: a walk-through of pyvirt with the ``pyvirt`` command line.

1. The in-memory test driver: define, start, list, dumpxml, destroy.
2. A real QEMU guest through the embedded QEMU driver: each ``pyvirt``
   call is a new process, so every command after ``start`` also shows a
   manager adopting a guest that outlived the previous one.
3. The main job: two pyvirtd hosts on this machine and a guest that keeps
   running while it is live-migrated from one to the other and back.
Everything started here is stopped before the script ends, also on failure.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "build" / "guests" / "tiny.elf"
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def pyvirt(uri: str, *args: str, check: bool = True, capture: bool = True) -> str:
    cmd = [sys.executable, "-m", "pyvirt.cli", "-c", uri, *args]
    shown = " ".join(shlex.quote(a) for a in ["pyvirt", "-c", uri, *args])
    print(f"{BOLD}$ {shown}{RESET}", flush=True)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=capture, text=True, cwd=REPO)
    took = (time.perf_counter() - t0) * 1000
    if capture:
        sys.stdout.write(out.stdout)
        sys.stderr.write(out.stderr)
    print(f"{DIM}({took:.0f} ms){RESET}")
    if check and out.returncode != 0:
        raise SystemExit(f"demo step failed: {shown}")
    return out.stdout or ""


def test_driver_walkthrough(tmp: Path) -> None:
    print(f"\n{BOLD}== 1. the test driver (test:///default) =={RESET}\n")
    xml = tmp / "demo-test.xml"
    xml.write_text("<domain type='test'><name>demo</name><memory unit='MiB'>64</memory>"
                   "<os><type>hvm</type></os></domain>")
    uri = "test:///default"
    pyvirt(uri, f"define {xml}; start demo; list --all; dumpxml demo; destroy demo; domstate --reason demo")


def qemu_walkthrough(tmp: Path) -> None:
    print(f"\n{BOLD}== 2. a real QEMU guest (embedded QEMU driver) =={RESET}\n")
    root = tmp / "host"
    serial = tmp / "tiny-serial.log"
    xml = tmp / "tiny.xml"
    xml.write_text(f"""<domain type='qemu'>
  <name>tiny</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{TINY}</kernel>
  </os>
  <devices>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
  </devices>
</domain>
""")
    uri = f"qemu:///embed?root={root}"
    pyvirt(uri, "define", str(xml))
    try:
        pyvirt(uri, "start", "tiny")
        deadline = time.monotonic() + 30
        while "PYVIRT-GUEST-READY" not in (serial.read_text() if serial.exists() else ""):
            if time.monotonic() > deadline:
                raise SystemExit("the guest did not print its ready marker")
            time.sleep(0.05)
        print(f"guest serial console says: {serial.read_text().strip().splitlines()[-1]}\n")
        pyvirt(uri, "list", "--all")
        pyvirt(uri, "dominfo", "tiny")
        pyvirt(uri, "suspend tiny; domstate --reason tiny; resume tiny; domstate --reason tiny")
    finally:
        pyvirt(uri, "destroy", "tiny", check=False)
    pyvirt(uri, "domstate", "--reason", "tiny")
    pyvirt(uri, "undefine", "tiny")


def migration_walkthrough(tmp: Path) -> None:
    """The main job: two pyvirtd hosts on this machine, a guest live-migrated between them."""
    print(f"\n{BOLD}== 3. two pyvirtd hosts and a live migration =={RESET}\n")
    sys.path.insert(0, str(REPO / "tests"))
    from daemons import Pyvirtd   # the same host harness the tests use
    hosts = [Pyvirtd(tmp / "hostA"), Pyvirtd(tmp / "hostB")]
    try:
        for host in hosts:
            host.start()
            print(f"pyvirtd {host.workdir.name}: {host.uri}  (host UUID {host.host_uuid})")
        a, b = hosts
        serial = tmp / "mover-serial.log"
        xml = tmp / "mover.xml"
        xml.write_text(f"""<domain type='qemu'>
  <name>mover</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{TINY}</kernel>
    <cmdline>dirty=64:20</cmdline>
  </os>
  <devices>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
  </devices>
</domain>
""")
        print()
        pyvirt(a.uri, "create", str(xml))
        wait_text(serial, "PYVIRT-HEARTBEAT 1")
        print(f"guest on A says: {last_line(serial)}\n")
        # --bandwidth keeps the transfer slow enough to watch the progress bar
        pyvirt(a.uri, "migrate", "--live", "--verbose", "--timing", "--bandwidth", "40", "mover", b.uri,
               capture=False)
        pyvirt(a.uri, "list", "--all")
        pyvirt(b.uri, "list", "--all")
        pyvirt(b.uri, "domstate", "--reason", "mover")
        beat = last_line(serial)
        wait_text(serial, "PYVIRT-HEARTBEAT", after=beat)
        print(f"guest on B keeps running: {last_line(serial)}\n")
        pyvirt(b.uri, "migrate", "--live", "--timing", "mover", a.uri)
        pyvirt(a.uri, "domstate", "--reason", "mover")
        pyvirt(a.uri, "destroy", "mover")
    finally:
        for host in hosts:
            host.destroy_all()
        for host in hosts:
            leaked = host.cleanup()
            if leaked:
                print(f"warning: killed leftover QEMU processes {leaked}")


def wait_text(path: Path, text: str, after: str | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text(errors="replace") if path.exists() else ""
        tail = content.rsplit(after, 1)[-1] if after and after in content else content
        if text in tail and (after is None or after in content):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for '{text}' in {path.name}")
        time.sleep(0.05)


def last_line(path: Path) -> str:
    return path.read_text(errors="replace").strip().splitlines()[-1].strip()


def main() -> int:
    if not TINY.exists():
        subprocess.run(["bash", str(REPO / "guests" / "build.sh")], check=True)
    os.environ["PYTHONPATH"] = str(REPO)
    with tempfile.TemporaryDirectory(prefix="pyvirt-demo-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        test_driver_walkthrough(Path(tmp))
        qemu_walkthrough(Path(tmp))
        migration_walkthrough(Path(tmp))
    print(f"\n{BOLD}demo finished: every guest it started has been stopped.{RESET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
