"""libvirt's memory units, scaled to KiB.

Domain XML writes sizes as ``<memory unit='MiB'>512</memory>``.  libvirt's
rules (``virScaleInteger``):

* no unit means the element's default, KiB for memory;
* ``b``, ``byte`` and ``bytes`` are bytes;
* a prefix letter ``k m g t p e`` (any case) alone or followed by ``iB`` is a
  power of 1024 (``k``, ``KiB``, ``M``, ``MiB``); followed by ``B`` it is a
  power of 1000 (``KB``, ``MB``).

Sizes are stored as KiB integers, as libvirt stores them; a byte count that
is not a whole number of KiB rounds up, as libvirt's parser does.  Bad input
raises :class:`UnitError` (a ``ValueError``); the XML layer turns it into the
libvirt error that names the element.
"""

from __future__ import annotations

__all__ = ["UnitError", "scale", "to_kib", "parse_kib", "DEFAULT_UNIT", "KNOWN_UNITS"]

DEFAULT_UNIT = "KiB"

# Prefix letter -> power of the base.
_POWERS: dict[str, int] = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
# Suffix after the prefix letter (lower-cased) -> base.
_BASES: dict[str, int] = {"": 1024, "ib": 1024, "b": 1000}
_BYTES = frozenset({"b", "byte", "bytes"})

# Sizes travel as unsigned 64-bit byte counts (QEMU and the RPC protocol).
_MAX_BYTES = 2**64 - 1

# For error messages only: the spellings users write.
KNOWN_UNITS = ("b", "bytes", "k", "KB", "KiB", "M", "MB", "MiB", "G", "GB", "GiB",
               "T", "TB", "TiB", "P", "PB", "PiB", "E", "EB", "EiB")


class UnitError(ValueError):
    """A size or unit that libvirt would reject; the message says which."""


def scale(unit: str | None, default: str = DEFAULT_UNIT) -> int:
    """Bytes per ``unit``; ``None`` or ``''`` means ``default``."""
    name = unit or default
    low = name.lower()
    if low in _BYTES:
        return 1
    power = _POWERS.get(low[:1])
    base = _BASES.get(low[1:])
    if power is None or base is None:
        raise UnitError(f"unknown unit '{name}' (known units: {', '.join(KNOWN_UNITS)})")
    return base**power


def to_kib(value: int, unit: str | None, default: str = DEFAULT_UNIT) -> int:
    """``value`` ``unit``s in KiB, rounded up to a whole KiB."""
    if value < 0:
        raise UnitError(f"negative size {value}")
    nbytes = value * scale(unit, default)
    if nbytes > _MAX_BYTES:
        raise UnitError(f"size {value} {unit or default} is too large")
    return -(-nbytes // 1024)


def parse_kib(text: str | None, unit: str | None, default: str = DEFAULT_UNIT) -> int:
    """Parse an element's text (a non-negative decimal integer) as KiB."""
    raw = (text or "").strip()
    # int() would also take '+5', '1_000' and non-ASCII digits; libvirt does not.
    if not raw.isascii() or not raw.isdigit():
        raise UnitError(f"invalid size '{raw}': expected a non-negative integer")
    return to_kib(int(raw), unit, default)
