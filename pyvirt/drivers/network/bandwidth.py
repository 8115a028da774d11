"""A network's ``<bandwidth>`` on its bridge, with tc (iproute2), as libvirt 9.0's
virNetDevBandwidthSet does for a network (hierarchical classes, directions swapped).

The bridge's egress is the guests' inbound traffic: an HTB root qdisc (default
class 1:2 under 1:1, which caps the whole network, so ports with a guaranteed
floor can later get classes of their own), an SFQ under it and libvirt's fw
filter; its ingress, the guests' outbound, is policed by one u32 filter.
"""

from __future__ import annotations

import asyncio
import os

from ...conf.netdev_conf import Bandwidth, Rate
from ...errors import ErrorDomain, ErrorNumber, error

TC = "/usr/sbin/tc"
MTU = 1500              # the quantum libvirt computes assumes an Ethernet MTU
UINT_MAX = 2**32 - 1


async def _tc(*args: str, check: bool = True) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(TC, *args, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _out, err = await proc.communicate()
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NONE, f"Cannot find '{TC}' in path: {exc.strerror}") \
            from exc
    if check and proc.returncode != 0:
        detail = err.decode(errors="replace").strip()
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NONE,
                    f"Child process ({TC} {' '.join(args)}) unexpected exit status {proc.returncode}: {detail}")


def _quantum(rate: Rate) -> list[str]:
    # HTB's quantum from rate / r2q is too small for slow classes: libvirt gives one MTU's worth
    return ["quantum", str(max(rate.average * 1024 // 8 // MTU, 1))]


def commands(bridge: str, band: Bandwidth) -> list[list[str]]:
    """The tc command lines that apply ``band`` to ``bridge`` (after :func:`clear`)."""
    out: list[list[str]] = []
    tx, rx = band.inbound, band.outbound          # swapped: what enters the guests leaves the bridge
    if tx is not None and tx.average:
        average = f"{tx.average}kbps"
        peak = f"{tx.peak}kbps" if tx.peak else None
        out.append(["qdisc", "add", "dev", bridge, "root", "handle", "1:", "htb", "default", "2"])
        out.append(["class", "add", "dev", bridge, "parent", "1:", "classid", "1:1", "htb", "rate", average,
                    "ceil", peak or average, *_quantum(tx)])
        line = ["class", "add", "dev", bridge, "parent", "1:1", "classid", "1:2", "htb", "rate", average]
        if peak:
            line += ["ceil", peak]
        if tx.burst:
            line += ["burst", f"{tx.burst}kb"]
        out.append(line + _quantum(tx))
        out.append(["qdisc", "add", "dev", bridge, "parent", "1:2", "handle", "2:", "sfq", "perturb", "10"])
        out.append(["filter", "add", "dev", bridge, "parent", "1:0", "protocol", "all", "prio", "1",
                    "handle", "1", "fw", "flowid", "1"])
    if rx is not None:
        # tc keeps the burst in bytes in an unsigned int
        burst = rx.burst or min(rx.average, UINT_MAX // 1024)
        out.append(["qdisc", "add", "dev", bridge, "ingress"])
        out.append(["filter", "add", "dev", bridge, "parent", "ffff:", "protocol", "all", "u32", "match", "u32",
                    "0", "0", "police", "rate", f"{rx.average}kbps", "burst", f"{burst}kb", "mtu", "64kb",
                    "drop", "flowid", ":1"])
    return out


async def clear(bridge: str) -> None:
    """Remove whatever shaping the bridge has; nothing there is no failure."""
    await _tc("qdisc", "del", "dev", bridge, "root", check=False)
    await _tc("qdisc", "del", "dev", bridge, "ingress", check=False)


async def apply(bridge: str, band: Bandwidth | None) -> None:
    if band is None:
        return
    if os.geteuid() != 0:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NONE,
                    "Network bandwidth tuning is not available in session mode")
    await clear(bridge)
    for line in commands(bridge, band):
        await _tc(*line)
