"""The ``logical`` pool backend: an LVM volume group, its logical volumes
the pool's volumes (raw block devices, key = the LV's UUID, as libvirt's).

Every LVM command names the pool's own VG or devices, runs as an asyncio
subprocess and reads ``--reportformat json``; none scans or changes any
other volume group.  udev is not assumed (containers have none): LVM
creates its device nodes itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil

from ...conf.names import contained
from ...conf.storage_pool import Permissions, PoolDef
from ...conf.storage_vol import VolDef
from ...conf.xmlutil import el, render
from ...errors import ErrorDomain, ErrorNumber, error
from . import qemuimg, spawn
from .volume import VOL_BLOCK, Volume

_S = ErrorDomain.STORAGE
_CONFIG = "--config=activation{udev_sync=0 udev_rules=0} devices{obtain_device_list_from_udev=0}"


def _exe(cmd: str) -> str:
    for path in (f"/sbin/{cmd}", f"/usr/sbin/{cmd}"):   # where libvirt's build finds LVM
        if os.path.exists(path):
            return path
    found = shutil.which(cmd)
    if found is None:
        raise error(ErrorNumber.INTERNAL_ERROR, _S, f"Cannot find '{cmd}' in path: No such file or directory")
    return found


async def lvm(cmd: str, *args: str, check: bool = True) -> tuple[int, str, str]:
    exe = _exe(cmd)
    code, out, err = await spawn.run([exe, _CONFIG, *args], env={**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"})
    text = err.decode(errors="replace").rstrip("\n")
    if check and code != 0:
        # libvirt's virCommand error, naming the command as run (less our udev-less --config)
        raise error(ErrorNumber.INTERNAL_ERROR, _S,
                    f"Child process ({' '.join([exe, *args])}) unexpected exit status {code}: {text}")
    return code, out.decode(errors="replace"), text.strip()


def _report(out: str, kind: str) -> list[dict[str, str]]:
    try:
        return json.loads(out)["report"][0].get(kind, [])
    except (ValueError, KeyError, IndexError):
        return []


async def find_sources() -> str:
    """``<sources>`` of every VG with its PVs (virConnectFindStoragePoolSources)."""
    _, out, _ = await lvm("pvs", "--reportformat", "json", "-o", "pv_name,vg_name")
    groups: dict[str, list[str]] = {}
    for row in _report(out, "pv"):
        if row.get("vg_name"):
            groups.setdefault(row["vg_name"], []).append(row["pv_name"])
    sources = [el("source", children=[*(el("device", [("path", p)]) for p in pvs), el("name", text=vg),
                                      el("format", [("type", "lvm2")])]) for vg, pvs in sorted(groups.items())]
    return render(el("sources", children=sources, keep_open=True))


class LogicalBackend:
    vol_type = VOL_BLOCK
    default_format = "raw"

    def __init__(self) -> None:
        self._sizes: dict[str, tuple[int, int, int]] = {}

    async def _vg(self, pdef: PoolDef) -> dict[str, str] | None:
        code, out, _ = await lvm("vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
                                 "-o", "vg_name,vg_size,vg_free", pdef.source_name or pdef.name, check=False)
        rows = _report(out, "vg") if code == 0 else []
        return rows[0] if rows else None

    def check_built(self, pdef: PoolDef) -> bool:
        return False   # asked before build: the devices decide (pvcreate refuses a used one)

    async def build(self, pdef: PoolDef, overwrite: bool, no_overwrite: bool) -> None:
        if not pdef.source_devices:
            raise error(ErrorNumber.INVALID_ARG, _S, "missing source device")
        for dev in pdef.source_devices:
            if no_overwrite:
                code, out, _ = await lvm("pvs", "--reportformat", "json", "-o", "pv_name", dev, check=False)
                if code == 0 and _report(out, "pv"):
                    raise error(ErrorNumber.STORAGE_POOL_BUILT, _S,
                                f"Device '{dev}' already formatted using 'lvm2'")
            await lvm("pvcreate", *(["-ff", "-y"] if overwrite else ["-y"]), dev)
        await lvm("vgcreate", pdef.source_name or pdef.name, *pdef.source_devices)

    async def start(self, pdef: PoolDef) -> None:
        vg = pdef.source_name or pdef.name
        if await self._vg(pdef) is None:
            raise error(ErrorNumber.OPERATION_INVALID, _S, f"cannot find logical volume group name '{vg}'")
        await lvm("vgchange", "-aly", vg, check=False)   # no device-mapper: the VG still serves its facts

    async def stop(self, pdef: PoolDef) -> None:
        await lvm("vgchange", "-aln", pdef.source_name or pdef.name, check=False)
        self._sizes.pop(pdef.name, None)

    async def delete(self, pdef: PoolDef) -> None:
        await lvm("vgremove", "-f", pdef.source_name or pdef.name)
        for dev in pdef.source_devices:
            await lvm("pvremove", "-y", dev, check=False)

    def target_permissions(self, pdef: PoolDef) -> Permissions | None:
        return None

    def sizes(self, pdef: PoolDef) -> tuple[int, int, int]:
        return self._sizes.get(pdef.name, (0, 0, 0))

    async def _update_pool_sizes(self, pdef: PoolDef) -> None:
        vg = await self._vg(pdef)
        if vg is not None:
            size, free = int(vg["vg_size"]), int(vg["vg_free"])
            self._sizes[pdef.name] = (size, size - free, free)

    async def refresh(self, pdef: PoolDef) -> list[Volume]:
        await self._update_pool_sizes(pdef)
        _, out, _ = await lvm("lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
                              "-o", "lv_name,lv_uuid,lv_size,lv_path", pdef.source_name or pdef.name)
        vols = []
        for row in _report(out, "lv"):
            path = row.get("lv_path") or f"/dev/{pdef.source_name}/{row['lv_name']}"
            size = int(row.get("lv_size") or 0)
            vols.append(Volume(row["lv_name"], row["lv_uuid"], path, VOL_BLOCK, None, size, size, size))
        return vols

    async def update(self, vol: Volume) -> None:
        pass   # an LV's size changes only through this driver, which records it

    def update_sizes(self, vol: Volume) -> None:
        pass

    def vol_path(self, pdef: PoolDef, name: str) -> str:
        return str(contained(pdef.target_path, name))

    async def create_vol(self, pdef: PoolDef, vdef: VolDef, vol: Volume, prealloc_metadata: bool) -> None:
        if vdef.format not in (None, "raw", "none"):
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, _S, f"unsupported storage vol type '{vdef.format}'")
        if vdef.backing_path:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, _S, "backing storage not supported for raw volumes")
        kib = -(-(vdef.capacity or 0) // 1024)
        await lvm("lvcreate", "--name", vdef.name, "-L", f"{kib}K", pdef.source_name or pdef.name, "--yes")
        await self._describe(pdef, vol)

    async def _describe(self, pdef: PoolDef, vol: Volume) -> None:
        _, out, _ = await lvm("lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
                              "-o", "lv_name,lv_uuid,lv_size,lv_path", f"{pdef.source_name}/{vol.name}")
        rows = _report(out, "lv")
        if rows:
            vol.key = rows[0]["lv_uuid"]
            vol.capacity = vol.allocation = vol.physical = int(rows[0]["lv_size"])
        vol.format = None
        await self._update_pool_sizes(pdef)

    async def create_vol_from(self, pdef: PoolDef, vdef: VolDef, vol: Volume, src: Volume,
                              prealloc_metadata: bool) -> None:
        vdef.capacity = max(vdef.capacity or 0, src.capacity)
        vdef.format = None
        await self.create_vol(pdef, vdef, vol, False)
        await qemuimg.convert(src.path, src.format, vol.path, "raw", create_target=False)

    async def delete_vol(self, pdef: PoolDef, vol: Volume) -> None:
        await lvm("lvremove", "-f", f"{pdef.source_name}/{vol.name}")
        await self._update_pool_sizes(pdef)

    async def resize_vol(self, vol: Volume, capacity: int, allocate: bool, shrink: bool) -> None:
        vg = os.path.basename(os.path.dirname(vol.path))
        await lvm("lvresize", *(["-f"] if shrink else []), "-L", f"{capacity}b", f"{vg}/{vol.name}")
        vol.capacity = vol.allocation = vol.physical = capacity

    async def wipe_vol(self, vol: Volume) -> None:
        from .backend_dir import _zero_file
        await asyncio.to_thread(_zero_file, vol.path)   # a block device: its whole size
