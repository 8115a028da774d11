"""Save image files: opening a path a client named, checking what is there.

A client names the path; the daemon opens it as root, so:

* the path must be absolute and free of NUL bytes (INVALID_ARG otherwise,
  :func:`pyvirt.conf.names.check_caller_path`);
* an image is written without following a symbolic link in its last
  component (``O_NOFOLLOW``): a link is refused, its target untouched;
* only a regular file the call created, or the regular file it was told to
  replace, is truncated; a block device is written in place; anything else
  (FIFO, character device, directory) is refused before a byte is written;
* everything here blocks (open, read, write on a slow NFS mount, a FIFO
  nobody writes): the event loop calls it through :func:`asyncio.to_thread`.

The read-only refusal of these calls lives in the RPC tables
(``DOMAIN_SAVE_IMAGE_GET_XML_DESC`` is refused on read-only connections,
like save and restore).
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from dataclasses import dataclass

from ... import conf
from ...conf.names import check_caller_path
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import saveimage
from .command import DOMAIN_TYPES

_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK      # a FIFO opens at once, never hangs
_WRITE_FLAGS = os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


def check_path(path: str) -> str:
    return check_caller_path(path, "save image path")


def os_error(what: str, path: str, exc: OSError) -> libvirtError:
    err = error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU, f"{what} '{path}': {exc.strerror}")
    err.__cause__ = exc
    return err


# -- reading --------------------------------------------------------------------------

def open_image(path: str) -> tuple[int, saveimage.SaveImage]:
    """Open a save image and check its header and XML; the descriptor is left
    positioned at QEMU's stream.  The caller closes it.  Blocking."""
    check_path(path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise os_error("cannot open save image", path, exc) from None
    try:
        os.set_blocking(fd, True)
        image = read_image(fd, path)
        os.lseek(fd, image.header.stream_offset, os.SEEK_SET)
        return fd, image
    except BaseException:
        os.close(fd)
        raise


def read_image(fd: int, path: str) -> saveimage.SaveImage:
    try:
        header = saveimage.parse_header(os.pread(fd, saveimage.HEADER_SIZE, 0), path)
        data = os.pread(fd, header.data_len, saveimage.HEADER_SIZE)
        st = os.fstat(fd)
    except OSError as exc:
        raise os_error("cannot read save image", path, exc) from None
    image = saveimage.parse_data(header, data, path)
    if stat.S_ISREG(st.st_mode) and st.st_size <= header.stream_offset:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"save image '{path}': the image is truncated: it ends at byte {st.st_size}, "
                    f"before QEMU's migration stream (at byte {header.stream_offset})")
    return image


def image_def(image: saveimage.SaveImage, dxml: str | None, path: str) -> conf.DomainDef:
    """The definition to restore with: the image's, or an application's if its ABI matches."""
    try:
        saved = conf.parse(image.xml, DOMAIN_TYPES, "qemu", inactive=True)
    except libvirtError as exc:
        raise error(ErrorNumber(exc.get_error_code()), ErrorDomain(exc.get_error_domain()),
                    f"the domain XML in save image '{path}' is unusable: {exc.get_str2() or exc}") from exc
    if not dxml:
        return saved
    new = conf.parse(dxml, DOMAIN_TYPES, "qemu", inactive=True)
    conf.ensure_abi_stable(saved, new)
    return new


def _image_xml(path: str, secure: bool) -> str:
    fd, image = open_image(path)
    os.close(fd)
    # shown completed, as a restore would start it (libvirt's parse adds the defaults too)
    from .config import default_emulator
    from .save import as_received
    return as_received(image_def(image, None, path), default_emulator()).format(secure=secure, inactive=True)


async def image_xml(path: str, secure: bool) -> str:
    """virDomainSaveImageGetXMLDesc: the XML stored in an image."""
    return await asyncio.to_thread(_image_xml, path, secure)


def _is_partial(path: str) -> bool:
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return False
    try:
        return os.pread(fd, len(saveimage.MAGIC_PARTIAL), 0) == saveimage.MAGIC_PARTIAL
    except OSError:
        return False
    finally:
        os.close(fd)


async def image_is_partial(path: str) -> bool:
    """The image was left by a save that never finished (its magic says so)."""
    return await asyncio.to_thread(_is_partial, path)


# -- writing --------------------------------------------------------------------------

@dataclass
class WrittenFile:
    """A save image opened for writing: its descriptor and the file it is."""

    path: str
    fd: int
    created: bool
    device: int
    inode: int

    def remove(self) -> None:
        """Remove the partial image, but only while the path still names the
        regular file we wrote (never what someone put there meanwhile)."""
        try:
            st = os.lstat(self.path)
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (self.device, self.inode):
                os.unlink(self.path)
        except OSError:
            pass


def open_for_writing(path: str, head: bytes) -> WrittenFile:
    """Create (or replace) the image at ``path`` and write ``head``.  Blocking."""
    check_path(path)
    created = True
    try:
        try:
            fd = os.open(path, _WRITE_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:        # also a symbolic link, wherever it points
            created = False
            fd = os.open(path, _WRITE_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"save image '{path}' is a symbolic link; refusing to write through it") from None
        if exc.errno == errno.ENXIO:   # a FIFO nobody reads
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"save image '{path}' must be a regular file or a block device") from None
        raise os_error("cannot create save image", path, exc) from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise os_error("cannot create save image", path, exc) from None
    written = WrittenFile(path, fd, created, st.st_dev, st.st_ino)
    try:
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"save image '{path}' must be a regular file or a block device")
        os.set_blocking(fd, True)
        if stat.S_ISREG(st.st_mode) and not created:
            try:
                os.ftruncate(fd, 0)        # the regular file we were told to replace
            except OSError as exc:
                raise os_error("cannot truncate save image", path, exc) from None
        write_all(fd, head, path)
    except BaseException:
        os.close(fd)
        if created:
            written.remove()
        raise
    return written


def write_all(fd: int, data: bytes, path: str) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise os_error("cannot write save image", path, exc) from None


def complete_header(fd: int, header: saveimage.SaveHeader, path: str) -> None:
    """Mark the image complete (its magic), once QEMU and the compressor are done."""
    try:
        os.pwrite(fd, saveimage.pack_header(header, complete=True), 0)
    except OSError as exc:
        raise os_error("cannot complete the header of save image", path, exc) from None
