"""Graphics passwords reach QEMU without its command line or its log.

SPICE: a ``secret`` object QEMU reads from a sealed memfd (pyvirt.drivers.qemu.secrets);
VNC: QMP ``set_password`` once QEMU runs.  Tested on a real QEMU under pyvirtd,
looked at through stock virsh's qemu-monitor-command.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

import pyvirt
from pyvirt.drivers.qemu.secrets import SecretPlan

from daemons import qemu_pid
from guests import READY, tiny_xml, wait_for_text


def test_plan_hands_each_secret_in_a_sealed_memfd_closed_afterwards():
    plan = SecretPlan()
    args = plan.object_args("a-secret", "pass,word")
    big = os.urandom(1 << 20)           # more than a pipe holds: no size limit
    plan.object_args("big-secret", big)
    assert json.loads(args[1])["file"] == "/proc/self/fd/@SECRET_FD:a-secret@"
    with pytest.raises(ValueError):
        plan.object_args("a-secret", "again")
    with plan.handed() as handed:
        fd = handed.by_id["a-secret"]
        assert Path(f"/proc/self/fd/{fd}").read_bytes() == b"pass,word"     # as QEMU reopens it
        assert Path(f"/proc/self/fd/{handed.by_id['big-secret']}").read_bytes() == big
        with pytest.raises(PermissionError):                                  # sealed: nobody changes it
            os.pwrite(fd, b"x", 0)
        assert handed.substitute(args)[1].endswith(f'"/proc/self/fd/{fd}"}}')
        fds = handed.fds
    for fd in fds:
        with pytest.raises(OSError) as info:
            os.fstat(fd)
        assert info.value.errno == errno.EBADF


def monitor(uri: str, dom: str, command: str, **arguments) -> object:
    cmd = json.dumps({"execute": command, **({"arguments": arguments} if arguments else {})})
    out = subprocess.run(["virsh", "-c", uri, "qemu-monitor-command", dom, cmd],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["return"]


@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")
def test_graphics_passwords_absent_from_argv_and_log_yet_held_by_qemu(pyvirtd, guests_built):
    spice_pw = f"spice,pw={secrets.token_hex(8)}"      # a comma once injected into -object secret
    vnc_pw = secrets.token_hex(4)                        # VNC passwords are 8 characters at most
    log = pyvirtd.workdir / "pw-serial.log"
    xml = tiny_xml("pw", log, extra_devices=f"""
    <graphics type='spice' autoport='yes' passwd='{spice_pw}'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <graphics type='vnc' autoport='yes' passwd='{vnc_pw}' listen='127.0.0.1'/>""")
    conn = pyvirt.open(pyvirtd.uri)
    dom = conn.createXML(xml, 0)
    wait_for_text(log, READY)

    pid = qemu_pid(pyvirtd, "pw")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    qemu_log = (pyvirtd.state_dir / "log" / "qemu" / "pw.log").read_bytes()
    assert b"-spice" in cmdline and b"-spice" in qemu_log   # the argv QEMU got, logged
    for pw in (spice_pw, vnc_pw):
        assert pw.encode() not in cmdline
        assert pw.encode() not in qemu_log
        assert pw.encode() not in pyvirtd.log_path.read_bytes()

    # QEMU holds the SPICE password: the secret object exists, loaded from the
    # descriptor it names, and SPICE asks clients for it.
    objects = {o["name"] for o in monitor(pyvirtd.uri, "pw", "qom-list", path="/objects")}
    assert "graphics0-secret" in objects
    path = "/objects/graphics0-secret"
    assert monitor(pyvirtd.uri, "pw", "qom-get", path=path, property="loaded") is True
    source = monitor(pyvirtd.uri, "pw", "qom-get", path=path, property="file")
    assert source.startswith("/proc/self/fd/")
    assert Path(f"/proc/{pid}/fd/{source.rsplit('/', 1)[1]}").read_bytes() == spice_pw.encode()
    assert monitor(pyvirtd.uri, "pw", "query-spice")["auth"] == "spice"
    assert monitor(pyvirtd.uri, "pw", "query-vnc")["auth"] == "vnc"
    dom.destroy()
