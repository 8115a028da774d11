"""Interface statistics: a bridged guest's tap, seen from the guest (libvirt swaps the
tap's counters: what the host side sends, the guest receives).

Everything runs in a network namespace the test creates (see test_qemu_bridge):
the bridge, the tap, and the frames sent into the bridge for the guest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import pyvirt
from guests import READY, tiny_xml, wait_for, wait_for_text
from test_qemu_bridge import add_bridge, daemon, netns, ns_run, tap_of  # noqa: F401 - fixtures
from test_stats import REPO, normalized

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

MAC = "52:54:00:aa:bb:07"
# A guest without a network driver never takes frames off the tap: the tap counts them
# as dropped once its queue (tx_queue_len, 1000) is full, so send more than that.
FRAMES = 1200
QUEUED = 1000
SEND_FRAMES = r"""
import socket, sys
dev, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
frame = b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x88\xb5" + b"pyvirt-stats".ljust(46, b"\0")
for _ in range(count):
    s.send(frame)
"""
COUNTERS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors",
            "tx_dropped")


def tap_counters(ns: str, tap: str) -> dict[str, int]:
    return {name: int(ns_run(ns, "cat", f"/sys/class/net/{tap}/statistics/{name}").stdout)
            for name in COUNTERS}


def guest_view(c: dict[str, int]) -> tuple[int, ...]:
    """The tap's counters as libvirt reports them for the guest (rx and tx swapped)."""
    return (c["tx_bytes"], c["tx_packets"], c["tx_errors"], c["tx_dropped"],
            c["rx_bytes"], c["rx_packets"], c["rx_errors"], c["rx_dropped"])


def test_interface_stats_are_the_taps_counters_swapped(daemon, netns, tmp_path):  # noqa: F811
    # no IPv6 in the namespace: its neighbour discovery would keep adding frames to the counters
    ns_run(netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    add_bridge(netns, "br-st")
    ns_run(netns, "ip", "link", "set", "dev", "br-st", "type", "bridge", "forward_delay", "0")
    conn = pyvirt.open(daemon.uri)
    log = tmp_path / "net.log"
    dom = conn.createXML(tiny_xml("net", log, extra_devices=f"""
    <interface type='bridge'>
      <mac address='{MAC}'/>
      <source bridge='br-st'/>
      <model type='virtio'/>
    </interface>
    <interface type='user'>
      <model type='virtio'/>
    </interface>"""), 0)
    wait_for_text(log, READY)
    tap = tap_of(dom)
    # another "host" on the bridge: a veth pair, one end a bridge port, frames sent from the other
    ns_run(netns, "ip", "link", "add", "name", "peer-st", "type", "veth", "peer", "name", "port-st")
    ns_run(netns, "ip", "link", "set", "dev", "port-st", "master", "br-st")
    for dev in ("port-st", "peer-st"):
        ns_run(netns, "ip", "link", "set", "dev", dev, "up")
    before = tap_counters(netns, tap)

    def frames_reached_tap() -> bool:
        # the new bridge port may still be coming up: send until the tap counts them
        ns_run(netns, sys.executable, "-c", SEND_FRAMES, "peer-st", str(FRAMES))
        now = tap_counters(netns, tap)
        return now["tx_packets"] + now["tx_dropped"] >= before["tx_packets"] + before["tx_dropped"] + FRAMES - QUEUED
    wait_for(frames_reached_tap, 20, interval=0.2, what=lambda: f"the frames to reach the tap: "
             f"{tap_counters(netns, tap)}, {ns_run(netns, 'ip', '-s', 'link').stdout}")
    seen: list[dict[str, int]] = [tap_counters(netns, tap)]

    def settled() -> bool:
        # frames still on their way through the bridge move the counters: wait until they stop
        seen.append(tap_counters(netns, tap))
        return seen[-1] == seen[-2]
    wait_for(settled, 20, interval=0.2, what="the tap's counters to settle")

    def steady(read):
        """``read()`` with the tap's counters unchanged around it (frames still dropped
        by a loaded host move them): the counters and what was read."""
        for _ in range(10):
            before_read = tap_counters(netns, tap)
            value = read()
            if tap_counters(netns, tap) == before_read:
                return before_read, value
        pytest.fail("the tap's counters kept moving")

    sysfs, (by_name, by_mac) = steady(lambda: (dom.interfaceStats(tap), dom.interfaceStats(MAC)))
    assert by_name == by_mac == guest_view(sysfs)
    assert by_name[1] + by_name[3] >= FRAMES - QUEUED  # received or dropped on the guest's side
    sysfs, ((_d, rec),) = steady(lambda: conn.getAllDomainStats(pyvirt.VIR_DOMAIN_STATS_INTERFACE, 0))
    assert rec["net.count"] == 1 and rec["net.0.name"] == tap   # the user-mode NIC has no host device
    assert tuple(rec[f"net.0.{k}"] for k in ("rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes",
                                              "tx.pkts", "tx.errs", "tx.drop")) == guest_view(sysfs)
    # stock virsh and pyvirt's CLI print the same
    for args in (["domifstat", "net", tap], ["domifstat", "net", MAC], ["domstats", "--interface", "net"],
                 ["domifstat", "net", "52:54:00:00:00:99"]):
        def both():
            theirs = subprocess.run(["virsh", "-c", daemon.uri, *args], capture_output=True, text=True,
                                    timeout=60)
            ours = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", daemon.uri, *args],
                                  capture_output=True, text=True, timeout=60, cwd=REPO)
            return theirs, ours
        _counters, (theirs, ours) = steady(both)
        assert (ours.returncode, normalized(ours.stdout), ours.stderr) == \
            (theirs.returncode and 1, normalized(theirs.stdout), theirs.stderr), args
    dom.destroy()
