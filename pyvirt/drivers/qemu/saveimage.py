"""libvirt's QEMU save image: header, domain XML, then QEMU's migration stream.

Pure: bytes in, typed values out, no I/O.  The layout is libvirt's, so an
image written here restores in libvirt and the other way round::

    offset 0    magic        16 bytes  "LibvirtQemudSave"; "LibvirtQemudPart" until complete
           16   version      u32       2
           20   data_len     u32       bytes of XML, cookie and padding that follow the header
           24   was_running  u32       1: resume the guest after restore
           28   compressed   u32       how the migration stream is compressed (COMPRESSION)
           32   cookieOffset u32       where a cookie starts inside the data (0: none)
           36   unused       14 × u32  zero
           92   domain XML, NUL-terminated; [cookie XML, NUL-terminated]; zero padding
    92+data_len QEMU's migration stream, raw or through the compressor

The u32 fields are in the writer's byte order; a reader that finds a
version it does not know swaps them and tries again, as libvirt does.
libvirt pads the XML by 64 KiB so it can be edited in place later; we do
too, and round the padding up so the stream starts on a 4 KiB boundary.

Compression numbers 0-4 are libvirt 9.0's.  libvirt 9.0 has no zstd: we
give it 5, the next unused number (later libvirt releases use 5 for zstd as
well), and libvirt 9.0 refuses such images as an unsupported format.

Who must be able to restore an image is the user's choice
(:func:`check_compat`): pyvirtd's ``save_image_compat = "libvirt-9.0"``
for every save, or the pyvirt-only save parameter ``pyvirt.image_compat``
for one.  A save in a format the named reader cannot restore is then
refused before the guest is touched, rather than leaving an image that
fails only when someone tries it on the other host.  Without the setting
every format is allowed: zstd is the fastest and smallest, and pyvirt
restores it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ...errors import ErrorDomain, ErrorNumber, error, libvirtError

MAGIC = b"LibvirtQemudSave"
MAGIC_PARTIAL = b"LibvirtQemudPart"
VERSION = 2
_FIELDS = "16s5I14I"
HEADER = struct.Struct("=" + _FIELDS)            # written in our own byte order
_HEADER_LE = struct.Struct("<" + _FIELDS)
_HEADER_BE = struct.Struct(">" + _FIELDS)
HEADER_SIZE = HEADER.size                         # 92
XML_SLACK = 64 * 1024                             # room to edit the XML in place (libvirt's)
STREAM_ALIGN = 4096
MAX_DATA_LEN = 64 * 1024 * 1024                   # a sane bound on XML + cookie + padding


class Compression(IntEnum):
    """The header's ``compressed`` field."""

    RAW = 0
    GZIP = 1
    BZIP2 = 2
    XZ = 3
    LZOP = 4
    ZSTD = 5       # pyvirt's; libvirt 9.0 cannot read these


@dataclass(frozen=True, slots=True)
class ImageFormat:
    """One ``save_image_format``: its header number and the helpers that
    (de)compress QEMU's stream, as argument lists (no shell).  The helpers
    filter stdin to stdout; libvirt's choices of arguments are kept where
    they matter for compatibility (``lzop --ignore-warn`` on decompression)."""

    name: str
    code: Compression
    compress: tuple[str, ...] = ()
    decompress: tuple[str, ...] = ()
    libvirt_9_reads: bool = True

    @property
    def program(self) -> str | None:
        return self.compress[0] if self.compress else None

    def __post_init__(self) -> None:
        if bool(self.compress) != bool(self.decompress):
            raise ValueError(f"format {self.name}: give both helpers or neither")
        if self.compress and self.compress[0] != self.decompress[0]:
            raise ValueError(f"format {self.name}: one program compresses and decompresses")


FORMATS: dict[str, ImageFormat] = {f.name: f for f in (
    ImageFormat("raw", Compression.RAW),
    ImageFormat("gzip", Compression.GZIP, ("gzip", "-c"), ("gzip", "-dc")),
    ImageFormat("bzip2", Compression.BZIP2, ("bzip2", "-c"), ("bzip2", "-dc")),
    # xz: level 1 on every core (any xz reads it).  libvirt's level 3 compresses guest
    # RAM about 1% smaller at a quarter of the speed (0.6 MB/s on text-like memory here).
    ImageFormat("xz", Compression.XZ, ("xz", "-c", "-1", "-T0"), ("xz", "-dc")),
    ImageFormat("lzop", Compression.LZOP, ("lzop", "-c"), ("lzop", "-dc", "--ignore-warn")),
    # zstd: level 1 on every core, with long-distance matching over a 128 MiB window
    # (guest RAM repeats itself far apart: page cache, identical pages; any zstd reads
    # that window by default).  On the benchmark's guests level 1 is twice as fast as
    # level 3 and within 10% of its size either way.  Quiet: stderr carries only errors.
    ImageFormat("zstd", Compression.ZSTD, ("zstd", "-c", "-q", "-1", "-T0", "--long=27"),
                ("zstd", "-dc", "-q", "--long=27"), libvirt_9_reads=False),
)}
BY_CODE: dict[int, ImageFormat] = {int(f.code): f for f in FORMATS.values()}


# save_image_compat values: who must be able to restore the image, and the words for them
COMPAT_READERS = {"libvirt-9.0": "libvirt 9.0"}


def readable_by(fmt: ImageFormat, compat: str) -> bool:
    if compat == "libvirt-9.0":
        return fmt.libvirt_9_reads
    return True


def check_compat_name(compat: str) -> None:
    if compat and compat not in COMPAT_READERS:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                    f"unknown save image compatibility '{compat}': use one of {', '.join(COMPAT_READERS)}")


