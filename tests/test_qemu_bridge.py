"""<interface type='bridge'>: the daemon creates the tap, QEMU only gets its descriptor.

Everything happens inside a network namespace each test creates (and
deletes): pyvirtd runs in it through ``ip netns exec``, the bridge is made
there, and the host's own interfaces are never touched.  Clients reach the
daemon over its UNIX socket, which a network namespace does not hide.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

import pyvirt
from daemons import qemu_pid
from netns_daemon import NetnsPyvirtd
from guests import READY, qemu_pids_under, tiny_xml, wait_for_text

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or not os.path.exists("/dev/net/tun"),
    reason="needs root, iproute2 and /dev/net/tun")


def ns_run(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=30)
    if check:
        assert out.returncode == 0, f"{' '.join(argv)} in {ns}: {out.stderr}"
    return out


def links(ns: str) -> dict[str, dict]:
    """The namespace's interfaces by name, as ``ip -json -details link`` shows them."""
    return {link["ifname"]: link for link in json.loads(ns_run(ns, "ip", "-json", "-details", "link", "show").stdout)}


def add_bridge(ns: str, name: str) -> None:
    ns_run(ns, "ip", "link", "add", "name", name, "type", "bridge")
    ns_run(ns, "ip", "link", "set", "dev", name, "up")


@pytest.fixture
def netns():
    name = f"pyvirt-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        ns_run(name, "ip", "link", "set", "dev", "lo", "up")   # the daemon's TCP listener is on 127.0.0.1
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], timeout=30)


@pytest.fixture
def daemon(netns, tmp_path, guests_built):
    d = NetnsPyvirtd(tmp_path / "host", netns=netns)
    try:
        d.start()
        yield d
    finally:
        leaked = d.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def bridged_xml(name: str, log: Path, bridge: str, mac: str = "52:54:00:aa:bb:01") -> str:
    return tiny_xml(name, log, extra_devices=f"""
    <interface type='bridge'>
      <mac address='{mac}'/>
      <source bridge='{bridge}'/>
      <model type='virtio'/>
    </interface>""")


def tap_of(dom) -> str:
    xml = dom.XMLDesc(0)
    return xml.split("<target dev='", 1)[1].split("'", 1)[0]


def test_bridge_nic_gets_a_tap_on_the_bridge_and_loses_it_at_destroy(daemon, netns, tmp_path):
    add_bridge(netns, "br-guest")
    conn = pyvirt.open(daemon.uri)
    log = tmp_path / "bridged.log"
    dom = conn.createXML(bridged_xml("bridged", log, "br-guest"), 0)
    wait_for_text(log, READY)

    tap = tap_of(dom)
    assert tap.startswith("vnet")
    link = links(netns)[tap]
    assert link["master"] == "br-guest"
    assert link["address"] == "fe:54:00:aa:bb:01"        # the guest's MAC with libvirt's 0xFE
    assert "UP" in link["flags"]
    assert link["linkinfo"]["info_kind"] == "tun"
    assert link["mtu"] == links(netns)["br-guest"]["mtu"]

    pid = qemu_pid(daemon, "bridged")
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    netdev = json.loads(args[args.index("-netdev") + 1])
    assert netdev["type"] == "tap" and set(netdev) <= {"type", "fd", "vhost", "vhostfd", "id"}
    assert os.readlink(f"/proc/{pid}/fd/{netdev['fd']}") == "/dev/net/tun"
    assert not any("helper=" in a or '"helper"' in a for a in args)
    assert [a for i, a in enumerate(args) if i and args[i - 1] == "-netdev"] == [args[args.index("-netdev") + 1]]

    dom.destroy()
    assert tap not in links(netns)                         # the tap went with QEMU's descriptor


def test_a_comma_in_a_bridge_name_is_only_a_name(daemon, netns, tmp_path):
    add_bridge(netns, "br,helper=x")                       # a legal Linux interface name
    conn = pyvirt.open(daemon.uri)
    log = tmp_path / "comma.log"
    dom = conn.createXML(bridged_xml("comma", log, "br,helper=x"), 0)
    wait_for_text(log, READY)
    assert links(netns)[tap_of(dom)]["master"] == "br,helper=x"
    dom.destroy()


def test_helper_injection_in_the_bridge_name_runs_nothing(daemon, netns, tmp_path):
    marker = tmp_path / "helper-ran"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\n")
    evil.chmod(0o755)
    before = set(links(netns))
    conn = pyvirt.open(daemon.uri)
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.createXML(bridged_xml("evil", tmp_path / "evil.log", f"br0,helper={evil}"), 0)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    assert f"Network interface name 'br0,helper={evil}' is too long" in info.value.get_error_message()
    assert not marker.exists()
    assert set(links(netns)) == before
    assert qemu_pids_under(daemon.workdir) == []


def test_missing_bridge_is_refused_like_libvirt_and_leaves_nothing(daemon, netns, tmp_path):
    before = set(links(netns))
    conn = pyvirt.open(daemon.uri)
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.createXML(bridged_xml("nobridge", tmp_path / "nb.log", "br-missing"), 0)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    assert info.value.get_error_message() == "Cannot get interface MTU on 'br-missing': No such device"
    assert set(links(netns)) == before
    assert qemu_pids_under(daemon.workdir) == []
    with pytest.raises(pyvirt.libvirtError):
        conn.lookupByName("nobridge")


def test_an_interface_that_is_not_a_bridge_is_refused(daemon, netns, tmp_path):
    ns_run(netns, "ip", "link", "add", "name", "veth-a", "type", "veth", "peer", "name", "veth-b")
    before = set(links(netns))
    conn = pyvirt.open(daemon.uri)
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.createXML(bridged_xml("notbr", tmp_path / "nb.log", "veth-a"), 0)
    assert "'veth-a'" in info.value.get_error_message() and "not a bridge" in info.value.get_error_message()
    assert set(links(netns)) == before
