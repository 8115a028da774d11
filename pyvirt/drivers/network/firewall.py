"""A NAT network's nftables rules, in a table of its own.

libvirt 9.0 adds its rules to the shared ``ip filter``/``ip nat`` tables
(through iptables-nft); pyvirt keeps each network's rules in one table
(``table ip pyvirt_NAME``), so starting adds the table and destroying deletes
it whole, touching no rule of anyone else.  The rules are libvirt's: DNS and
DHCP from the bridge accepted, the subnet masqueraded when it leaves by any
interface but the bridge (multicast and broadcast exempt, TCP/UDP onto the
NAT port range), forwarding accepted out of the subnet and back for
established connections, between ports of the bridge, and refused otherwise.
An isolated network's table only refuses forwarding into and out of the
bridge (libvirt's rules for it), so its guests stay isolated even on a host
that forwards for a NAT network.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from ...conf.network import NetworkDef
from .netdev import system_error

NFT = "/usr/sbin/nft"
DEFAULT_NAT_PORTS = (1024, 65535)     # libvirt's default masquerade port range


def table_name(network_name: str) -> str:
    """``pyvirt_NAME``; a name with characters nft does not take is spelled safely."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", network_name)
    if safe != network_name:
        safe = f"{safe[:40]}_{hashlib.sha1(network_name.encode()).hexdigest()[:8]}"
    return f"pyvirt_{safe}"


def _quote(name: str) -> str:
    # nft strings have no escapes: a name with a quote or backslash cannot be written safely
    if '"' in name or "\\" in name:
        raise system_error(f"bridge name '{name}' cannot be used in firewall rules")
    return f'"{name}"'


def ruleset(net: NetworkDef) -> str:
    ip = net.ipv4()
    assert ip is not None and net.bridge is not None
    subnet = str(ip.network)
    br = _quote(net.bridge)
    table = table_name(net.name)
    accept_dns_dhcp = f"""  chain input {{
    type filter hook input priority filter; policy accept;
    iifname {br} udp dport {{ 53, 67 }} accept
    iifname {br} tcp dport {{ 53, 67 }} accept
  }}
"""
    if net.forward != "nat":
        # isolated: guests reach each other and the host's DNS/DHCP, never anything beyond
        return f"""table ip {table} {{
{accept_dns_dhcp}  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname {br} oifname {br} accept
    oifname {br} reject
    iifname {br} reject
  }}
}}
"""
    lo, hi = net.nat_ports or DEFAULT_NAT_PORTS
    # <forward dev='X'>: out of X only (libvirt's rules name it); otherwise out of any other interface
    out = f"oifname {_quote(net.forward_dev)}" if net.forward_dev else f"oifname != {br}"
    return f"""table ip {table} {{
{accept_dns_dhcp}  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname {br} oifname {br} accept
    oifname {br} ip daddr {subnet} ct state related,established accept
    iifname {br} ip saddr {subnet} accept
    oifname {br} reject
    iifname {br} reject
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {subnet} ip daddr 224.0.0.0/24 return
    ip saddr {subnet} ip daddr 255.255.255.255 return
    meta l4proto tcp ip saddr {subnet} ip daddr != {subnet} {out} masquerade to :{lo}-{hi}
    meta l4proto udp ip saddr {subnet} ip daddr != {subnet} {out} masquerade to :{lo}-{hi}
    ip saddr {subnet} ip daddr != {subnet} {out} masquerade
  }}
}}
"""


def needed(net: NetworkDef) -> bool:
    """A virtual network with an address gets a table: NAT's, or an isolated one's refusals."""
    return net.virtual and net.ipv4() is not None


async def _nft(script: str, failure: str) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            NFT, "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate(script.encode())
    except OSError as exc:
        raise system_error(f"{failure}: cannot run '{NFT}': {exc.strerror}") from exc
    if proc.returncode != 0:
        raise system_error(f"{failure}: {err.decode(errors='replace').strip()}")


async def add(net: NetworkDef) -> None:
    # delete-then-add in one transaction: a table a crashed daemon left is replaced, not doubled
    table = table_name(net.name)
    await _nft(f"table ip {table}\ndelete table ip {table}\n" + ruleset(net),
               f"Failed to add firewall rules for network '{net.name}'")


async def remove(net_name: str) -> None:
    table = table_name(net_name)
    await _nft(f"table ip {table}\ndelete table ip {table}\n",
               f"Failed to remove firewall rules for network '{net_name}'")


async def present(net_name: str) -> bool:
    try:
        proc = await asyncio.create_subprocess_exec(
            NFT, "list", "table", "ip", table_name(net_name), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        return await proc.wait() == 0
    except OSError:
        return False