def check_compat(fmt: ImageFormat, compat: str, asked_by: str) -> None:
    """Refuse ``fmt`` when ``compat`` names a reader that cannot restore it;
    ``asked_by`` says where the compatibility was asked for."""
    check_compat_name(compat)
    if not compat or readable_by(fmt, compat):
        return
    reader = COMPAT_READERS[compat]
    others = [f.name for f in FORMATS.values() if readable_by(f, compat)]
    raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                f"save image format '{fmt.name}' cannot be restored by {reader}, which reads only "
                f"{', '.join(others[:-1])} and {others[-1]} images; {asked_by} asks for images "
                f"{reader} can restore")


def image_format(name: str) -> ImageFormat:
    """The format called ``name`` (a ``save_image_format`` value), or a clear error."""
    try:
        return FORMATS[name]
    except KeyError:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                    f"unknown save image format '{name}': use one of {', '.join(FORMATS)}") from None


@dataclass(frozen=True, slots=True)
class SaveHeader:
    version: int
    data_len: int
    was_running: bool
    format: ImageFormat
    cookie_offset: int = 0

    @property
    def stream_offset(self) -> int:
        """Where QEMU's migration stream starts in the file."""
        return HEADER_SIZE + self.data_len


@dataclass(frozen=True, slots=True)
class SaveImage:
    """What the header and data say: enough to restore, without the stream."""

    header: SaveHeader
    xml: str
    cookie: str | None = None


def _bad(path: str, detail: str) -> libvirtError:
    return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, f"save image '{path}': {detail}")


def _padded_len(used: int) -> int:
    """data_len for ``used`` bytes of XML and cookie: at least XML_SLACK spare,
    and the stream starting on a STREAM_ALIGN boundary."""
    end = HEADER_SIZE + used + XML_SLACK
    end = -(-end // STREAM_ALIGN) * STREAM_ALIGN
    return end - HEADER_SIZE


def pack_header(header: SaveHeader, complete: bool) -> bytes:
    return HEADER.pack(MAGIC if complete else MAGIC_PARTIAL, header.version, header.data_len,
                       int(header.was_running), int(header.format.code), header.cookie_offset,
                       *([0] * 14))


def build(xml: str, was_running: bool, fmt: ImageFormat, cookie: str | None = None,
          data_len: int = 0) -> tuple[SaveHeader, bytes]:
    """The header (marked partial) and data to write before QEMU's stream.

    ``data_len`` keeps an existing image's size (editing the XML in place);
    by default there is room to spare and the stream starts aligned.
    """
    xml_bytes = xml.encode() + b"\0"
    cookie_bytes = cookie.encode() + b"\0" if cookie else b""
    used = len(xml_bytes) + len(cookie_bytes)
    if data_len and used > data_len:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "new xml too large to fit in file")
    header = SaveHeader(VERSION, data_len or _padded_len(used), was_running, fmt,
                        len(xml_bytes) if cookie_bytes else 0)
    padding = b"\0" * (header.data_len - used)
    return header, pack_header(header, complete=False) + xml_bytes + cookie_bytes + padding


def parse_header(raw: bytes, path: str) -> SaveHeader:
    """Check and decode the fixed-size header (libvirt's checks, with its words)."""
    if len(raw) < HEADER_SIZE:
        raise _bad(path, f"failed to read qemu header: the file has only {len(raw)} of its "
                         f"{HEADER_SIZE} bytes")
    magic = raw[:16]
    if magic != MAGIC:
        if magic == MAGIC_PARTIAL:
            raise _bad(path, "save image is incomplete (the save that wrote it did not finish)")
        # Never quote the bytes found: they may be the start of any file on the host.
        raise _bad(path, f"image magic is incorrect: this is not a save image (it does not start "
                         f"with {MAGIC.decode()!r})")
    fields = _HEADER_LE.unpack_from(raw)
    if fields[1] > VERSION:                          # written on the other byte order?
        swapped = _HEADER_BE.unpack_from(raw)
        if swapped[1] > VERSION:
            raise _bad(path, f"image version is not supported ({fields[1]} > {VERSION})")
        fields = swapped
    _magic, version, data_len, was_running, compressed, cookie_offset = fields[:6]
    if version < 1:
        raise _bad(path, f"image version {version} is not valid")
    # Version 1 images (libvirt before 0.9) were never compressed; the field meant nothing.
    fmt = BY_CODE.get(compressed) if version == VERSION else FORMATS["raw"]
    if fmt is None:
        raise _bad(path, f"unsupported save image format: {compressed} (known: "
                         + ", ".join(f"{f.code} {f.name}" for f in FORMATS.values()) + ")")
    if data_len <= 0 or data_len > MAX_DATA_LEN:
        raise _bad(path, f"invalid header data length: {data_len}")
    if cookie_offset >= data_len:
        raise _bad(path, f"invalid cookie offset {cookie_offset} (data length {data_len})")
    return SaveHeader(version, data_len, bool(was_running), fmt, cookie_offset)


def parse_data(header: SaveHeader, data: bytes, path: str) -> SaveImage:
    """The XML (and cookie) from the ``data_len`` bytes after the header."""
    if len(data) < header.data_len:
        raise _bad(path, f"failed to read domain XML: the image is truncated ({len(data)} of "
                         f"{header.data_len} bytes after the header)")
    xml_end = header.cookie_offset or header.data_len
    xml = _c_string(data[:xml_end])
    if not xml.strip():
        raise _bad(path, "the image holds no domain XML")
    cookie = _c_string(data[xml_end:header.data_len]) if header.cookie_offset else None
    try:
        return SaveImage(header, xml.decode(), cookie.decode() if cookie else None)
    except UnicodeDecodeError as exc:
        raise _bad(path, f"the domain XML is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _c_string(data: bytes) -> bytes:
    end = data.find(b"\0")
    return data if end < 0 else data[:end]
