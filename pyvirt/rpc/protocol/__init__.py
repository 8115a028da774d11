"""The RPC programs as tables: one :class:`Procedure` record per procedure.

Each program module (:mod:`.remote`, :mod:`.qemu`, :mod:`.keepalive`)
declares its procedures as data: number, name, the driver method that
implements it, the XDR structs of its arguments and reply, and the facts
the daemon needs to dispatch it (priority, whether a read-only connection
is refused, who answers it, whether it opens a stream).

Calling convention (shared with :mod:`pyvirt.driver`)::

    proc = REMOTE[212]                      # or REMOTE.by_name["DOMAIN_GET_STATE"]
    args = proc.decode_args(payload)        # tuple in wire order
    result = await getattr(conn, proc.method)(*args)
    reply = proc.encode_ret(result)         # None / bare value / tuple, as the driver returns

and the client side mirrors it with ``encode_args(args_tuple)`` and
``decode_ret(payload)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from enum import Enum

from ..direction import Direction
from ..xdr import Struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


class Kind(Enum):
    """Who answers a procedure."""

    DRIVER = "driver"
    """A CALL the daemon forwards to ``getattr(conn, method)(*args)``."""
    DAEMON = "daemon"
    """A CALL the daemon answers itself (auth, open/close, features, event registration)."""
    MESSAGE = "message"
    """A one-way MESSAGE (events, keepalive); never arrives as a CALL."""


def _no_args(buf: Any = b"") -> tuple[()]:
    return ()


def _empty(value: Any = None) -> bytes:
    return b""


def _none(buf: Any = b"") -> None:
    return None


# attribute -> (struct attribute, compiled kind, fallback when the struct is void)
_CODECS: dict[str, tuple[str, str, Callable[..., Any]]] = {
    "decode_args": ("args", "decode", _no_args),
    "encode_args": ("args", "encode", _empty),
    "decode_ret": ("ret", "decode_value", _none),
    "encode_ret": ("ret", "encode_value", _empty),
}


class Procedure:
    """One procedure of a program.

    ``args`` decodes to a tuple in wire order (``()`` when void);
    ``encode_ret``/``decode_ret`` use the driver convention: None when the
    reply is void, the bare value for one field, a tuple for several.
    The four codec attributes are compiled on first use.
    """

    decode_args: Callable[[Any], tuple[Any, ...]]
    encode_args: Callable[[Any], bytes]
    decode_ret: Callable[[Any], Any]
    encode_ret: Callable[[Any], bytes]

    def __init__(self, number: int, name: str, method: str | None, args: Struct | None,
                 ret: Struct | None, *, priority_high: bool = False, mutates: bool = False,
                 kind: Kind = Kind.DRIVER, stream: Direction | None = None,
                 readonly_flags: int = 0) -> None:
        self.number = number
        self.name = name
        self.method = method
        self.args = args
        self.ret = ret
        self.priority_high = priority_high
        self.mutates = mutates
        self.kind = kind
        self.stream = stream
        """Set when a successful reply opens a stream; the direction of its data."""
        self.readonly_flags = readonly_flags
        """Flags that make an otherwise read-only call refused on a read-only
        connection (libvirt checks them in the API, e.g. GET_XML_DESC's SECURE)."""
        self._flags_index = -1
        if readonly_flags:
            if args is None or "flags" not in args.names:
                raise ValueError(f"{name}: readonly_flags needs a 'flags' argument")
            self._flags_index = args.names.index("flags")

    def refused_read_only(self, args: tuple[Any, ...]) -> bool:
        """True if a read-only connection must not make this call with ``args``."""
        if self.mutates:
            return True
        return self._flags_index >= 0 and bool(args[self._flags_index] & self.readonly_flags)

    def __getattr__(self, attr: str) -> Any:
        spec = _CODECS.get(attr)
        if spec is None:
            raise AttributeError(attr)
        struct_attr, kind, fallback = spec
        t = self.__dict__[struct_attr]
        fn = fallback if t is None else t.compiled(kind)
        self.__dict__[attr] = fn
        return fn

    def __repr__(self) -> str:
        return f"<Procedure {self.number} {self.name} -> {self.method}>"


class ProgramTable:
    """The procedures of one program, indexed by number, name and method."""

    def __init__(self, number: int, name: str, procedures: Iterable[Procedure], version: int = 1) -> None:
        self.number = number
        self.name = name
        self.version = version
        self.procedures = tuple(sorted(procedures, key=lambda p: p.number))
        self.by_number: dict[int, Procedure] = {}
        self.by_name: dict[str, Procedure] = {}
        self.by_method: dict[str, Procedure] = {}
        for proc in self.procedures:
            for index, key in ((self.by_number, proc.number), (self.by_name, proc.name),
                               (self.by_method, proc.method)):
                if key is None:
                    continue
                if key in index:
                    raise ValueError(f"{name}: duplicate procedure key {key!r}")
                index[key] = proc  # type: ignore[index]

    def __getitem__(self, number: int) -> Procedure:
        return self.by_number[number]

    def get(self, number: int) -> Procedure | None:
        return self.by_number.get(number)

    def __contains__(self, number: object) -> bool:
        return number in self.by_number

    def __iter__(self) -> Iterator[Procedure]:
        return iter(self.procedures)

    def __len__(self) -> int:
        return len(self.procedures)

    def __repr__(self) -> str:
        return f"<ProgramTable {self.name} 0x{self.number:08x} ({len(self)} procedures)>"


DAEMON_METHODS: frozenset[str] = frozenset({
    # connection lifecycle and negotiation
    "connect_open", "connect_close", "connect_supports_feature",
    "connect_register_close_callback", "connect_unregister_close_callback",
    # authentication
    "auth_list", "auth_sasl_init", "auth_sasl_start", "auth_sasl_step", "auth_polkit",
    # event registration (the daemon owns callback ids and per-client queues)
    "connect_domain_event_register", "connect_domain_event_deregister",
    "connect_domain_event_register_any", "connect_domain_event_deregister_any",
    "connect_domain_event_callback_register_any", "connect_domain_event_callback_deregister_any",
    "connect_domain_qemu_monitor_event_register", "connect_domain_qemu_monitor_event_deregister",
    "connect_storage_pool_event_register_any", "connect_storage_pool_event_deregister_any",
    "connect_network_event_register_any", "connect_network_event_deregister_any",
    "connect_node_device_event_register_any", "connect_node_device_event_deregister_any",
})
"""Methods of Kind.DAEMON procedures: answered by the daemon, not by a driver."""


# The program modules import the classes above, so they load last.
from . import keepalive, qemu, remote  # noqa: E402

PROGRAMS: dict[int, ProgramTable] = {
    table.number: table for table in (remote.REMOTE, qemu.QEMU, keepalive.KEEPALIVE)
}
"""Program number -> table, for dispatching a received header."""

REMOTE = remote.REMOTE
QEMU = qemu.QEMU
KEEPALIVE = keepalive.KEEPALIVE

__all__ = ["Kind", "Procedure", "ProgramTable", "DAEMON_METHODS", "PROGRAMS",
           "REMOTE", "QEMU", "KEEPALIVE", "Direction"]
