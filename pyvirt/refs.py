"""Handles of objects as they travel between layers: a leaf, importing nothing of pyvirt.

The RPC codec decodes ``remote_nonnull_domain`` into a :class:`DomainRef`,
drivers receive and return them, the public API wraps them: each layer may
use these without depending on another.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any



class Record:
    """A plain record: ``__init__`` by the subclass, equality, hash (for the
    frozen ones) and repr over ``_fields`` — what ``@dataclass`` would write.
    Hand-made because importing :mod:`dataclasses` (and :mod:`inspect`, which
    it needs) costs every command-line call more than its work."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _hidden: tuple[str, ...] = ()     # left out of repr (callbacks, credentials)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()    # type: ignore[attr-defined]

    __hash__ = None        # type: ignore[assignment]  # mutable records, as dataclasses'

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields if name not in self._hidden)
        return f"{type(self).__name__}({shown})"


class FrozenRecord(Record):
    """A record whose fields cannot change after ``__init__`` (set them with
    :meth:`_set`); hashable, copyable and picklable by its fields."""

    __slots__ = ()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:      # type: ignore[override]
        return hash(self._values())

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), self._values()


class DomainRef(FrozenRecord):
    """A domain handle as it travels: name, raw 16-byte UUID, id (-1 if inactive)."""

    __slots__ = ("name", "uuid", "id")
    _fields = __match_args__ = ("name", "uuid", "id")
    name: str
    uuid: bytes
    id: int

    def __init__(self, name: str, uuid: bytes, id: int = -1) -> None:
        if len(uuid) != 16:
            raise ValueError(f"domain uuid must be 16 bytes, got {len(uuid)}")
        self._set(name=name, uuid=uuid, id=id)

    @property
    def uuid_string(self) -> str:
        return format_uuid(self.uuid)


class _NameUUIDRef(FrozenRecord):
    """A handle that travels as a name and a raw 16-byte UUID (networks, storage pools)."""

    __slots__ = ("name", "uuid")
    _fields = __match_args__ = ("name", "uuid")
    name: str
    uuid: bytes

    def __init__(self, name: str, uuid: bytes) -> None:
        self._set(name=name, uuid=uuid)

    @property
    def uuid_string(self) -> str:
        return format_uuid(self.uuid)


class NetworkRef(_NameUUIDRef):
    """A virtual network handle as it travels (``remote_nonnull_network``)."""

    __slots__ = ()


class StoragePoolRef(_NameUUIDRef):
    """A storage pool handle (``remote_nonnull_storage_pool``)."""

    __slots__ = ()


class StorageVolRef(FrozenRecord):
    """A storage volume handle (``remote_nonnull_storage_vol``): pool name, volume name, key."""

    __slots__ = ("pool", "name", "key")
    _fields = __match_args__ = ("pool", "name", "key")
    pool: str
    name: str
    key: str

    def __init__(self, pool: str, name: str, key: str) -> None:
        self._set(pool=pool, name=name, key=key)


class InterfaceRef(FrozenRecord):
    """A host interface handle (``remote_nonnull_interface``): name and MAC address."""

    __slots__ = ("name", "mac")
    _fields = __match_args__ = ("name", "mac")
    name: str
    mac: str

    def __init__(self, name: str, mac: str) -> None:
        self._set(name=name, mac=mac)


class NodeDeviceRef(FrozenRecord):
    """A node device handle (``remote_nonnull_node_device``): its name."""

    __slots__ = ("name",)
    _fields = __match_args__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        self._set(name=name)


class DomainSnapshotRef(FrozenRecord):
    """A snapshot handle (``remote_nonnull_domain_snapshot``): its name and its domain."""

    __slots__ = ("name", "dom")
    _fields = __match_args__ = ("name", "dom")
    name: str
    dom: DomainRef

    def __init__(self, name: str, dom: DomainRef) -> None:
        self._set(name=name, dom=dom)


class DomainCheckpointRef(FrozenRecord):
    """A checkpoint handle (``remote_nonnull_domain_checkpoint``): its name and its domain."""

    __slots__ = ("name", "dom")
    _fields = __match_args__ = ("name", "dom")
    name: str
    dom: DomainRef

    def __init__(self, name: str, dom: DomainRef) -> None:
        self._set(name=name, dom=dom)


__all__ = ["DomainRef", "NetworkRef", "StoragePoolRef", "StorageVolRef", "DomainSnapshotRef",
           "DomainCheckpointRef"]


def format_uuid(raw: bytes) -> str:
    """16 bytes as libvirt prints a UUID (8-4-4-4-12 hex digits), without the
    ``uuid`` module, which loads ``platform`` at import: one-shot CLI calls use this."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
