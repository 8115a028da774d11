"""Events a Linux guest's own activity makes QEMU send, to stock and pyvirt clients.

* I/O error: the guest reads a qcow2 disk whose first data cluster the test
  has pointed at an unaligned offset; QEMU's qcow2 driver fails the read
  (EIO), marks the image corrupt and sends BLOCK_IO_ERROR (action "report",
  QEMU's default read error policy), which arrives as IO_ERROR and
  IO_ERROR_REASON with the image, the device alias and QEMU's reason.
* Balloon change: ``virsh setmem --live`` asks the guest's balloon driver
  to give memory back; QEMU's BALLOON_CHANGE as it does arrives as
  BALLOON_CHANGE with the balloon's size in KiB, the last one equal to
  query-balloon's answer.

Listening at once: python3-libvirt and pyvirt's library (the same listener
script, both must see the same events) and stock ``virsh event``.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from test_events import Watcher, events, have_python3_libvirt, listener, virsh
from test_stats import make_image, qmp
from test_stats_disk_io import start_io_guest

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed"),
              pytest.mark.skipif(shutil.which("qemu-io") is None, reason="qemu-io (qemu-utils) not installed"),
              pytest.mark.skipif(not have_python3_libvirt(), reason="python3-libvirt is not installed")]

ALL_IDS = 27
IO_ERROR, IO_ERROR_REASON, BALLOON_CHANGE = 4, 6, 13
REPORT = 2                        # VIR_DOMAIN_EVENT_IO_ERROR_REPORT
L2_OFFSET_MASK = 0x00FFFFFFFFFFFE00
COPIED = 1 << 63                  # QCOW_OFLAG_COPIED


BAD_CLUSTER = 8                   # inside what the guest reads (64 KiB .. 1 MiB + 64 KiB), past its boot reads


def corrupt_image(path: Path) -> None:
    """A qcow2 image with data in cluster BAD_CLUSTER, then its L2 entry made to point at
    an offset inside a cluster (qcow2's format spec: header's l1_table_offset at byte 40)."""
    make_image(path)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0xab {BAD_CLUSTER * 64}k 64k", str(path)],
                   check=True, capture_output=True, timeout=30)
    with open(path, "r+b") as f:
        header = f.read(104)
        cluster = 1 << struct.unpack(">I", header[20:24])[0]
        l1_offset = struct.unpack(">Q", header[40:48])[0]
        f.seek(l1_offset)
        l2_offset = struct.unpack(">Q", f.read(8))[0] & L2_OFFSET_MASK
        assert cluster == 64 * 1024
        f.seek(l2_offset + 8 * BAD_CLUSTER)
        data_offset = struct.unpack(">Q", f.read(8))[0] & L2_OFFSET_MASK
        assert data_offset and data_offset % cluster == 0
        f.seek(l2_offset + 8 * BAD_CLUSTER)
        f.write(struct.pack(">Q", COPIED | (data_offset + 512)))


def watch(uri: str) -> tuple[Watcher, Watcher, Watcher]:
    py3, ours = listener("libvirt", uri), listener("pyvirt", uri)
    for w in (py3, ours):
        assert w.wait_for(lambda l: l.startswith("registered"), what="registration") == f"registered {ALL_IDS}"
    return py3, ours, Watcher(["virsh", "-c", uri, "event", "--all", "--loop"])


def stop(*watchers: Watcher) -> None:
    for w in watchers:
        w.stop()


def test_io_error_events_from_a_corrupt_image(pyvirtd, guests_built):
    image = pyvirtd.workdir / "bad.qcow2"
    corrupt_image(image)
    py3, ours, vsh = watch(pyvirtd.uri)
    dom = None
    try:
        # virsh prints nothing once registered: the first domain event shows it listens
        dom, _image, log = start_io_guest(pyvirtd, image=image)
        for w in (py3, ours):
            w.wait_for(lambda l: l.startswith(f"[{IO_ERROR_REASON},"), timeout=60, what="io-error-reason")
        vsh.wait_for(lambda l: "io-error-reason" in l, what="virsh's io-error-reason line")
        assert "PYVIRT-IO-WARN read" in log.read_text()       # the guest saw its read fail
        assert qmp(pyvirtd, "query-status")["status"] == "running"   # "report" does not stop the guest
    finally:
        if dom is not None:
            dom.destroy()
        stop(py3, ours, vsh)
    got = events(py3)
    assert events(ours) == got, "pyvirt's library saw other events than python3-libvirt"
    reasons = [e for e in got if e[0] == IO_ERROR_REASON]
    assert reasons and all(e[1:] == ["st", str(image), "virtio-disk0", REPORT, "Input/output error"]
                           for e in reasons)
    assert [IO_ERROR, "st", str(image), "virtio-disk0", REPORT] in got
    assert (f"event 'io-error-reason' for domain 'st': {image} (virtio-disk0) report due to "
            "Input/output error") in vsh.lines


def test_balloon_change_events_from_the_guests_driver(pyvirtd, guests_built):
    dom, _image, _log = start_io_guest(pyvirtd)
    py3, ours, vsh = watch(pyvirtd.uri)
    target_kib = 192 * 1024
    try:
        virsh(pyvirtd.uri, "setmem", "st", f"{target_kib}", "--live")
        for w in (py3, ours):
            w.wait_for(lambda l: json.loads(l)[:3] == [BALLOON_CHANGE, "st", target_kib] if l.startswith("[")
                       else False, timeout=60, what="the balloon at its target")
        vsh.wait_for(lambda l: "balloon-change" in l and f"{target_kib}KiB" in l, what="virsh's balloon-change")
    finally:
        if dom.isActive():
            dom.destroy()
        stop(py3, ours, vsh)
    got = events(py3)
    assert events(ours) == got
    changes = [e[2] for e in got if e[0] == BALLOON_CHANGE]
    # the guest gives memory back step by step: sizes go down to the target, never below
    assert changes == sorted(changes, reverse=True) and changes[-1] == target_kib
    assert all(target_kib <= kib < 256 * 1024 for kib in changes)
