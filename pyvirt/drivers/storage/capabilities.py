"""virConnectGetStoragePoolCapabilities: libvirt 9.0's document, with
``supported='yes'`` for the pool types this driver has (dir, logical) and
``'no'`` for the rest, each in libvirt's order."""

from __future__ import annotations

from ...conf.storage_pool import ALL_POOL_TYPES, LOGICAL_FORMATS
from ...conf.storage_vol import FILE_FORMATS
from ...conf.xmlutil import Node, el, render


def _enum(name: str, values: tuple[str, ...]) -> Node:
    return el("enum", [("name", name)], [el("value", text=v) for v in values], keep_open=True)


def _pool(ptype: str) -> Node:
    if ptype == "dir":
        return el("pool", [("type", "dir"), ("supported", "yes")], [
            el("volOptions", children=[el("defaultFormat", [("type", "raw")]),
                                       _enum("targetFormatType", FILE_FORMATS)])])
    if ptype == "logical":
        return el("pool", [("type", "logical"), ("supported", "yes")], [
            el("poolOptions", children=[el("defaultFormat", [("type", "lvm2")]),
                                        _enum("sourceFormatType", LOGICAL_FORMATS)])])
    return el("pool", [("type", ptype), ("supported", "no")], keep_open=True)


def xml() -> str:
    return render(el("storagepoolCapabilities", children=[_pool(t) for t in ALL_POOL_TYPES]))
