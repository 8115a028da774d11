"""virDomainSaveImageDefineXML: replace the domain XML inside a save image.

The image is edited in place, as libvirt does: the header keeps its
``data_len`` (libvirt and pyvirt both leave room for a longer XML), the
cookie stays as it is, and QEMU's stream is not touched.  The new XML must
describe the same guest ABI as the saved one, and is stored in libvirt's
migratable form (:func:`.save.image_xml`), so the image stays one either
libvirt or pyvirt restores.  ``VIR_DOMAIN_SAVE_RUNNING`` / ``_PAUSED``
rewrite the header's ``was_running``.

The file is opened without following a symbolic link and only a regular
file or block device is edited; a header the edit cannot be written back
over leaves the image as it was (the header, XML and padding go in one
write).  The work blocks, so :func:`define` runs it in a thread.
"""

from __future__ import annotations

import asyncio
import os
import stat

from ... import conf
from ...enums import SaveFlags
from ...errors import ErrorDomain, ErrorNumber, error
from . import saveimage
from .command import DOMAIN_TYPES
from .imagefile import check_path, image_def, os_error, read_image
from .save import as_received, image_xml

DEFINE_FLAGS = int(SaveFlags.RUNNING | SaveFlags.PAUSED)
_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def _open(path: str) -> int:
    check_path(path)
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        if os.path.islink(path):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"save image '{path}' is a symbolic link; refusing to write through it") from None
        raise os_error("cannot open save image", path, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"save image '{path}' must be a regular file or a block device")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def new_data(image: saveimage.SaveImage, dxml: str | None, flags: int, path: str,
             emulator: str) -> bytes | None:
    """The header and data to write back, or None when nothing changes.  Both XMLs
    are completed as a restore completes them before their ABI is compared, as
    libvirt's qemuSaveImageUpdateDef does; the new one is stored migratable.
    ``dxml`` None keeps the image's XML (only the flags change something)."""
    header = image.header
    if dxml is None:
        dxml = image.xml
    running = header.was_running
    if flags & SaveFlags.RUNNING:
        running = True
    elif flags & SaveFlags.PAUSED:
        running = False
    if dxml == image.xml and running == header.was_running:
        return None
    saved = as_received(image_def(image, None, path), emulator)
    new = as_received(conf.parse(dxml, DOMAIN_TYPES, "qemu", inactive=True), emulator)
    conf.ensure_abi_stable(saved, new)
    xml = image_xml(new)
    fmt = header.format
    built, data = saveimage.build(xml, running, fmt, image.cookie, data_len=header.data_len)
    # keep the image's own version (a version 1 image stays one)
    kept = saveimage.SaveHeader(header.version, built.data_len, running, fmt, built.cookie_offset)
    return saveimage.pack_header(kept, complete=True) + data[saveimage.HEADER_SIZE:]


def define_xml(path: str, dxml: str | None, flags: int, emulator: str) -> None:
    """Replace the XML in the image at ``path`` with ``dxml``.  Blocking."""
    if dxml is not None:
        conf.parse(dxml, DOMAIN_TYPES, "qemu", inactive=True)     # bad XML fails before the file is opened
    fd = _open(path)
    try:
        image = read_image(fd, path)
        data = new_data(image, dxml, flags, path, emulator)
        if data is None:
            return
        try:
            written = os.pwrite(fd, data, 0)
            if written != len(data):
                raise OSError(0, f"short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError as exc:
            raise os_error("failed to write header data to", path, exc) from None
    finally:
        os.close(fd)


async def define(path: str, dxml: str | None, flags: int, emulator: str) -> None:
    """virDomainSaveImageDefineXML, off the event loop; ``emulator``: the driver's
    default QEMU (for a definition that names none)."""
    await asyncio.to_thread(define_xml, path, dxml, flags, emulator)
