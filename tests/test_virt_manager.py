"""Debian's virt-manager 4.1 connects to pyvirtd without errors.

virt-manager runs under Xvfb (``xvfb-run``) inside a private D-Bus session
(``dbus-run-session``, so its GSettings and systray code find a bus), with
``--debug --no-fork --connect URI`` against a pyvirtd in a network namespace
the test makes (a NAT network is running there).  It is stopped — by the
process group the test started — once its debug log shows the connection
active, the ``default`` storage pool it builds on connect running, and the
network listed; then the log must hold no ERROR line and no traceback.

The URI is a ``qemu:///session`` one: virt-manager then puts its ``default``
pool under ``$XDG_DATA_HOME/images`` (the test's own directory)
instead of the host's ``/var/lib/libvirt/images``.

pyvirtd serves no node-device API on a QEMU connection: virt-manager says so
at debug level ("Connection doesn't seem to support nodedev APIs", "Error
registering node device events: this function is not supported by the
connection driver") and carries on, as with a libvirtd built without that
driver.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from guests import wait_for
from netns_daemon import needs_netns, netns_pyvirtd

TOOLS = ("virt-manager", "xvfb-run", "dbus-run-session", "virsh")
pytestmark = [needs_netns, pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS) or not os.path.exists("/usr/sbin/dnsmasq"),
    reason="needs virt-manager, xvfb, dbus-run-session, stock virsh and dnsmasq-base")]

NAT_XML = """<network>
  <name>vmnat</name>
  <forward mode='nat'/>
  <bridge name='pvvmbr0'/>
  <ip address='10.84.0.1' prefix='24'>
    <dhcp>
      <range start='10.84.0.10' end='10.84.0.20'/>
    </dhcp>
  </ip>
</network>
"""
CONNECTED = ("changed to state=Active", "pool=default status=Active added",
             "network=vmnat status=Active added")
BAD = re.compile(r"\] ERROR \(|Traceback \(most recent call last\)")


def virsh(daemon, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(["virsh", "-q", "-c", daemon.uri, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"virsh {' '.join(args)}: {out.stderr}"
    return out


@pytest.fixture
def daemon(tmp_path):
    with netns_pyvirtd(tmp_path / "host", extra_config="default_network = 0") as d:
        net = tmp_path / "vmnat.xml"
        net.write_text(NAT_XML)
        virsh(d, "net-define", str(net))
        virsh(d, "net-start", "vmnat")
        try:
            yield d
        finally:
            subprocess.run(["virsh", "-c", d.uri, "pool-destroy", "default"], capture_output=True, timeout=60)


def test_virt_manager_connects_lists_pools_and_networks(daemon, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / "cache"),
               XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
    env.pop("DISPLAY", None)
    uri = f"qemu+unix:///session?socket={daemon.sock_dir}/libvirt-sock"
    log_path = tmp_path / "virt-manager.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["dbus-run-session", "--", "xvfb-run", "-a", "virt-manager", "--debug",
                                 "--no-fork", "--connect", uri],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        def connected() -> bool:
            assert proc.poll() is None, f"virt-manager exited early:\n{log_path.read_text()[-3000:]}"
            text = log_path.read_text(errors="replace")
            return all(word in text for word in CONNECTED)
        wait_for(connected, timeout=120, interval=0.2, what="virt-manager connected, pool and network listed")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)     # the group started above: virt-manager, Xvfb, dbus
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = log_path.read_text(errors="replace")
    bad = [line for line in text.splitlines() if BAD.search(line)]
    assert not bad, text[-6000:]
    # the default pool virt-manager built on connect: running, on the test's own directory
    pool_xml = virsh(daemon, "pool-dumpxml", "default").stdout
    assert f"<path>{home / 'data' / 'images'}</path>" in pool_xml
    assert (home / "data" / "images").is_dir()
    assert virsh(daemon, "pool-info", "default").stdout.split("\n")[2].split()[-1] == "running"
