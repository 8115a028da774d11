"""Networks on pyvirtd and on libvirtd 9.0, same run, same stock virsh commands, same answers.

Each daemon runs inside a network namespace of its own (libvirtd under
bench/libvirt_ref.py's private directories, started from inside the namespace),
so the bridges, dnsmasq and firewall rules of both stay there; both namespaces
are deleted at the end, their processes killed by PID first.  The definitions
carry their UUID and MAC, so the outputs can be compared byte for byte.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from guests import REPO
from netns_daemon import namespace_pids, needs_netns, netns_pyvirtd, ns_run

sys.path.insert(0, str(REPO / "bench"))
import libvirt_ref  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()
pytestmark = [needs_netns, pytest.mark.libvirtd,
              pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}"),
              pytest.mark.skipif(not os.path.exists("/usr/sbin/dnsmasq"), reason="needs dnsmasq-base")]

NETWORKS = {
    "nat.xml": """<network>
  <name>natnet</name>
  <uuid>58e3ae37-d015-45f4-906e-26418b008453</uuid>
  <forward mode='nat'/>
  <bridge name='pvbr1'/>
  <mac address='52:54:00:ee:fc:21'/>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.0.10' end='10.77.0.20'/>
      <host mac='52:54:00:00:00:01' name='h1' ip='10.77.0.5'/>
    </dhcp>
  </ip>
</network>
""",
    "iso.xml": """<network>
  <name>iso</name>
  <uuid>3cc43c8b-9cfc-4d53-b456-46221b5edfd2</uuid>
  <mac address='52:54:00:f2:78:0f'/>
  <ip address='10.78.0.1' prefix='24'/>
</network>
""",
    "br.xml": """<network>
  <name>brnet</name>
  <uuid>4392a643-74a6-4ec5-9d52-cf5ae7a894ce</uuid>
  <forward mode='bridge'/>
  <bridge name='br-host'/>
</network>
""",
    "dup.xml": "<network><name>dup</name><bridge name='pvbr1'/></network>",
    "renamed.xml": "<network><name>natnet</name><bridge name='pvbr9'/></network>",
    "clash.xml": """<network><name>clash</name><uuid>e7b37393-1244-45a5-9a9d-18cfc1474590</uuid>
<bridge name='pvbr7'/><mac address='52:54:00:f7:e4:f6'/><ip address='10.77.0.1' prefix='24'/></network>""",
    "taken.xml": """<network><name>taken</name><uuid>02bcc51c-9c8e-44e5-9d8b-e994c952ad1b</uuid>
<bridge name='pvbr8'/><mac address='52:54:00:43:9b:65'/><ip address='10.99.0.1' prefix='24'/></network>""",
}
WALK = [
    "net-define {d}/nat.xml", "net-define {d}/iso.xml", "net-define {d}/br.xml", "net-define {d}/dup.xml",
    "net-define {d}/renamed.xml", "net-define {d}/clash.xml", "net-define {d}/taken.xml",
    "net-list --all", "net-dumpxml natnet", "net-dumpxml iso", "net-dumpxml brnet", "net-info natnet",
    "net-start natnet", "net-start natnet", "net-dumpxml natnet", "net-dumpxml --inactive natnet",
    "net-info natnet", "net-start clash", "net-start taken", "net-start iso", "net-list",
    "net-dhcp-leases iso", "net-autostart iso", "net-list --all --autostart", "net-autostart iso --disable",
    "net-undefine iso", "net-list --all", "net-destroy iso", "net-destroy iso", "net-info iso",
    "net-destroy natnet", "net-dumpxml natnet", "net-name 00000000-0000-0000-0000-000000000001",
    "net-uuid natnet", "net-undefine natnet", "net-undefine clash", "net-undefine taken", "net-undefine brnet",
    "net-list --all",
]
# libvirtd only: the namespace's interfaces it needs, its own walk run from inside the namespace
LIBVIRTD_WALK = r"""
import json, subprocess, sys
sys.path.insert(0, sys.argv[1])
from libvirt_ref import LibvirtHost, pick_free_ports
from pathlib import Path
workdir, walk, netdir = Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
host = LibvirtHost(workdir / "host", pick_free_ports(1)[0], cache_dir=workdir / "cache")
host.start()
try:
    out = []
    for command in walk:
        p = subprocess.run(["virsh", "-c", host.uri] + command.format(d=netdir).split(), capture_output=True,
                           text=True, timeout=120)
        out.append([p.returncode, p.stdout, p.stderr])
    print(json.dumps(out))
finally:
    host.stop()
"""


def prepare_namespace(ns: str) -> None:
    """What both hosts share before the walk: a host interface named like a network's bridge."""
    ns_run(ns, "ip", "link", "add", "name", "pvbr8", "type", "veth", "peer", "name", "pvbr8p")


def run_walk(uri: str, netdir: Path) -> list[list]:
    out = []
    for command in WALK:
        p = subprocess.run(["virsh", "-c", uri] + command.format(d=netdir).split(), capture_output=True,
                           text=True, timeout=120)
        out.append([p.returncode, p.stdout, p.stderr])
    return out


def libvirtd_walk(tmp_path: Path, netdir: Path) -> list[list]:
    ns = f"pyvirt-lvnet-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    script = tmp_path / "libvirtd_walk.py"
    script.write_text(LIBVIRTD_WALK)
    try:
        ns_run(ns, "ip", "link", "set", "dev", "lo", "up")
        prepare_namespace(ns)
        out = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", str(script), str(REPO / "bench"),
                              str(tmp_path / "libvirtd"), json.dumps(WALK), str(netdir)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout)
    finally:
        for pid in namespace_pids(ns):        # only processes inside the namespace we made
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "delete", ns], timeout=30)


def test_network_walk_matches_libvirtd(tmp_path):
    netdir = tmp_path / "nets"
    netdir.mkdir()
    for name, text in NETWORKS.items():
        (netdir / name).write_text(text)
    theirs = libvirtd_walk(tmp_path, netdir)
    with netns_pyvirtd(tmp_path / "pyvirtd", extra_config="default_network = 0") as daemon:
        prepare_namespace(daemon.netns)
        ours = run_walk(daemon.uri, netdir)
    for command, mine, stock in zip(WALK, ours, theirs):
        assert mine == stock, command
    # the walk did what it says: both started NAT, and both refused the collisions
    results = dict(zip(WALK, ours))
    assert "natnet   active" in results["net-list"][1]
    assert "Network is already in use by interface pvbr1" in results["net-start clash"][2]
    assert "error creating bridge interface pvbr8: File exists" in results["net-start taken"][2]
