"""Disk full during save: the fault set of save (there are no migration phases here).

The image goes to a 4 MiB tmpfs the test mounts inside its own directory,
while the guest has 16 MiB of random RAM (a module) it keeps rewriting, so the file system
fills up in the middle of the stream: QEMU's write fails (raw) or the
compressor's does (zstd).  Asserted: the save's error names the full disk,
the guest runs on (its heartbeats go on, libvirt's "running (save
canceled)"), no partial image is left, no job is left, no leftover QEMU,
and a second save to a file system with room works and restores.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

import pyvirt
from daemons import Pyvirtd
from guests import tiny_xml, wait_for, wait_for_text
from invariants import check_host

pytestmark = pytest.mark.qemu


@pytest.fixture
def full_disk(tmp_path):
    """A 4 MiB tmpfs under the test's directory (unmounted afterwards)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where = tmp_path / "full"
    where.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "pyvirt-full", str(where)],
                         capture_output=True, text=True)
    if out.returncode:
        pytest.skip(f"cannot mount a tmpfs: {out.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _beats(log) -> int:
    found = re.findall(r"PYVIRT-HEARTBEAT (\d+)", log.read_text(errors="replace"))
    return int(found[-1]) if found else 0


@pytest.mark.parametrize("fmt", ["raw", "zstd"])
def test_save_onto_a_full_disk(tmp_path, guests_built, full_disk, fmt):
    host = Pyvirtd(tmp_path / "host", extra_config=f'save_image_format = "{fmt}"\n')
    try:
        host.start()
        conn = pyvirt.open(host.uri)
        log = host.workdir / "g.log"
        module = host.workdir / "random.img"          # incompressible RAM: zstd cannot make it fit
        module.write_bytes(os.urandom(16 << 20))
        module.chmod(0o644)
        dom = conn.createXML(tiny_xml("g", log, cmdline="dirty=16:16", memory_mib=128, initrd=module), 0)
        wait_for_text(log, "PYVIRT-HEARTBEAT 1")
        wait_for(lambda: _beats(log) >= 2, 10, what="the guest to have rewritten its 16 MiB once")
        image = full_disk / "g.save"
        with pytest.raises(pyvirt.libvirtError) as info:
            dom.save(str(image))
        assert re.search(r"no space left on device", info.value.get_error_message(), re.I), \
            info.value.get_error_message()
        assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_SAVE_CANCELED]
        assert dom.jobInfo()[0] == pyvirt.VIR_DOMAIN_JOB_NONE
        assert not image.exists(), "the partial image was left behind"
        assert not check_host([host]), check_host([host])
        before = _beats(log)
        wait_for(lambda: _beats(log) > before, 10, what="the guest to keep running")
        # a second save, where there is room, works and restores
        good = host.workdir / "g.save"
        dom.save(str(good))
        conn.restore(str(good))
        after = _beats(log)
        wait_for(lambda: _beats(log) > after, 10, what="the restored guest to run")
        assert after >= before, "the restored guest started over"
        assert not check_host([host]), check_host([host])
        conn.close()
    finally:
        leaked = host.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"
