"""Device events raised by the devices API reach every client, in both forms.

A disk hot-plugged with ``virsh attach-disk --live`` raises DEVICE_ADDED with
its alias; a CD-ROM media change through the tray raises TRAY_CHANGE (QEMU's
DEVICE_TRAY_MOVED) opened and closed.  python3-libvirt, pyvirt's library,
``virsh event`` and ``pyvirt event`` all see them, and the pyvirt CLI prints
what virsh prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from guests import READY, tiny_xml, wait_for_text
from test_events import Watcher, have_python3_libvirt, listener

pytestmark = [pytest.mark.virsh,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed"),
              pytest.mark.skipif(not have_python3_libvirt(), reason="python3-libvirt is not installed")]


def virsh(uri: str, *args: str) -> str:
    out = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"virsh {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def image(path, fmt: str = "qcow2") -> str:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), "8M"], check=True)
    os.chmod(path, 0o644)
    return str(path)


def test_hotplug_and_media_change_events(pyvirtd, guests_built):
    uri, w = pyvirtd.uri, pyvirtd.workdir
    cdrom = """
    <disk type='file' device='cdrom'>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>"""
    # ACPI: the pc machine's PCI bus takes hot-plugged devices only with it
    xml = tiny_xml("dv", w / "dv.log", extra_devices=cdrom).replace("</os>", "</os>\n  <features><acpi/></features>")
    (w / "dv.xml").write_text(xml)
    virsh(uri, "define", str(w / "dv.xml"))
    virsh(uri, "start", "dv")
    wait_for_text(w / "dv.log", READY)
    disk, iso = image(w / "extra.qcow2"), image(w / "media.iso", "raw")
    watchers = [listener("libvirt", uri), listener("pyvirt", uri),
                Watcher(["virsh", "-c", uri, "event", "--all", "--loop"]),
                Watcher([sys.executable, "-m", "pyvirt.cli", "-c", uri, "event", "--all", "--loop"])]
    py3, ours, vsh, cli = watchers
    try:
        for l in (py3, ours):
            assert l.wait_for(lambda line: line.startswith("registered")) == "registered 27"
        probes = iter(range(1000))
        for v in (vsh, cli):
            v.probe_until(lambda: virsh(uri, "desc", "dv", f"probe {next(probes)}"),
                          lambda line: "metadata-change" in line, what="probe event")
        virsh(uri, "attach-disk", "dv", disk, "vdb", "--driver", "qemu", "--subdriver", "qcow2", "--live")
        virsh(uri, "change-media", "dv", "hdc", iso, "--insert", "--live")
        virsh(uri, "suspend", "dv")       # a last event: everything before it has arrived
        for l in (py3, ours):
            l.wait_for(lambda line: line.startswith("[0,") and json.loads(line)[2] == 3, what="suspended")
        for v in (vsh, cli):
            v.wait_for(lambda line: "Suspended Paused" in line, what="suspended")
    finally:
        for x in watchers:
            x.stop()
    alias = [line for line in virsh(uri, "dumpxml", "dv").splitlines() if "alias name='virtio-disk" in line]
    assert len(alias) == 1
    added = alias[0].split("'")[1]

    def got(l):
        return [e for e in (json.loads(line) for line in l.lines if line.startswith("["))
                if not (e[0] == 23 and e[2] == 0)]
    assert got(py3) == got(ours)
    events = got(py3)
    assert [19, "dv", added] in events                               # DEVICE_ADDED
    trays = [e for e in events if e[0] == 10]
    assert trays and trays[-1] == [10, "dv", "ide0-1-0", 1]          # closed again, with the medium in
    assert iso in virsh(uri, "domblklist", "dv")

    def shown(v):
        return [line for line in v.lines if line.startswith("event ") and "type description" not in line]
    assert shown(cli) == shown(vsh)
    assert f"event 'device-added' for domain 'dv': {added}" in shown(vsh)
