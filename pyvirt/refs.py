"""Handles of objects as they travel between layers: a leaf, importing nothing of pyvirt.

The RPC codec decodes ``remote_nonnull_domain`` into a :class:`DomainRef`,
drivers receive and return them, the public API wraps them: each layer may
use these without depending on another.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DomainRef:
    """A domain handle as it travels: name, raw 16-byte UUID, id (-1 if inactive)."""

    name: str
    uuid: bytes
    id: int = -1

    def __post_init__(self) -> None:
        if len(self.uuid) != 16:
            raise ValueError(f"domain uuid must be 16 bytes, got {len(self.uuid)}")

    @property
    def uuid_string(self) -> str:
        return format_uuid(self.uuid)


__all__ = ["DomainRef"]


def format_uuid(raw: bytes) -> str:
    """16 bytes as libvirt prints a UUID (8-4-4-4-12 hex digits), without the
    ``uuid`` module, which loads ``platform`` at import: one-shot CLI calls use this."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
