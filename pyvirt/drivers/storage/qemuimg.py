"""``qemu-img`` as the storage driver runs it: asynchronously (:mod:`.spawn`,
so the daemon keeps serving while an image is created, converted or
resized), with JSON output where there is one, and its stderr as the error
libvirt would report."""

from __future__ import annotations

import json
import shutil
from typing import Any

from ...errors import ErrorDomain, ErrorNumber, error
from . import spawn

QEMU_IMG = "qemu-img"


def binary() -> str:
    path = shutil.which(QEMU_IMG)
    if path is None:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.STORAGE, "Cannot find 'qemu-img' in path")
    return path


async def run(*args: str) -> str:
    """Run ``qemu-img ARGS``; its stdout, or libvirt's error with its stderr."""
    code, out, err = await spawn.run([binary(), *args])
    if code != 0:
        text = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.STORAGE,
                    f"Child process (qemu-img {' '.join(args)}) unexpected exit status {code}: {text}")
    return out.decode(errors="replace")


async def info(path: str) -> dict[str, Any]:
    """``qemu-img info --output=json`` of one image (never blocked by a guest's lock: -U)."""
    return json.loads(await run("info", "-U", "--output=json", path))


def _opts(fmt: str, backing: str | None, backing_fmt: str | None, prealloc: str | None,
          compat: str | None, lazy_refcounts: bool) -> list[str]:
    opts: list[str] = []
    if backing is not None:
        opts.append(f"backing_file={_escape(backing)}")
        if backing_fmt:
            opts.append(f"backing_fmt={backing_fmt}")
    if prealloc:
        opts.append(f"preallocation={prealloc}")
    if fmt == "qcow2":
        # libvirt 9.0 writes compat 0.10 unless the volume XML asks (virt-install asks 1.1)
        opts.append(f"compat={compat or '0.10'}")
        if lazy_refcounts:
            opts.append("lazy_refcounts=on")
    return ["-o", ",".join(opts)] if opts else []


def _escape(value: str) -> str:
    """qemu-img's -o values double their commas."""
    return value.replace(",", ",,")


async def create(path: str, fmt: str, size: int | None, *, backing: str | None = None,
                 backing_fmt: str | None = None, prealloc: str | None = None,
                 compat: str | None = None, lazy_refcounts: bool = False) -> None:
    args = ["create", "-q", "-f", fmt, *_opts(fmt, backing, backing_fmt, prealloc, compat, lazy_refcounts),
            path]
    if size is not None:
        args.append(str(size))
    await run(*args)


async def convert(src: str, src_fmt: str | None, dst: str, dst_fmt: str, *, create_target: bool,
                  prealloc: str | None = None, compat: str | None = None) -> None:
    args = ["convert", "-q", "-U"]
    if src_fmt:
        args += ["-f", src_fmt]
    args += ["-O", dst_fmt]
    opts = _opts(dst_fmt, None, None, prealloc, compat, False)
    if create_target:
        args += opts
    else:
        args.append("-n")     # the target exists already (a logical volume)
    args += [src, dst]
    await run(*args)


async def resize(path: str, fmt: str, size: int, *, shrink: bool, prealloc: str | None = None) -> None:
    args = ["resize", "-q", "-f", fmt]
    if shrink:
        args.append("--shrink")
    if prealloc:
        args.append(f"--preallocation={prealloc}")
    await run(*args, path, str(size))
