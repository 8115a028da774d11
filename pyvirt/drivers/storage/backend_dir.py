"""The ``dir`` pool backend: a directory of image files, every image
operation through ``qemu-img``; file-system facts (statvfs, stat) read
directly, as libvirt does."""

from __future__ import annotations

import asyncio
import os
import stat

from ...conf.names import contained
from ...conf.storage_pool import DEFAULT_POOL_MODE, Permissions, PoolDef
from ...conf.storage_vol import VolDef
from ...errors import ErrorDomain, ErrorNumber, error
from . import qemuimg
from .volume import VOL_DIR, VOL_FILE, Volume

_WIPE_CHUNK = 1 << 20


def _sys_error(exc: OSError, text: str) -> Exception:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STORAGE, f"{text}: {os.strerror(exc.errno or 0)}")


def _check_dir(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _sys_error(exc, f"cannot open directory '{path}'") from None
    if not stat.S_ISDIR(st.st_mode):
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STORAGE,
                    f"cannot open directory '{path}': Not a directory")


class DirBackend:
    vol_type = VOL_FILE
    default_format = "raw"

    async def build(self, pdef: PoolDef, overwrite: bool, no_overwrite: bool) -> None:
        if overwrite or no_overwrite:   # libvirt's file-system build: those flags mean mkfs
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.STORAGE,
                        f"No source device specified when formatting pool '{pdef.name}'")
        path = pdef.target_path
        if os.path.lexists(path) and not os.path.isdir(path):
            return   # as libvirt: "built"; starting the pool then says it is not a directory
        parent = os.path.dirname(path)
        if parent:
            # libvirt's virStorageBackendBuildLocal: the directories above the target are
            # made with default modes (virt-manager's default pool under a fresh $XDG_DATA_HOME)
            try:
                os.makedirs(parent, 0o777, exist_ok=True)
            except OSError as exc:
                raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STORAGE,
                            f"cannot create path '{parent}': {os.strerror(exc.errno or 0)}") from None
        try:
            os.makedirs(path, exist_ok=True)
            perms = pdef.permissions
            os.chmod(path, perms.mode if perms.mode is not None else DEFAULT_POOL_MODE)
            if perms.owner is not None or perms.group is not None:
                os.chown(path, -1 if perms.owner is None else perms.owner,
                         -1 if perms.group is None else perms.group)
        except OSError as exc:
            raise _sys_error(exc, f"cannot create path '{path}'") from None

    def check_built(self, pdef: PoolDef) -> bool:
        return os.path.isdir(pdef.target_path)

    async def start(self, pdef: PoolDef) -> None:
        _check_dir(pdef.target_path)

    async def stop(self, pdef: PoolDef) -> None:
        pass

    async def delete(self, pdef: PoolDef) -> None:
        try:
            os.rmdir(pdef.target_path)
        except OSError as exc:
            raise _sys_error(exc, f"failed to remove pool '{pdef.target_path}'") from None

    def target_permissions(self, pdef: PoolDef) -> Permissions | None:
        try:
            st = os.stat(pdef.target_path)
        except OSError:
            return None
        return Permissions(st.st_mode & 0o7777, st.st_uid, st.st_gid, pdef.permissions.label)

    def sizes(self, pdef: PoolDef) -> tuple[int, int, int]:
        try:
            sv = os.statvfs(pdef.target_path)
        except OSError:
            return 0, 0, 0
        # libvirt's figures: the free blocks (root's reserve included) are "available".
        capacity = sv.f_frsize * sv.f_blocks
        available = sv.f_bfree * sv.f_frsize
        return capacity, capacity - available, available

    async def refresh(self, pdef: PoolDef) -> list[Volume]:
        """Every entry libvirt lists: regular files (hidden ones too, symlinks followed) as
        file volumes, directories (and, as libvirt has it, dangling symlinks) as dir
        volumes; FIFOs, sockets and devices are left out."""
        _check_dir(pdef.target_path)
        files, dirs = [], []
        with os.scandir(pdef.target_path) as it:
            for entry in it:
                try:
                    if entry.is_file():
                        files.append(entry.name)
                    elif entry.is_dir() or (entry.is_symlink() and not os.path.exists(entry.path)):
                        dirs.append(entry.name)
                except OSError:
                    continue
        sem = asyncio.Semaphore(8)

        async def one(name: str) -> Volume | None:
            async with sem:
                vol = Volume(name, os.path.join(pdef.target_path, name), os.path.join(pdef.target_path, name))
                try:
                    await self.update(vol)
                except Exception:
                    return None   # vanished or unreadable: not listed, as libvirt skips it
                return vol

        found = [v for v in await asyncio.gather(*(one(n) for n in files)) if v is not None]
        for name in dirs:
            path = os.path.join(pdef.target_path, name)
            found.append(Volume(name, path, path, VOL_DIR, "dir", 0, 0, 0))
        return sorted(found, key=lambda v: v.name)

    async def update(self, vol: Volume) -> None:
        """Re-read a volume's format, sizes and backing file."""
        if vol.type == VOL_DIR:
            return
        info = await qemuimg.info(vol.path)
        vol.format = info.get("format", "raw")
        vol.capacity = int(info.get("virtual-size", 0))
        backing = info.get("full-backing-filename") or info.get("backing-filename")
        vol.backing = (backing, info.get("backing-filename-format")) if backing else None
        specific = (info.get("format-specific") or {}).get("data") or {}
        compat = specific.get("compat")
        vol.qcow2_v3 = ((compat, int(info.get("cluster-size", 65536)), bool(specific.get("lazy-refcounts")))
                        if vol.format == "qcow2" and compat and compat != "0.10" else None)
        self.update_sizes(vol)

    def update_sizes(self, vol: Volume) -> None:
        if vol.type == VOL_DIR:
            return
        st = os.stat(vol.path)
        vol.allocation = st.st_blocks * 512
        vol.physical = st.st_size
        if vol.format == "raw":
            vol.capacity = st.st_size

    def vol_path(self, pdef: PoolDef, name: str) -> str:
        return str(contained(pdef.target_path, name))

    async def create_vol(self, pdef: PoolDef, vdef: VolDef, vol: Volume, prealloc_metadata: bool) -> None:
        fmt = vdef.format or self.default_format
        capacity = vdef.capacity or 0
        if fmt == "raw":
            if vdef.backing_path:
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.STORAGE,
                            "backing storage not supported for raw volumes")
            allocation = capacity if vdef.allocation is None else min(vdef.allocation, capacity)
            # A raw volume is a plain file, made as libvirt makes it (no image format to
            # write): exactly the bytes asked for, allocated as far as asked, holes after.
            await asyncio.to_thread(_create_raw, vol.path, capacity, allocation)
        else:
            # libvirt's choice: metadata only when the volume is to be thinner than its size
            allocation = capacity if vdef.allocation is None else vdef.allocation
            prealloc = ("metadata" if capacity > allocation else "falloc") if prealloc_metadata else None
            await qemuimg.create(vol.path, fmt, capacity if capacity or not vdef.backing_path else None,
                                 backing=vdef.backing_path, backing_fmt=vdef.backing_format,
                                 prealloc=prealloc, compat=vdef.compat, lazy_refcounts=vdef.lazy_refcounts)
        _apply_perms(vol.path, vdef.permissions)
        vol.format = fmt
        if fmt != "raw" and not capacity:
            await self.update(vol)        # the size comes from the backing image: ask qemu-img
            return
        if fmt == "qcow2" and vdef.compat not in (None, "0.10"):
            vol.qcow2_v3 = (vdef.compat, None, vdef.lazy_refcounts)
        # What was just made is known: no second qemu-img run to read it back.
        vol.capacity = capacity
        vol.backing = (vdef.backing_path, vdef.backing_format) if vdef.backing_path else None
        self.update_sizes(vol)

    async def create_vol_from(self, pdef: PoolDef, vdef: VolDef, vol: Volume, src: Volume,
                              prealloc_metadata: bool) -> None:
        fmt = vdef.format or src.format or "raw"
        prealloc = "metadata" if prealloc_metadata and fmt != "raw" else None
        await qemuimg.convert(src.path, src.format, vol.path, fmt, create_target=True, prealloc=prealloc,
                              compat=vdef.compat)
        want = vdef.capacity or src.capacity
        if want > src.capacity:
            await qemuimg.resize(vol.path, fmt, want, shrink=False)
        _apply_perms(vol.path, vdef.permissions)
        vol.format = fmt
        await self.update(vol)

    async def delete_vol(self, pdef: PoolDef, vol: Volume) -> None:
        try:
            if vol.type == VOL_DIR and not os.path.islink(vol.path):
                os.rmdir(vol.path)       # an empty directory only, as libvirt's
            else:
                os.unlink(vol.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            what = "remove directory" if vol.type == VOL_DIR else "unlink file"
            raise _sys_error(exc, f"cannot {what} '{vol.path}'") from None

    async def resize_vol(self, vol: Volume, capacity: int, allocate: bool, shrink: bool) -> None:
        prealloc = "falloc" if allocate else None
        await qemuimg.resize(vol.path, vol.format or "raw", capacity, shrink=shrink, prealloc=prealloc)
        await self.update(vol)

    async def wipe_vol(self, vol: Volume) -> None:
        """Zero the volume's data (libvirt's ALG_ZERO), as libvirt does it: a sparse file
        is truncated to nothing and back to its size; any other file, whatever its format,
        has its allocated bytes overwritten with zeros (a qcow2 image becomes raw zeros)."""
        await asyncio.to_thread(_zero_file, vol.path)
        await self.update(vol)


def _create_raw(path: str, capacity: int, allocation: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise _sys_error(exc, f"Failed to create file '{path}'") from None
    try:
        # libvirt 9.0's order: the file gets its size first, then its allocation
        try:
            os.ftruncate(fd, capacity)
        except OSError as exc:
            raise _sys_error(exc, f"cannot extend file '{path}'") from None
        if allocation:
            _fallocate_fd(fd, path, allocation)
    finally:
        os.close(fd)


def _fallocate_fd(fd: int, path: str, length: int) -> None:
    try:
        os.posix_fallocate(fd, 0, length)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STORAGE,
                    f"cannot allocate {length} bytes in file '{path}': {os.strerror(exc.errno or 0)}") from None


def _zero_file(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_blocks < st.st_size // 512:
            os.ftruncate(fd, 0)
            os.ftruncate(fd, st.st_size)
        else:
            zeros = bytes(_WIPE_CHUNK)
            size = st.st_blocks * 512 if stat.S_ISREG(st.st_mode) else os.lseek(fd, 0, os.SEEK_END)
            done = 0
            while done < size:
                done += os.pwrite(fd, zeros[: min(_WIPE_CHUNK, size - done)], done)
        os.fsync(fd)
    finally:
        os.close(fd)


def _apply_perms(path: str, perms: Permissions) -> None:
    os.chmod(path, perms.mode if perms.mode is not None else 0o600)
    if perms.owner is not None or perms.group is not None:
        os.chown(path, -1 if perms.owner is None else perms.owner, -1 if perms.group is None else perms.group)
