"""A disk's backing chain as QEMU has it open, and new images for block jobs.

The chain is read from QEMU rather than from the XML: a guest started on an
overlay has backing images QEMU opened itself (node names ``#blockNNN``),
which the definition may not list.  ``query-block`` gives the device's
top node; ``query-named-block-nodes`` gives every node's file and the file
of its backing image, which is how each layer's node is found.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import ErrorDomain, ErrorNumber, error

if TYPE_CHECKING:
    from ...conf.devices import Disk
    from .domainobj import QemuDomainObj

_NODE_RE = re.compile(r"libvirt-(\d+)-(?:format|storage)")
_PROTOCOL_DRIVERS = {"file", "host_device", "host_cdrom", "nbd", "null-co", "throttle", "copy-on-read"}


@dataclass(frozen=True)
class BlockImage:
    node: str              # its format node
    storage: str           # its protocol node ('' when QEMU named it)
    filename: str
    format: str
    virtual_size: int


async def _device_node(obj: "QemuDomainObj", disk: "Disk") -> tuple[str, int] | None:
    assert obj.process is not None
    for blk in await obj.process.monitor.execute("query-block"):
        qdev = str(blk.get("qdev", ""))
        alias = qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else qdev
        if alias == disk.alias and blk.get("inserted"):
            ins = blk["inserted"]
            return str(ins["node-name"]), int(ins.get("image", {}).get("virtual-size", 0))
    return None


async def chain_of(obj: "QemuDomainObj", disk: "Disk") -> list[BlockImage]:
    """The disk's images, active first, down to the last backing file."""
    if obj.process is None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "domain is not running")
    top = await _device_node(obj, disk)
    if top is None:
        return []
    nodes = [n for n in await obj.process.monitor.execute("query-named-block-nodes", {"flat": True})
             if n.get("drv") not in _PROTOCOL_DRIVERS]
    by_name = {str(n.get("node-name")): n for n in nodes}
    chain: list[BlockImage] = []
    current: dict[str, Any] | None = by_name.get(top[0])
    seen: set[str] = set()
    while current is not None and current.get("node-name") not in seen:
        name = str(current["node-name"])
        seen.add(name)
        m = _NODE_RE.fullmatch(name)
        chain.append(BlockImage(name, f"libvirt-{m.group(1)}-storage" if m else "", str(current.get("file", "")),
                                str(current.get("drv", "raw")),
                                int(current.get("image", {}).get("virtual-size", 0))))
        backing = current.get("backing_file")
        current = next((n for n in nodes if backing and n.get("file") == backing
                        and n.get("node-name") not in seen), None)
    return chain


async def free_node_index(obj: "QemuDomainObj") -> int:
    assert obj.process is not None
    nodes = await obj.process.monitor.execute("query-named-block-nodes", {"flat": True})
    found = [int(m.group(1)) for n in nodes if (m := _NODE_RE.fullmatch(str(n.get("node-name", ""))))]
    return max(found, default=0) + 1


async def create_image(path: str, fmt: str, size: int, backing: BlockImage | None) -> None:
    """qemu-img create: the copy's image, the source's size, over ``backing`` for a shallow copy."""
    args = ["create", "-q", "-f", fmt]
    if backing is not None:
        args += ["-b", backing.filename, "-F", backing.format]
    args += [path, str(size)]
    proc = await asyncio.create_subprocess_exec("qemu-img", *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"cannot create block copy destination '{path}': {out.decode(errors='replace').strip()}")
