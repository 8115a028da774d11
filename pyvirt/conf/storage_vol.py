"""Storage volume XML (libvirt's storagevol.rng): parse a new volume's
definition and format a volume as libvirt 9.0 does.

A volume is formatted with its ``<key>`` (a dir pool's volume path, a
logical volume's LV UUID), ``<capacity>``/``<allocation>``/``<physical>``
in bytes, the ``<target>`` (path, format, permissions, timestamps) and an
optional ``<backingStore>`` described the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ErrorDomain, ErrorNumber, error
from .names import check_name
from .storage_pool import Permissions, parse_permissions, xml_error
from .units import UnitError, scale
from .xmlutil import Node, child, child_text, el, parse_document, render

# The file formats a dir pool's volumes may have (libvirt's virStorageFileFormat
# names, the ones qemu-img can create first).
CREATABLE_FORMATS = ("raw", "qcow2", "qed", "vmdk", "vpc", "vdi", "qcow", "cow")
FILE_FORMATS = ("none", "raw", "dir", "bochs", "cloop", "dmg", "iso", "vpc", "vdi", "fat", "vhd",
                "ploop", "cow", "qcow", "qcow2", "qed", "vmdk")
VOL_TYPES = ("file", "block", "dir", "network", "netdir", "ploop")   # VIR_STORAGE_VOL_* order


@dataclass
class VolDef:
    """A volume to create, as the caller's XML says it."""

    name: str
    capacity: int | None = None
    allocation: int | None = None
    format: str | None = None
    backing_path: str | None = None
    backing_format: str | None = None
    permissions: Permissions = field(default_factory=Permissions)
    compat: str | None = None
    lazy_refcounts: bool = False


def _size(parent, tag: str) -> int | None:
    node = child(parent, tag)
    if node is None:
        return None
    raw = (node.text or "").strip()
    if not raw.isascii() or not raw.isdigit():
        raise xml_error(f"malformed {tag} element")
    try:
        value = int(raw) * scale(node.get("unit"), "bytes")
    except UnitError as exc:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.STORAGE, str(exc)) from None
    if value >= 2**64:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.STORAGE, f"malformed {tag} element: value too large")
    return value


def parse(xml: str) -> VolDef:
    doc = parse_document(xml, "volume", "(storage_volume_definition)", ErrorDomain.STORAGE)
    name = child_text(doc, "name", strip=True)
    if not name:
        raise xml_error("missing volume name element")
    if "/" not in name:
        check_name(name, "name")     # no control characters (libvirt refuses the newline)
    vdef = VolDef(name=name)
    vdef.capacity = _size(doc, "capacity")
    vdef.allocation = _size(doc, "allocation")
    target = child(doc, "target")
    if target is not None:
        fmt = child(target, "format")
        if fmt is not None:
            vdef.format = fmt.get("type")
            if vdef.format not in FILE_FORMATS:
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.STORAGE,
                            f"unknown volume format type {vdef.format}")
        vdef.permissions = parse_permissions(child(target, "permissions"))
        vdef.compat = child_text(target, "compat", strip=True)
        features = child(target, "features")
        vdef.lazy_refcounts = features is not None and child(features, "lazy_refcounts") is not None
        if features is not None and vdef.compat is None:
            vdef.compat = "1.1"    # libvirt's: features need qcow2 v3 (virStorageVolDefParseXML)
    backing = child(doc, "backingStore")
    if backing is not None:
        vdef.backing_path = child_text(backing, "path", strip=True)
        fmt = child(backing, "format")
        if fmt is not None:
            vdef.backing_format = fmt.get("type")
    return vdef


@dataclass
class FileInfo:
    """What a volume's file (or device) looks like now, for the XML."""

    path: str
    format: str | None
    mode: int
    owner: int
    group: int
    atime: tuple[int, int]
    mtime: tuple[int, int]
    ctime: tuple[int, int]


def file_info(path: str, fmt: str | None) -> FileInfo | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileInfo(path, fmt, st.st_mode & 0o7777, st.st_uid, st.st_gid,
                    divmod(st.st_atime_ns, 10**9), divmod(st.st_mtime_ns, 10**9),
                    divmod(st.st_ctime_ns, 10**9))


def _stamp(value: tuple[int, int]) -> str:
    return f"{value[0]}.{value[1]:09d}"


def _source_children(info: FileInfo | None, path: str, fmt: str | None) -> list[Node | None]:
    nodes: list[Node | None] = [el("path", text=path)]
    if fmt is not None:
        nodes.append(el("format", [("type", fmt)]))
    if info is not None:
        nodes.append(el("permissions", children=[
            el("mode", text=f"{info.mode:04o}"), el("owner", text=str(info.owner)),
            el("group", text=str(info.group))]))
        nodes.append(el("timestamps", children=[
            el("atime", text=_stamp(info.atime)), el("mtime", text=_stamp(info.mtime)),
            el("ctime", text=_stamp(info.ctime)), el("btime", text="0")]))
    return nodes


def format_volume(*, vol_type: str, name: str, key: str, path: str, fmt: str | None,
                  capacity: int, allocation: int, physical: int | None,
                  backing: tuple[str, str | None] | None = None,
                  qcow2_v3: tuple[str, int | None, bool] | None = None) -> str:
    """``qcow2_v3`` is ``(compat, cluster size, lazy refcounts)`` of a qcow2 version 3
    image: libvirt writes those only for such an image, the cluster size only once it
    has read the image (a volume it just created from XML has none)."""
    target = _source_children(file_info(path, fmt), path, fmt)
    if qcow2_v3 is not None:
        compat, cluster, lazy = qcow2_v3
        target.append(el("compat", text=compat))
        if cluster is not None:
            target.append(el("clusterSize", [("unit", "B")], text=str(cluster)))
        target.append(el("features", children=[el("lazy_refcounts")] if lazy else []))
    nodes: list[Node | None] = [
        el("name", text=name),
        el("key", text=key),
        el("capacity", [("unit", "bytes")], text=str(capacity)),
        el("allocation", [("unit", "bytes")], text=str(allocation)),
        el("physical", [("unit", "bytes")], text=str(physical)) if physical is not None else None,
        el("target", children=target),
    ]
    if backing is not None:
        bpath, bfmt = backing
        nodes.append(el("backingStore", children=_source_children(file_info(bpath, bfmt), bpath, bfmt)))
    return render(el("volume", [("type", vol_type)], nodes))
