"""Storage pool XML (libvirt's storagepool.rng): parse and format.

The formatted document is libvirt 9.0's: ``<pool type=...>`` with name,
uuid, ``<capacity unit='bytes'>``/``<allocation>``/``<available>``, the
``<source>`` (devices, VG name, format) and the ``<target>`` (path and
permissions).  Sizes are bytes, filled in by the driver from the backend.
"""

from __future__ import annotations

import uuid as uuidmod
from dataclasses import dataclass, field

from ..errors import ErrorDomain, ErrorNumber, error
from .names import check_name
from .xmlutil import Node, child, child_text, children, el, parse_document, render

# Types this driver serves, and the formats of their sources (libvirt's enums).
POOL_TYPES = ("dir", "logical")
ALL_POOL_TYPES = ("dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath",
                  "rbd", "sheepdog", "gluster", "zfs", "vstorage")
LOGICAL_FORMATS = ("unknown", "lvm2")
DEFAULT_POOL_MODE = 0o711


def xml_error(detail: str) -> Exception:
    return error(ErrorNumber.XML_ERROR, ErrorDomain.STORAGE, detail)


@dataclass
class Permissions:
    mode: int | None = None
    owner: int | None = None
    group: int | None = None
    label: str | None = None

    def node(self, default_mode: int | None = None) -> Node | None:
        mode = self.mode if self.mode is not None else default_mode
        if mode is None and self.owner is None and self.group is None and self.label is None:
            return None
        return el("permissions", children=[
            el("mode", text=f"{mode:04o}") if mode is not None else None,
            el("owner", text=str(self.owner)) if self.owner is not None else None,
            el("group", text=str(self.group)) if self.group is not None else None,
            el("label", text=self.label) if self.label is not None else None,
        ])


@dataclass
class PoolDef:
    type: str
    name: str
    uuid: bytes
    target_path: str = ""
    source_devices: list[str] = field(default_factory=list)
    source_name: str | None = None
    source_format: str | None = None
    permissions: Permissions = field(default_factory=Permissions)
    # Filled in by the driver for an active pool.
    capacity: int = 0
    allocation: int = 0
    available: int = 0

    @property
    def uuid_string(self) -> str:
        return str(uuidmod.UUID(bytes=self.uuid))


def parse_permissions(node) -> Permissions:
    perms = Permissions()
    if node is None:
        return perms
    mode = child_text(node, "mode", strip=True)
    if mode is not None:
        try:
            perms.mode = int(mode, 8)
        except ValueError:
            raise xml_error("malformed octal mode") from None
        if perms.mode > 0o7777:
            raise xml_error("malformed octal mode")
    for what in ("owner", "group"):
        text = child_text(node, what, strip=True)
        if text is not None:
            try:
                value = int(text)
            except ValueError:
                raise xml_error(f"malformed {what} element") from None
            if value != -1:
                setattr(perms, what, value)
    perms.label = child_text(node, "label", strip=True)
    return perms


def parse(xml: str) -> PoolDef:
    doc = parse_document(xml, "pool", "(storage_pool_definition)", ErrorDomain.STORAGE)
    ptype = doc.get("type")
    if ptype is None:   # libvirt's RNG check reports it, from the XML domain
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.XML, "Missing required attribute 'type' in element 'pool'")
    if ptype not in ALL_POOL_TYPES:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.XML,
                    f"Invalid value for attribute 'type' in element 'pool': '{ptype}'.")
    if ptype not in POOL_TYPES:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.STORAGE,
                    f"missing backend for pool type {ALL_POOL_TYPES.index(ptype)} ({ptype})")
    name = child_text(doc, "name", strip=True)
    if not name:
        raise xml_error("missing pool source name element")
    _check(name, "name")
    raw_uuid = child_text(doc, "uuid", strip=True)
    if raw_uuid:
        try:
            uid = uuidmod.UUID(raw_uuid).bytes
        except ValueError:
            raise xml_error("malformed uuid element") from None
    else:
        uid = uuidmod.uuid4().bytes
    pdef = PoolDef(type=ptype, name=name, uuid=uid)
    src = child(doc, "source")
    if src is not None:
        pdef.source_devices = [d.get("path") for d in children(src, "device") if d.get("path")]
        pdef.source_name = child_text(src, "name", strip=True)
        fmt = child(src, "format")
        if fmt is not None:
            pdef.source_format = fmt.get("type")
    target = child(doc, "target")
    tpath = child_text(target, "path", strip=True) if target is not None else None
    if ptype == "logical":
        if not pdef.source_name:
            pdef.source_name = name
        if pdef.source_format is not None and pdef.source_format not in LOGICAL_FORMATS:
            raise xml_error(f"unknown pool format type {pdef.source_format}")
        # libvirt derives a logical pool's target from its VG name.
        tpath = f"/dev/{pdef.source_name}"
        pdef.source_format = pdef.source_format or "lvm2"
    else:
        if pdef.source_format is not None:
            raise xml_error(f"unknown pool format type {pdef.source_format}")
    if not tpath:
        raise xml_error("missing storage pool target path")
    if not tpath.startswith("/"):
        raise xml_error(f"target path '{tpath}' must be absolute")
    pdef.target_path = _clean_path(tpath)
    pdef.permissions = parse_permissions(child(target, "permissions") if target is not None else None)
    return pdef


def _check(name: str, what: str) -> None:
    try:
        check_name(name, what)
    except Exception as exc:   # same text, the storage driver's domain
        code = exc.get_error_code() if hasattr(exc, "get_error_code") else ErrorNumber.XML_ERROR
        if code == ErrorNumber.XML_ERROR:
            raise xml_error(f"{what} {name} cannot contain '/'") from None
        raise


def _clean_path(path: str) -> str:
    """libvirt's virFileSanitizePath: no doubled or trailing slashes."""
    while "//" in path:
        path = path.replace("//", "/")
    return path.rstrip("/") or "/"


def format_pool(pdef: PoolDef, target_perms: Permissions | None = None) -> str:
    """The pool's XML; ``target_perms`` are the target's actual permissions when known."""
    perms = target_perms if target_perms is not None else pdef.permissions
    source: list[Node | None] = [el("device", [("path", d)]) for d in pdef.source_devices]
    if pdef.type == "logical":
        source.append(el("name", text=pdef.source_name))
        source.append(el("format", [("type", pdef.source_format or "lvm2")]))
    target_children: list[Node | None] = [el("path", text=pdef.target_path)]
    if pdef.type == "dir":
        target_children.append(perms.node(DEFAULT_POOL_MODE))
    root = el("pool", [("type", pdef.type)], [
        el("name", text=pdef.name),
        el("uuid", text=pdef.uuid_string),
        el("capacity", [("unit", "bytes")], text=str(pdef.capacity)),
        el("allocation", [("unit", "bytes")], text=str(pdef.allocation)),
        el("available", [("unit", "bytes")], text=str(pdef.available)),
        el("source", children=source, keep_open=True),
        el("target", children=target_children),
    ])
    return render(root)


def format_config(pdef: PoolDef) -> str:
    """What the driver keeps on disk for a defined pool (no sizes: those are live)."""
    saved = PoolDef(**{**pdef.__dict__, "capacity": 0, "allocation": 0, "available": 0})
    return format_pool(saved)
