"""libvirt's QEMU save-image header, as written and read by pyvirt (pure, no QEMU).

The layout facts come from libvirt's qemu_saveimage.h and from an image a
real libvirtd 9.0 wrote (92-byte header; XML, then a cookie, then 64 KiB of
zeros; QEMU's stream right after).
"""

from __future__ import annotations

import struct

import pytest

import pyvirt
from pyvirt.drivers.qemu import saveimage
from pyvirt.drivers.qemu.saveimage import (FORMATS, HEADER_SIZE, MAGIC, MAGIC_PARTIAL, Compression, build,
                                           image_format, pack_header, parse_data, parse_header)

XML = "<domain type='qemu'><name>g</name></domain>"
PATH = "/images/g.save"


def _image(xml: str = XML, running: bool = True, fmt: str = "raw") -> tuple[saveimage.SaveHeader, bytes]:
    return build(xml, running, FORMATS[fmt])


def _fields(raw: bytes) -> tuple[int, ...]:
    return struct.unpack_from("<5I", raw, 16)


def test_header_layout_is_libvirts():
    header, raw = _image(fmt="gzip")
    assert HEADER_SIZE == 92 == 16 + 5 * 4 + 14 * 4
    assert raw[:16] == MAGIC_PARTIAL                   # partial until the save completes
    version, data_len, was_running, compressed, cookie = _fields(raw)
    assert (version, was_running, compressed, cookie) == (2, 1, 1, 0)
    assert raw[36:92] == bytes(56)                      # the 14 unused fields
    assert data_len == len(raw) - HEADER_SIZE == header.data_len
    assert raw[92:92 + len(XML) + 1] == XML.encode() + b"\0"
    assert set(raw[92 + len(XML) + 1:]) == {0}          # zero padding up to the stream
    complete = pack_header(header, complete=True)
    assert complete[:16] == MAGIC and complete[16:] == raw[16:92]


def test_stream_starts_aligned_with_room_to_edit_the_xml():
    for size in (10, 4000, 4096 * 3 - 92, 100_000):
        xml = "<domain>" + "x" * size + "</domain>"
        header, raw = _image(xml)
        assert header.stream_offset % saveimage.STREAM_ALIGN == 0
        assert header.data_len - (len(xml) + 1) >= saveimage.XML_SLACK
        assert len(raw) == header.stream_offset


def test_round_trip():
    header, raw = _image(running=False, fmt="zstd")
    parsed = parse_header(raw[:HEADER_SIZE].replace(MAGIC_PARTIAL, MAGIC), PATH)
    assert parsed == header
    image = parse_data(parsed, raw[HEADER_SIZE:], PATH)
    assert image.xml == XML and image.cookie is None and not image.header.was_running
    assert image.header.format.name == "zstd"


def test_libvirt_written_image_with_cookie():
    """As libvirtd 9.0 writes it: cookieOffset set, 64 KiB of slack, no alignment."""
    cookie = "<cookie>\n  <cpu mode='custom'/>\n</cookie>\n"
    data = XML.encode() + b"\0" + cookie.encode() + b"\0"
    data_len = len(data) + 64 * 1024
    raw = struct.pack("<16s5I14I", MAGIC, 2, data_len, 1, 0, len(XML) + 1, *([0] * 14))
    raw += data + bytes(data_len - len(data))
    header = parse_header(raw, PATH)
    assert header.stream_offset == 92 + data_len
    image = parse_data(header, raw[HEADER_SIZE:], PATH)
    assert image.xml == XML and image.cookie == cookie
    assert header.format.code == Compression.RAW and header.was_running


def test_other_byte_order_is_read():
    raw = struct.pack(">16s5I14I", MAGIC, 2, 70000, 0, 1, 0, *([0] * 14))
    header = parse_header(raw, PATH)
    assert (header.version, header.data_len, header.format.name) == (2, 70000, "gzip")


def test_version_1_images_are_raw():
    raw = struct.pack("<16s5I14I", MAGIC, 1, 70000, 1, 3, 0, *([0] * 14))
    assert parse_header(raw, PATH).format.name == "raw"


