"""Commas in domain XML against real QEMU: each reproduced injection fails.

The command-line side is golden-tested in test_qemu_command.py; here QEMU
itself shows that an escaped value stayed one value, that values which
cannot be legal are refused before anything starts, and that it accepts
every device pyvirt writes as JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import pyvirt
from daemons import qemu_pid
from guests import READY, qemu_pids_under, tiny_xml, wait_for_text


def test_serial_path_with_a_logfile_injection_is_one_path(embed_uri, tmp_path):
    # '/D/a,logfile=/D/b' once opened /D/a and made QEMU log into /D/b.  As one
    # path it names the file 'b' in the directory 'D/a,logfile=/D'.
    evil = Path(f"{tmp_path}/a,logfile={tmp_path}/b")
    evil.parent.mkdir(parents=True)
    evil.touch()
    conn = pyvirt.open(embed_uri)
    dom = conn.createXML(tiny_xml("serialpath", evil), 0)
    wait_for_text(evil, READY)                      # the guest's serial port writes there
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
    dom.destroy()


@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")
def test_name_with_commas_stays_the_name_and_is_adopted_after_restart(pyvirtd, guests_built):
    name = "web,debug-threads=off,x"
    log = pyvirtd.workdir / "name.log"
    conn = pyvirt.open(pyvirtd.uri)
    conn.createXML(tiny_xml(name, log), 0)
    wait_for_text(log, READY)
    pid = qemu_pid(pyvirtd, name)
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert args[args.index(b"-name") + 1] == b"guest=web,,debug-threads=off,,x,debug-threads=on"
    out = subprocess.run(["virsh", "-c", pyvirtd.uri, "qemu-monitor-command", name, '{"execute":"query-name"}'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["return"] == {"name": name}
    conn.close()

    pyvirtd.stop()                                  # a new daemon must recognise this QEMU as ours
    pyvirtd.start()
    conn = pyvirt.open(pyvirtd.uri)
    dom = conn.lookupByName(name)
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_BOOTED]
    dom.destroy()


@pytest.mark.parametrize("extra,code,words", [
    ("", pyvirt.VIR_ERR_CONFIG_UNSUPPORTED, "does not support machine type 'pc,dump-guest-core=on'"),
    ("<graphics type='spice' autoport='yes'><listen type='address' address='127.0.0.1,port=5988'/></graphics>",
     pyvirt.VIR_ERR_XML_ERROR, "listen address '127.0.0.1,port=5988'"),
    ("<graphics type='vnc' autoport='yes' listen='127.0.0.1,websocket=5700'/>",
     pyvirt.VIR_ERR_XML_ERROR, "listen address '127.0.0.1,websocket=5700'"),
], ids=["machine", "spice-listen", "vnc-listen"])
def test_values_that_cannot_be_legal_are_refused_before_qemu_runs(embed_uri, embed_root, tmp_path,
                                                                extra, code, words):
    xml = tiny_xml("refused", tmp_path / "s.log", extra_devices=extra)
    if not extra:
        xml = xml.replace("machine='pc'", "machine='pc,dump-guest-core=on'")
    conn = pyvirt.open(embed_uri)
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.createXML(xml, 0)
    assert info.value.get_error_code() == code
    assert words in info.value.get_error_message()
    assert qemu_pids_under(embed_root) == []
    with pytest.raises(pyvirt.libvirtError):
        conn.lookupByName("refused")


def test_qemu_accepts_every_device_written_as_json(embed_uri, tmp_path):
    """One guest with each device model the command line knows, run for real."""
    images, socks = {}, tmp_path / "sockets"
    for name, fmt in (("virtio", "raw"), ("sata", "qcow2"), ("scsi", "raw")):
        images[name] = tmp_path / f"{name}.{fmt}"
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(images[name]), "1M"], check=True)
    devices = f"""
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{images["virtio"]}'/><target dev='vda' bus='virtio'/><shareable/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{images["sata"]}'/><target dev='sda' bus='sata'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{images["scsi"]}'/><target dev='sdb' bus='scsi'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='user'><model type='e1000'/></interface>
    <interface type='user'><model type='virtio'/></interface>
    <serial type='pty'><target port='1'/></serial>
    <serial type='unix'><source mode='bind' path='{socks}/s,x.sock'/><target port='2'/></serial>
    <input type='tablet' bus='usb'/>
    <input type='keyboard' bus='virtio'/>
    <graphics type='spice' autoport='yes' passwd='pw'><listen type='address' address='127.0.0.1'/></graphics>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <video><model type='qxl' ram='65536' vram='65536'/></video>
    <memballoon model='virtio'/>"""
    log = tmp_path / "all.log"
    socks.mkdir()
    socks.chmod(0o777)       # QEMU binds the socket itself, as whichever user it runs as
    conn = pyvirt.open(embed_uri)
    dom = conn.createXML(tiny_xml("alldevices", log, extra_devices=devices), 0)
    wait_for_text(log, READY)
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert (socks / "s,x.sock").exists()         # the unix chardev path kept its comma
    dom.destroy()
