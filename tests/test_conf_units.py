"""pyvirt.conf.units: libvirt's memory units scaled to KiB."""

from __future__ import annotations

import pytest

from pyvirt.conf.units import KNOWN_UNITS, UnitError, parse_kib, scale, to_kib


@pytest.mark.parametrize("unit, factor", [
    ("b", 1), ("byte", 1), ("bytes", 1), ("B", 1),
    ("k", 1024), ("K", 1024), ("KiB", 1024), ("kib", 1024), ("KB", 1000), ("kb", 1000),
    ("M", 1024**2), ("MiB", 1024**2), ("MB", 1000**2),
    ("G", 1024**3), ("GiB", 1024**3), ("GB", 1000**3),
    ("T", 1024**4), ("TiB", 1024**4), ("TB", 1000**4),
    ("P", 1024**5), ("PB", 1000**5), ("E", 1024**6), ("EiB", 1024**6), ("EB", 1000**6),
])
def test_scale(unit, factor):
    assert scale(unit) == factor


def test_every_listed_unit_is_known():
    for unit in KNOWN_UNITS:
        assert scale(unit) >= 1


def test_default_unit_is_kib():
    assert scale(None) == scale("") == 1024
    assert to_kib(512, None) == 512
    assert scale(None, default="MiB") == 1024**2


@pytest.mark.parametrize("value, unit, kib", [
    (0, "KiB", 0), (1, "b", 1), (1024, "b", 1), (1025, "bytes", 2),   # bytes round up, as libvirt does
    (1, "KB", 1), (1000, "KB", 977), (512, "MiB", 524288), (4, "GiB", 4194304), (1, "TB", 976562500),
])
def test_to_kib(value, unit, kib):
    assert to_kib(value, unit) == kib


@pytest.mark.parametrize("unit", ["XB", "KiBi", "Kb2", "iB", "kilobytes", "m b", "Mi"])
def test_unknown_unit_names_it(unit):
    with pytest.raises(UnitError, match=f"unknown unit '{unit}'"):
        scale(unit)


def test_unit_error_is_a_value_error():
    assert issubclass(UnitError, ValueError)


def test_too_large_and_negative():
    with pytest.raises(UnitError, match="too large"):
        to_kib(16, "EiB")
    assert to_kib(15, "EiB") == 15 * 1024**5
    with pytest.raises(UnitError, match="negative"):
        to_kib(-1, "KiB")


@pytest.mark.parametrize("text, unit, kib", [(" 2048\n", None, 2048), ("1", "GiB", 1048576)])
def test_parse_kib(text, unit, kib):
    assert parse_kib(text, unit) == kib


@pytest.mark.parametrize("text", ["", "-1", "1.5", "+4", "1_000", "0x10", "\u0661", None])
def test_parse_kib_rejects_non_integers(text):
    with pytest.raises(UnitError, match="invalid size"):
        parse_kib(text, "KiB")
