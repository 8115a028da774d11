"""Holes in files: where data and holes lie, and making a hole (a leaf: os and ctypes only).

A volume's upload and download streams use these on the volume's own
descriptor: a sparse download walks the file's sections with
SEEK_DATA/SEEK_HOLE and sends each hole as its length, a sparse upload turns
a received hole back into one.  Descriptors that cannot tell holes (block
devices, file systems without SEEK_DATA) read as all data.
"""

from __future__ import annotations

import errno
import os
import stat

_NO_HOLES = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTTY, errno.ESPIPE)
_ZEROS = bytes(1 << 20)


def end_of(fd: int) -> int:
    """The size of what ``fd`` holds: a file's length, a block device's capacity."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    here = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.lseek(fd, here, os.SEEK_SET)


def section(fd: int, pos: int, end: int) -> tuple[bool, int]:
    """``(in_data, length)`` of the section of ``fd`` that starts at ``pos``, cut at ``end``.

    The descriptor's file offset is left where it was."""
    if pos >= end:
        return True, 0
    here = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:       # no data after pos: a hole to the end
                return False, end - pos
            if exc.errno in _NO_HOLES:
                return True, end - pos
            raise
        if data > pos:
            return False, min(data, end) - pos
        hole = os.lseek(fd, pos, os.SEEK_HOLE)
        return True, max(1, min(hole, end) - pos)
    finally:
        os.lseek(fd, here, os.SEEK_SET)


_fallocate = None


def _libc_fallocate():
    global _fallocate
    if _fallocate is None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.fallocate
        func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        func.restype = ctypes.c_int
        _fallocate = (func, ctypes)
    return _fallocate


FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def make_hole(fd: int, offset: int, length: int) -> None:
    """Make ``[offset, offset+length)`` of ``fd`` read as zeros: the part inside the
    file is punched out (written as zeros where punching is not supported); the
    file is not extended (the caller truncates at the end, see :func:`extend_to`)."""
    size = end_of(fd)
    length = min(length, size - offset)
    if length <= 0:
        return
    func, ctypes = _libc_fallocate()
    if func(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EOPNOTSUPP, errno.ENODEV, errno.EINVAL):
        raise OSError(err, os.strerror(err))
    while length > 0:                           # a block device: zeros it is
        step = min(length, len(_ZEROS))
        written = os.pwrite(fd, memoryview(_ZEROS)[:step], offset)
        offset += written
        length -= written


def extend_to(fd: int, size: int) -> None:
    """A regular file shorter than ``size`` is extended to it (by a hole)."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_size < size:
        os.ftruncate(fd, size)


__all__ = ["end_of", "section", "make_hole", "extend_to"]
