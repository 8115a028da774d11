"""Save images are interchangeable with libvirt 9.0's: a real libvirtd saves, pyvirtd
restores (raw and gzip), and the other way round (raw).  Needs root and Debian's
libvirtd (see bench/libvirt_ref.py); skipped otherwise."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import pyvirt
from daemons import Pyvirtd, qemu_pid
from guests import READY, REPO, tiny_xml, wait_for, wait_for_text
from pyvirt.drivers.qemu import saveimage

sys.path.insert(0, str(REPO / "bench"))

import libvirt_ref  # noqa: E402
from libvirt_ref import LibvirtHost, pick_free_ports  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()

pytestmark = [
    pytest.mark.libvirtd,
    pytest.mark.qemu,
    pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}"),
]


@pytest.fixture(scope="module")
def libvirt_host(tmp_path_factory, guests_built):
    """One libvirtd 9.0 for the module (its first start probes QEMU: ~8 s)."""
    base = tmp_path_factory.mktemp("libvirt-save")
    host = LibvirtHost(base / "host", pick_free_ports(1)[0], cache_dir=base / "cache")
    try:
        host.start()
        yield host
    finally:
        left = host.stop()
    assert not left, f"processes left behind by libvirtd: {left}"


@pytest.fixture
def pyvirt_host(tmp_path, guests_built):
    host = Pyvirtd(tmp_path / "pyvirt")
    try:
        host.start()
        yield host
    finally:
        leaked = host.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def heartbeat(log: Path) -> int:
    beats = re.findall(r"PYVIRT-HEARTBEAT (\d+)\r?\n", log.read_text(errors="replace"))
    return int(beats[-1]) if beats else 0


def _libvirt_guest(host: LibvirtHost, tmp_path: Path, name: str) -> Path:
    log = tmp_path / f"{name}.log"
    xml = tmp_path / f"{name}.xml"
    xml.write_text(tiny_xml(name, log, cmdline="dirty=8:4"))     # the same XML pyvirt is given
    host.virsh("create", str(xml))
    wait_for_text(log, "PYVIRT-HEARTBEAT 1")
    return log


def _set_format(host: LibvirtHost, fmt: str) -> None:
    """libvirt reads save_image_format from qemu.conf at start: restart it with the format."""
    if host.save_image_format == fmt:
        return
    host.stop()
    host.save_image_format = fmt
    host.start()


@pytest.mark.parametrize("fmt", ["raw", "gzip"])
def test_libvirt_image_restores_in_pyvirt(libvirt_host, pyvirt_host, tmp_path, fmt):
    _set_format(libvirt_host, fmt)
    name = f"lv-{fmt}"
    log = _libvirt_guest(libvirt_host, tmp_path, name)
    image = tmp_path / f"{name}.save"
    libvirt_host.virsh("save", name, str(image))
    raw = image.read_bytes()
    header = saveimage.parse_header(raw[:saveimage.HEADER_SIZE], str(image))
    assert header.format.name == fmt
    assert saveimage.parse_data(header, raw[saveimage.HEADER_SIZE:], str(image)).cookie   # libvirt's CPU cookie
    before = heartbeat(log)
    conn = pyvirt.open(pyvirt_host.uri)
    conn.restore(str(image))
    dom = conn.lookupByName(name)
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_RESTORED]
    wait_for(lambda: heartbeat(log) > before, 15, what="the guest libvirt saved to run on in pyvirt")
    assert log.read_text(errors="replace").count(READY) == 1
    dom.destroy()


def test_pyvirt_image_restores_in_libvirt(libvirt_host, pyvirt_host, tmp_path):
    name = "pv-raw"
    log = tmp_path / f"{name}.log"
    conn = pyvirt.open(pyvirt_host.uri)
    dom = conn.createXML(tiny_xml(name, log, cmdline="dirty=8:4"), 0)
    wait_for_text(log, "PYVIRT-HEARTBEAT 1")
    image = tmp_path / f"{name}.save"
    dom.save(str(image))
    before = heartbeat(log)
    try:
        libvirt_host.virsh("restore", str(image))
        assert libvirt_host.virsh("domstate", "--reason", name).stdout.strip() == "running (restored)"
        # libvirt truncates a file serial log when QEMU opens it: the count going on from
        # where it was, and no new ready marker, show the guest was restored, not booted.
        wait_for(lambda: heartbeat(log) > before, 15, what="the guest pyvirt saved to run on in libvirt")
        assert READY not in log.read_text(errors="replace")
    finally:
        libvirt_host.virsh("destroy", name, check=False)
    assert qemu_pid(pyvirt_host, name) is None