def test_every_compression_number_has_one_format():
    assert sorted(f.code for f in FORMATS.values()) == sorted(Compression)
    assert {f.code: f.name for f in FORMATS.values()} == {
        0: "raw", 1: "gzip", 2: "bzip2", 3: "xz", 4: "lzop", 5: "zstd"}   # 0-4 are libvirt 9.0's
    for fmt in FORMATS.values():
        assert bool(fmt.compress) == (fmt.code != Compression.RAW)
        if fmt.compress:
            assert "-c" in fmt.compress and "-dc" in fmt.decompress   # stdin to stdout
    assert [f.name for f in FORMATS.values() if not f.libvirt_9_reads] == ["zstd"]


def test_unknown_format_name():
    with pytest.raises(pyvirt.libvirtError) as info:
        image_format("lz4")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_CONFIG_UNSUPPORTED
    assert "lz4" in info.value.get_error_message() and "zstd" in info.value.get_error_message()


def _header(**kw) -> bytes:
    f = dict(magic=MAGIC, version=2, data_len=70000, running=1, compressed=0, cookie=0)
    f.update(kw)
    return struct.pack("<16s5I14I", f["magic"], f["version"], f["data_len"], f["running"],
                       f["compressed"], f["cookie"], *([0] * 14))


@pytest.mark.parametrize("raw, words", [
    (_header()[:50], "failed to read qemu header"),
    (b"", "failed to read qemu header"),
    (_header(magic=b"NotALibvirtImage"), "image magic is incorrect: this is not a save image"),
    (_header(magic=MAGIC_PARTIAL), "save image is incomplete"),
    (_header(version=3), "image version is not supported (3 > 2)"),
    (_header(version=0), "image version 0 is not valid"),
    (_header(compressed=6), "unsupported save image format: 6"),
    (_header(compressed=0x7fffffff), "unsupported save image format"),
    (_header(data_len=0), "invalid header data length: 0"),
    (_header(data_len=1 << 30), "invalid header data length"),
    (_header(cookie=70000), "invalid cookie offset"),
], ids=["short", "empty", "magic", "partial", "version", "version0", "format", "format-huge",
        "datalen0", "datalen-huge", "cookie"])
def test_corrupt_headers(raw, words):
    with pytest.raises(pyvirt.libvirtError) as info:
        parse_header(raw, PATH)
    err = info.value
    assert err.get_error_code() == pyvirt.VIR_ERR_OPERATION_FAILED
    assert words in err.get_error_message() and PATH in err.get_error_message()


def test_truncated_or_empty_xml():
    header, raw = _image()
    with pytest.raises(pyvirt.libvirtError) as info:
        parse_data(header, raw[HEADER_SIZE:HEADER_SIZE + 20], PATH)
    assert "failed to read domain XML" in info.value.get_error_message()
    assert "truncated" in info.value.get_error_message()
    with pytest.raises(pyvirt.libvirtError) as info:
        parse_data(header, bytes(header.data_len), PATH)
    assert "no domain XML" in info.value.get_error_message()


def test_new_xml_must_fit_an_existing_image():
    header, _raw = _image()
    with pytest.raises(pyvirt.libvirtError) as info:
        build("<domain>" + "x" * header.data_len + "</domain>", True, FORMATS["raw"], data_len=header.data_len)
    assert "too large" in info.value.get_error_message()
    same, raw = build(XML.replace("g", "h"), True, FORMATS["raw"], data_len=header.data_len)
    assert same.data_len == header.data_len and len(raw) == header.stream_offset


def test_daemon_config_refuses_unknown_format():
    from pyvirt.daemon.config import load
    with pytest.raises(pyvirt.libvirtError) as info:
        load('tcp_port = 16509\nsave_image_format = "lz4"\n', "pyvirtd.conf")
    msg = info.value.get_error_message()
    assert "pyvirtd.conf:2" in msg and "'lz4'" in msg and "zstd" in msg
    assert load('save_image_format = "xz"\n').save_image_format == "xz"


def test_driver_config_refuses_unknown_format(tmp_path):
    from pyvirt.drivers.qemu.config import QemuConfig
    with pytest.raises(pyvirt.libvirtError) as info:
        QemuConfig(root=tmp_path, save_image_format="rar")
    assert "unknown save image format 'rar'" in info.value.get_error_message()


def test_wrong_magic_never_quotes_the_file():
    """saveImageGetXMLDesc on any file must not hand its first bytes to the caller."""
    with pytest.raises(pyvirt.libvirtError) as info:
        parse_header(_header(magic=b"root:$y$secret:1"), PATH)
    assert "image magic is incorrect" in info.value.get_error_message()
    assert "secret" not in info.value.get_error_message() and "root:" not in info.value.get_error_message()
