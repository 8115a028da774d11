"""Volume operations of an active pool: create, clone, delete, wipe, resize,
XML, and the descriptors an upload or download stream moves data through.

A volume being made is listed nowhere until its image exists (libvirt's
"building"); one in use by a call (clone source, wipe, stream) cannot be
deleted meanwhile; one a running guest uses (the ``in_use`` hook) never.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

from ...conf import storage_vol as volxml
from ...driver import StreamSink
from ...enums_more import StorageVolCreateFlags, StorageVolResizeFlags, StorageVolWipeAlgorithm
from ...errors import ErrorDomain, ErrorNumber, error
from .pool import PoolObj
from .volume import Volume

log = logging.getLogger(__name__)
_S = ErrorDomain.STORAGE


def _invalid(detail: str) -> Exception:
    return error(ErrorNumber.OPERATION_INVALID, _S, detail)


def _new_volume(driver: Any, obj: PoolObj, xml: str) -> tuple[volxml.VolDef, Volume]:
    vdef = volxml.parse(xml)
    if "/" in vdef.name:
        raise _invalid(f"volume name '{vdef.name}' cannot contain '/'")
    if vdef.name in obj.volumes:
        raise error(ErrorNumber.STORAGE_VOL_EXIST, _S, f"'{vdef.name}'")
    backend = driver.backend(obj)
    shown = f"{obj.pdef.target_path}/{vdef.name}"
    if os.path.lexists(shown):          # '.' and '..' too, as libvirt words it
        raise _invalid(f"volume target path '{shown}' already exists")
    path = backend.vol_path(obj.pdef, vdef.name)
    vol = Volume(vdef.name, path, path, backend.vol_type, vdef.format or backend.default_format)
    return vdef, vol


def _check_space(driver: Any, obj: PoolObj, needed: int) -> None:
    driver.update_sizes(obj)
    if needed > obj.pdef.available:
        raise error(ErrorNumber.OPERATION_FAILED, _S, "Not enough space left in storage pool")


async def _build(driver: Any, obj: PoolObj, vol: Volume, work: Any) -> Volume:
    vol.building = True
    obj.volumes[vol.name] = vol
    try:
        await work
    except BaseException:
        obj.volumes.pop(vol.name, None)
        try:
            await driver.backend(obj).delete_vol(obj.pdef, vol)
        except Exception as exc:
            log.warning("could not remove the half-made volume %s: %s", vol.path, exc)
        raise
    finally:
        vol.building = False
    driver.update_sizes(obj)
    return vol


async def create(driver: Any, obj: PoolObj, xml: str, flags: int) -> Volume:
    vdef, vol = _new_volume(driver, obj, xml)
    backend = driver.backend(obj)
    if vdef.capacity is None and not vdef.backing_path:   # libvirt: capacity optional with a backing store
        raise error(ErrorNumber.XML_ERROR, _S, "missing capacity element")
    fmt = vdef.format or backend.default_format
    if fmt not in volxml.CREATABLE_FORMATS and obj.pdef.type == "dir":
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, _S, f"unsupported storage vol type '{fmt}'")
    if vdef.backing_path:
        found = driver.find_volume(lambda v: v.path == vdef.backing_path)
        if found is None and not os.path.exists(vdef.backing_path):
            raise error(ErrorNumber.INTERNAL_ERROR, _S,
                        f"inaccessible backing store volume {vdef.backing_path}")
        if vdef.backing_format is None and found is not None:
            vdef.backing_format = found[1].format
    # An LV takes its whole size from the VG at once.  A file is not checked beforehand,
    # as libvirt's: its allocation fails with the file system's own error ("cannot
    # allocate N bytes in file ...: No space left on device").
    if obj.pdef.type == "logical":
        _check_space(driver, obj, vdef.capacity or 0)
    prealloc = bool(flags & StorageVolCreateFlags.PREALLOC_METADATA)
    return await _build(driver, obj, vol, backend.create_vol(obj.pdef, vdef, vol, prealloc))


async def create_from(driver: Any, obj: PoolObj, xml: str, src_pool: PoolObj, src: Volume,
                      flags: int) -> Volume:
    vdef, vol = _new_volume(driver, obj, xml)
    if src.building:
        raise _invalid(f"volume '{src.name}' is still being allocated.")
    backend = driver.backend(obj)
    if obj.pdef.type == "dir":
        vdef.format = vdef.format or src.format
    if obj.pdef.type == "logical":
        _check_space(driver, obj, max(vdef.capacity or 0, src.capacity))
    prealloc = bool(flags & StorageVolCreateFlags.PREALLOC_METADATA)
    src.busy += 1
    try:
        return await _build(driver, obj, vol, backend.create_vol_from(obj.pdef, vdef, vol, src, prealloc))
    finally:
        src.busy -= 1


def _check_free(driver: Any, vol: Volume) -> None:
    if vol.building:
        raise _invalid(f"volume '{vol.name}' is still being allocated.")
    if vol.busy:
        raise _invalid(f"volume '{vol.name}' is still in use.")
    guest = driver.in_use(vol.path)
    if guest:
        raise _invalid(f"volume '{vol.name}' is still in use by domain '{guest}'")


async def delete(driver: Any, obj: PoolObj, vol: Volume, zeroed: bool) -> None:
    _check_free(driver, vol)
    vol.busy += 1
    try:
        if zeroed:
            await driver.backend(obj).wipe_vol(vol)
        await driver.backend(obj).delete_vol(obj.pdef, vol)
    finally:
        vol.busy -= 1
    obj.volumes.pop(vol.name, None)
    driver.update_sizes(obj)


async def wipe(driver: Any, obj: PoolObj, vol: Volume, algorithm: int) -> None:
    try:
        alg = StorageVolWipeAlgorithm(algorithm)
    except ValueError:
        raise error(ErrorNumber.INVALID_ARG, _S, f"wiping algorithm {algorithm} not supported") from None
    _check_free(driver, vol)
    if alg is StorageVolWipeAlgorithm.TRIM:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, _S, "'trim' algorithm not supported")
    vol.busy += 1
    try:
        if alg is StorageVolWipeAlgorithm.ZERO:
            await driver.backend(obj).wipe_vol(vol)
        else:
            await _scrub(vol.path, alg.name.lower())   # libvirt hands every other pattern to scrub(1)
            await driver.backend(obj).update(vol)
    finally:
        vol.busy -= 1


async def _scrub(path: str, pattern: str) -> None:
    import shutil
    from .spawn import run
    argv = ["scrub", "-f", "-p", pattern, path]
    if shutil.which(argv[0]) is None:     # libvirt's command runner words it so (error domain none)
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NONE,
                    f"Cannot find '{argv[0]}' in path: {os.strerror(errno.ENOENT)}")
    code, _, err = await run(argv)
    if code:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NONE,
                    f"Child process ({' '.join(argv)}) unexpected exit status {code}: "
                    f"{err.decode(errors='replace').strip()}")


async def resize(driver: Any, obj: PoolObj, vol: Volume, capacity: int, flags: int) -> None:
    if vol.building:
        raise _invalid(f"volume '{vol.name}' is still being allocated.")
    if vol.busy:
        raise _invalid(f"volume '{vol.name}' is still in use.")
    update_sizes(driver, obj, vol)
    if flags & StorageVolResizeFlags.DELTA:
        if flags & StorageVolResizeFlags.SHRINK:
            if capacity > vol.capacity:
                raise error(ErrorNumber.INVALID_ARG, _S, "can't shrink capacity below size zero")
            new = vol.capacity - capacity
        else:
            new = vol.capacity + capacity
    else:
        new = capacity
    if new < vol.allocation:   # libvirt's rule, --shrink or not
        raise error(ErrorNumber.INVALID_ARG, _S, "can't shrink capacity below existing allocation")
    if new < vol.capacity and not flags & StorageVolResizeFlags.SHRINK:
        raise error(ErrorNumber.INVALID_ARG, _S,
                    "Can't shrink capacity below current capacity unless shrink flag explicitly specified")
    allocate = bool(flags & StorageVolResizeFlags.ALLOCATE)
    if allocate:
        driver.update_sizes(obj)
        if new - vol.allocation > obj.pdef.available:
            raise error(ErrorNumber.OPERATION_FAILED, _S, "Not enough space left in storage pool")
    if obj.pdef.type == "logical" and new > vol.capacity:
        _check_space(driver, obj, new - vol.capacity)
    guest = driver.in_use(vol.path)
    if guest and new < vol.capacity:
        raise _invalid(f"volume '{vol.name}' is still in use by domain '{guest}'")
    vol.busy += 1
    try:
        await driver.backend(obj).resize_vol(vol, new, allocate, new < vol.capacity)
    finally:
        vol.busy -= 1
    driver.update_sizes(obj)


def update_sizes(driver: Any, obj: PoolObj, vol: Volume) -> None:
    try:
        driver.backend(obj).update_sizes(vol)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, _S,
                    f"cannot stat file '{vol.path}': {os.strerror(exc.errno or 0)}") from None


def xml(driver: Any, obj: PoolObj, vol: Volume) -> str:
    update_sizes(driver, obj, vol)
    fmt = vol.format if obj.pdef.type == "dir" else None
    return volxml.format_volume(vol_type=vol.type_name, name=vol.name, key=vol.key, path=vol.path, fmt=fmt,
                                capacity=vol.capacity, allocation=vol.allocation,
                                physical=None if vol.type_name == "dir" else vol.physical,
                                backing=vol.backing, qcow2_v3=vol.qcow2_v3)


def open_stream(driver: Any, obj: PoolObj, vol: Volume, offset: int, length: int, sparse: bool,
                upload: bool) -> tuple[None, StreamSink]:
    """The volume opened at ``offset`` for the daemon's stream (see StreamSink)."""
    if vol.building:
        raise _invalid(f"volume '{vol.name}' is still being allocated.")
    if upload:
        guest = driver.in_use(vol.path)
        if guest:
            raise _invalid(f"volume '{vol.name}' is still in use by domain '{guest}'")
    flags = (os.O_WRONLY if upload else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(vol.path, flags)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, _S,
                    f"cannot open volume '{vol.path}': {os.strerror(exc.errno or 0)}") from None
    try:
        os.lseek(fd, offset, os.SEEK_SET)   # past the end: a download of nothing, as libvirt's
    except BaseException:
        os.close(fd)
        raise
    vol.busy += 1
    obj.busy += 1

    def done(exc: BaseException | None) -> None:
        vol.busy -= 1
        obj.busy -= 1
        if exc is not None:
            log.info("stream of volume %s ended: %s", vol.path, exc)
        if upload:
            _after_upload(driver, obj, vol)

    return None, StreamSink(fd, done, length=length, sparse=sparse)


def _after_upload(driver: Any, obj: PoolObj, vol: Volume) -> None:
    """An upload may have changed the image's format and size: read them again, then
    tell listeners the pool changed (libvirt refreshes the pool and emits REFRESH)."""
    import asyncio

    async def again() -> None:
        try:
            await driver.backend(obj).update(vol)
            driver.update_sizes(obj)
        except Exception as exc:
            log.warning("could not re-read volume %s after its upload: %s", vol.path, exc)
        driver.emit_refresh(obj)

    try:
        task = asyncio.get_running_loop().create_task(again())
    except RuntimeError:
        return
    driver.tasks.add(task)            # kept until done (the loop holds tasks weakly)
    task.add_done_callback(driver.tasks.discard)
    vol.reread = task
