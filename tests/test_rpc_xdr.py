"""The XDR codec: encodings from RFC 4506 and libvirt's wire facts, limits, bad input."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyvirt.refs import DomainRef, NetworkRef
from pyvirt.errors import ErrorDomain, ErrorNumber, error, libvirtError
from pyvirt.rpc import xdr
from pyvirt.rpc.xdr import XDRError, XDRLimitError, XDRTruncatedError

UUID1 = bytes(range(16))


def roundtrip(t: xdr.Type, value):
    data = t.encode(value)
    assert len(data) % 4 == 0
    back = t.decode(data)
    assert t.encode(back) == data
    return data, back


# --- scalars -------------------------------------------------------------------


@pytest.mark.parametrize("t, value, hexbytes", [
    (xdr.Int, -2, "fffffffe"),
    (xdr.UInt, 0xFFFFFFFF, "ffffffff"),
    (xdr.Hyper, -1, "ffffffffffffffff"),
    (xdr.UHyper, 8796093022207, "000007ffffffffff"),
    (xdr.Double, 1.5, "3ff8000000000000"),
    (xdr.Bool, True, "00000001"),
    (xdr.Char, -1, "ffffffff"),  # chars are 4 bytes, sign-extended
    (xdr.UChar, 255, "000000ff"),
    (xdr.Short, -2, "fffffffe"),
    (xdr.UShort, 65535, "0000ffff"),
])
def test_scalar_encodings(t, value, hexbytes):
    data, back = roundtrip(t, value)
    assert data.hex() == hexbytes
    assert back == value


@pytest.mark.parametrize("t, bad", [
    (xdr.Int, 2**31), (xdr.UInt, -1), (xdr.Hyper, 2**63), (xdr.UHyper, -1),
    (xdr.Char, 128), (xdr.UChar, 256), (xdr.UChar, -1), (xdr.Short, 40000), (xdr.UShort, 65536),
    (xdr.Int, "1"), (xdr.Double, "x"),
])
def test_scalar_out_of_range_is_refused(t, bad):
    with pytest.raises(XDRError):
        t.encode(bad)


@pytest.mark.parametrize("t, wire", [(xdr.UChar, 256), (xdr.UShort, 70000), (xdr.Char, 300)])
def test_narrow_scalar_decode_checks_range(t, wire):
    with pytest.raises(XDRError, match="out of range"):
        t.decode(struct.pack(">i", wire))


@given(st.integers(-2**31, 2**31 - 1), st.integers(0, 2**64 - 1),
       st.floats(allow_nan=False), st.integers(-128, 127))
def test_scalars_roundtrip(i, uh, d, c):
    s = xdr.Struct("s", [("i", xdr.Int), ("uh", xdr.UHyper), ("d", xdr.Double), ("c", xdr.Char)])
    _, back = roundtrip(s, (i, uh, d, c))
    assert back[:2] == (i, uh) and back[3] == c
    assert back[2] == d or (math.isnan(back[2]) and math.isnan(d))


def test_bool_decodes_any_nonzero_as_true():
    assert xdr.Bool.decode(b"\0\0\0\x07") is True
    assert xdr.Bool.decode(b"\0\0\0\0") is False


# --- strings and opaque ------------------------------------------------------------


def test_string_is_length_bytes_and_zero_pad():
    assert xdr.NonnullString.encode("abcde").hex() == "00000005" + "6162636465" + "000000"
    assert xdr.NonnullString.encode("").hex() == "00000000"
    assert xdr.NonnullString.encode("abcd").hex() == "00000004" + "61626364"


def test_string_length_counts_utf8_bytes():
    data, back = roundtrip(xdr.NonnullString, "é")
    assert data[:4] == b"\0\0\0\x02" and back == "é"


def test_optional_string():
    assert xdr.OptString.encode(None).hex() == "00000000"
    assert xdr.OptString.encode("qemu:///system").hex() == (
        "00000001" "0000000e" + b"qemu:///system".hex() + "0000")
    assert xdr.OptString.decode(b"\0\0\0\0") is None


def test_string_limit_enforced_both_ways():
    t = xdr.String(4)
    assert t.decode(t.encode("abcd")) == "abcd"
    with pytest.raises(XDRLimitError, match="exceeds maximum 4"):
        t.encode("abcde")
    with pytest.raises(XDRLimitError):
        t.decode(b"\0\0\0\x05abcde\0\0\0")


def test_string_limit_checked_before_reading_body():
    # A huge declared length must fail on the limit, not try to read 4 GiB.
    with pytest.raises(XDRLimitError):
        xdr.NonnullString.decode(b"\xff\xff\xff\xff")


def test_invalid_utf8_is_an_xdr_error():
    with pytest.raises(XDRError, match="UTF-8"):
        xdr.NonnullString.decode(b"\0\0\0\x02\xff\xfe\0\0")


def test_opaque_and_fixed_opaque():
    assert xdr.Opaque(10).encode(b"\x01\x02\x03").hex() == "00000003" "010203" "00"
    assert xdr.UUID.encode(UUID1) == UUID1
    odd = xdr.FixedOpaque(5)
    data, back = roundtrip(odd, b"12345")
    assert data == b"12345\0\0\0" and back == b"12345"
    with pytest.raises(XDRError, match="exactly 16 bytes"):
        xdr.UUID.encode(b"short")
    with pytest.raises(XDRLimitError):
        xdr.Opaque(2).encode(b"abc")


def test_missing_pad_is_truncation():
    with pytest.raises(XDRTruncatedError):
        xdr.NonnullString.decode(b"\0\0\0\x01a")


# --- chars -------------------------------------------------------------------------


def test_fixed_char_string_is_four_bytes_per_char():
    model = xdr.CharString(32, fixed=True)
    data = model.encode("x86_64")
    assert len(data) == 128
    assert data[:8] == b"\0\0\0x\0\0\0\x38"
    assert data[24:] == b"\0" * 104
    assert model.decode(data) == "x86_64"
    with pytest.raises(XDRLimitError):
        model.encode("x" * 32)  # no room for the NUL


def test_variable_char_string_counts_the_nul():
    label = xdr.CharString(xdr.SECURITY_LABEL_MAX)
    data = label.encode("none")
    assert data[:4] == b"\0\0\0\x05" and len(data) == 4 + 5 * 4
    assert label.decode(data) == "none"
    assert label.decode(b"\0\0\0\0") == ""
    with pytest.raises(XDRLimitError):
        xdr.CharString(4).encode("abcd")


def test_char_array_sign_extends_high_bytes():
    t = xdr.CharArray(16)
    data, back = roundtrip(t, bytes([0, 0x7F, 0x80, 0xFF]))
    assert data.hex() == "00000004" "00000000" "0000007f" "ffffff80" "ffffffff"
    assert back == bytes([0, 0x7F, 0x80, 0xFF])
    with pytest.raises(XDRLimitError):
        t.decode(b"\0\0\0\x11" + b"\0" * 68)


# --- arrays, optionals, unions, structs --------------------------------------------------


def test_arrays():
    ints = xdr.Array(xdr.Int, 3)
    assert ints.encode([1, -1]).hex() == "00000002" "00000001" "ffffffff"
    assert ints.decode(ints.encode([1, 2, 3])) == [1, 2, 3]
    with pytest.raises(XDRLimitError):
        ints.encode([1, 2, 3, 4])
    with pytest.raises(XDRLimitError):
        ints.decode(b"\0\0\0\x04" + b"\0" * 16)
    names = xdr.Array(xdr.NonnullString, 2)
    assert names.decode(names.encode(("a", "bc"))) == ["a", "bc"]
    with pytest.raises(XDRLimitError):
        names.encode(["a", "b", "c"])


def test_array_count_larger_than_input_fails_fast():
    names = xdr.Array(xdr.NonnullString, 16384)
    with pytest.raises(XDRTruncatedError):
        names.decode(b"\0\0\x40\0")


def test_fixed_array():
    t = xdr.FixedArray(xdr.UHyper, 2)
    data, back = roundtrip(t, [1, 2])
    assert len(data) == 16 and back == [1, 2]
    with pytest.raises(XDRError, match="exactly 2"):
        t.encode([1])


def test_optional_flag_must_be_0_or_1():
    with pytest.raises(XDRError, match="0 or 1"):
        xdr.Domain.decode(b"\0\0\0\x02")


def test_union():
    u = xdr.Union("u", {1: xdr.Int, 2: xdr.NonnullString, 3: None})
    assert u.decode(u.encode((2, "x"))) == (2, "x")
    assert u.encode((3, None)).hex() == "00000003"
    with pytest.raises(XDRError, match="discriminant"):
        u.encode((9, 1))
    with pytest.raises(XDRError, match="discriminant"):
        u.decode(b"\0\0\0\x09")


def test_struct_is_a_tuple_and_checks_arity():
    s = xdr.Struct("pair", [("a", xdr.Int), ("b", xdr.NonnullString)])
    assert s.decode(s.encode([1, "x"])) == (1, "x")
    assert s.as_dict((1, "x")) == {"a": 1, "b": "x"}
    with pytest.raises(XDRError, match="pair"):
        s.encode((1,))
    with pytest.raises(XDRError):
        s.encode(None)


def test_struct_value_convention():
    one = xdr.Struct("one", [("a", xdr.UHyper)])
    two = xdr.Struct("two", [("a", xdr.Int), ("b", xdr.Int)])
    none = xdr.Struct("none", [])
    assert one.encode_value(5) == one.encode((5,))
    assert one.decode_value(one.encode((5,))) == 5
    assert two.decode_value(two.encode_value((1, 2))) == (1, 2)
    assert none.encode_value(None) == b"" and none.decode_value(b"") is None


def test_unpack_from_offset_and_buffer_kinds():
    s = xdr.Struct("s", [("a", xdr.NonnullString), ("b", xdr.Int)])
    data = b"XXXX" + s.encode(("hello", 7))
    assert s.unpack_from(data, 4) == (("hello", 7), len(data))
    for buf in (bytearray(data), memoryview(data)):
        assert s.unpack_from(buf, 4)[0] == ("hello", 7)
    assert s.decode(s.encode(("x", 1)) + b"trailing") == ("x", 1)


def test_every_truncation_is_reported_as_such():
    s = xdr.Struct("s", [
        ("dom", xdr.NonnullDomain), ("names", xdr.Array(xdr.NonnullString, 8)),
        ("opt", xdr.Domain), ("tp", xdr.TypedParams(8)), ("c", xdr.CharArray(8)),
        ("u", xdr.FixedOpaque(5)),
    ])
    dom = DomainRef("vm", UUID1, 3)
    data = s.encode((dom, ["a", "bcd"], dom, [("x", 7, "yz"), ("d", 5, 0.5)], b"ab", b"12345"))
    assert s.decode(data)[0] == dom
    for cut in range(len(data)):
        with pytest.raises(XDRTruncatedError):
            s.decode(data[:cut])


# --- libvirt types ---------------------------------------------------------------


def test_nonnull_domain_decodes_to_domainref():
    dom = DomainRef("guest", UUID1, -1)
    data = xdr.NonnullDomain.encode(dom)
    assert data.hex() == "00000005" + b"guest".hex() + "000000" + UUID1.hex() + "ffffffff"
    back = xdr.NonnullDomain.decode(data)
    assert isinstance(back, DomainRef) and back == dom
    assert xdr.NonnullDomain.decode(bytearray(data)) == dom  # served from the cache
    with pytest.raises(XDRError):
        xdr.NonnullDomain.encode(("guest", UUID1, -1))  # needs attributes


def test_domain_cache_is_bounded():
    cache = xdr.NonnullDomain.cache
    for n in range(xdr.NonnullDomain.CACHE_SIZE + 10):
        xdr.NonnullDomain.decode(xdr.NonnullDomain.encode(DomainRef(f"d{n}", UUID1, n)))
    assert len(cache) <= xdr.NonnullDomain.CACHE_SIZE


def test_domain_cache_keeps_only_short_names():
    """Any client may send 4 MiB names: those are decoded, never kept."""
    cache = xdr.NonnullDomain.cache
    for name, kept in (("s" * xdr.NonnullDomain.CACHED_NAME_MAX, True),
                       ("l" * (xdr.NonnullDomain.CACHED_NAME_MAX + 1), False), ("h" * (1 << 20), False)):
        cache.clear()
        dom = DomainRef(name, UUID1, 3)
        assert xdr.NonnullDomain.decode(xdr.NonnullDomain.encode(dom)) == dom
        assert len(cache) == kept, len(name)


def test_typed_params():
    params = [("i", 1, -5), ("ui", 2, 5), ("l", 3, -(1 << 40)), ("ul", 4, 1 << 63),
              ("d", 5, 2.5), ("b", 6, True), ("s", 7, "text")]
    t = xdr.TypedParams(64)
    _, back = roundtrip(t, params)
    assert back == params
    assert xdr.TypedParam.encode(("b", 6, False)).hex() == "00000001" "62000000" "00000006" "00000000"
    with pytest.raises(XDRLimitError):
        xdr.TypedParam.encode(("x" * 80, 1, 0))  # names are at most 79 bytes
    with pytest.raises(XDRError, match="discriminant"):
        xdr.TypedParam.encode(("x", 8, 0))


def test_remote_error_roundtrip():
    err = error(ErrorNumber.NO_DOMAIN, ErrorDomain.QEMU, "no domain with matching name 'x'")
    back = xdr.decode_error(xdr.encode_error(err))
    assert isinstance(back, libvirtError)
    assert back.err == err.err
    assert str(back) == "Domain not found: no domain with matching name 'x'"


def test_remote_error_always_encodes():
    """An error reply must never fail to encode (the call would go unanswered): texts
    over the 4 MiB string limit are cut with an ellipsis, never inside a character."""
    huge = "é" * xdr.STRING_MAX
    err = libvirtError(huge, ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, str1=huge, str2="x\udcff", int1=2**40)
    back = xdr.decode_error(xdr.encode_error(err))
    for text in (back.get_error_message(), back.get_str1()):
        assert text.endswith(xdr.ELLIPSIS) and text[:-len(xdr.ELLIPSIS)] == "é" * len(text[:-len(xdr.ELLIPSIS)])
        assert xdr.STRING_MAX - 1 <= len(text.encode()) <= xdr.STRING_MAX
    assert back.get_str2() == "x\\udcff"          # a lone surrogate escaped, not an encode error
    assert (back.get_error_code(), back.get_error_domain(), back.get_int1()) == \
        (ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, -1)
    small = error(ErrorNumber.RPC, ErrorDomain.RPC, "short")
    assert xdr.decode_error(xdr.encode_error(small)).err == small.err


def test_remote_error_with_null_message_and_domain():
    wire = (1, 7, None, 2, DomainRef("vm", UUID1, 1), None, None, None, -1, -1, NetworkRef("net", UUID1))
    err = xdr.error_from_wire(xdr.RemoteError.decode(xdr.RemoteError.encode(wire)))
    assert err.get_error_code() == 1 and err.get_error_domain() == 7
    assert err.get_error_message()


@settings(max_examples=50)
@given(st.lists(st.tuples(st.text(max_size=10), st.binary(min_size=16, max_size=16),
                          st.integers(-2**31, 2**31 - 1)), max_size=5))
def test_domain_lists_roundtrip(items):
    t = xdr.Array(xdr.NonnullDomain, xdr.DOMAIN_LIST_MAX)
    doms = [DomainRef(*item) for item in items]
    assert t.decode(t.encode(doms)) == doms
