"""The tc command lines a network's <bandwidth> becomes on its bridge: libvirt 9.0's
virNetDevBandwidthSet for a network (hierarchical classes, the directions swapped).
Running them needs a namespace: tests/test_network.py."""

from __future__ import annotations

from lxml import etree

from pyvirt.conf.netdev_conf import parse_bandwidth
from pyvirt.drivers.network.bandwidth import commands


def lines(xml: str) -> list[str]:
    band = parse_bandwidth(etree.fromstring(xml))
    assert band is not None
    return [" ".join(argv) for argv in commands("br9", band)]


def test_inbound_is_an_htb_tree_on_the_bridges_egress():
    assert lines("<bandwidth><inbound average='1000' peak='2000' burst='256'/></bandwidth>") == [
        "qdisc add dev br9 root handle 1: htb default 2",
        # quantum: one MTU's worth per round, from the rate (1000 KiB/s * 1024 / 8 / 1500)
        "class add dev br9 parent 1: classid 1:1 htb rate 1000kbps ceil 2000kbps quantum 85",
        "class add dev br9 parent 1:1 classid 1:2 htb rate 1000kbps ceil 2000kbps burst 256kb quantum 85",
        "qdisc add dev br9 parent 1:2 handle 2: sfq perturb 10",
        "filter add dev br9 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
    ]


def test_without_peak_the_cap_is_the_average_and_a_slow_rate_gets_quantum_one():
    out = lines("<bandwidth><inbound average='5'/></bandwidth>")
    assert out[1] == "class add dev br9 parent 1: classid 1:1 htb rate 5kbps ceil 5kbps quantum 1"
    assert out[2] == "class add dev br9 parent 1:1 classid 1:2 htb rate 5kbps quantum 1"


def test_outbound_is_policed_on_the_bridges_ingress_with_the_average_as_burst():
    assert lines("<bandwidth><outbound average='500'/></bandwidth>") == [
        "qdisc add dev br9 ingress",
        "filter add dev br9 parent ffff: protocol all u32 match u32 0 0 police rate 500kbps burst 500kb "
        "mtu 64kb drop flowid :1",
    ]
    # tc keeps the burst in bytes in an unsigned int: the default burst stops at UINT_MAX / 1024 KiB
    assert "burst 4194303kb " in lines("<bandwidth><outbound average='99999999'/></bandwidth>")[1]


def test_an_inbound_of_zero_shapes_nothing_but_an_outbound_of_zero_is_still_policed():
    assert lines("<bandwidth><inbound average='0'/></bandwidth>") == []
    assert lines("<bandwidth><outbound average='0'/></bandwidth>")[1].count("rate 0kbps burst 0kb") == 1
