"""Domain events from the drivers to the clients that registered for them.

A client registers in one of two forms, as with libvirtd:

* the callback form (CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, clients that
  saw feature REMOTE_EVENT_CALLBACK): each registration has its own callback
  id and optional domain filter, and each event goes out as the
  DOMAIN_EVENT_CALLBACK_<NAME> message carrying that id;
* the legacy form (CONNECT_DOMAIN_EVENT_REGISTER / REGISTER_ANY): one
  registration per event id and client, events go out as the bare
  DOMAIN_EVENT_<NAME> message.  libvirt defined that form for the ids up to
  DEVICE_REMOVED only; later ids are refused there, as libvirtd refuses them.

A driver's :class:`~pyvirt.driver.DomainEvent` carries the message's fields
after ``dom`` (see its docstring), so encoding is the same for every id: the
message's own layout says where the callback id, the reason and the nested
msg go.

Storage pool, network and node-device events (:class:`~pyvirt.driver_storage.PoolEvent`,
:class:`~pyvirt.driver_network.NetworkEvent`, :class:`~pyvirt.driver_nodedev.NodeDeviceEvent`,
from the host-wide buses of the connection's storage and network drivers and of
its node devices) have the callback form only, as in libvirt: each registration
has its id and optional object filter.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..driver import DomainEvent
from ..enums import EventID
from ..errors import ErrorDomain, ErrorNumber, error, no_support
from ..rpc import wire
from ..rpc.protocol import REMOTE, Procedure
from ..rpc.protocol.remote import EVENT_CALLBACK_PROCEDURES
from ..rpc.protocol.remote_lifecycle import callback_event_args, legacy_event_args
from ..rpc.protocol.remote_object_events import EVENT_MESSAGES, KIND_NAMES, OBJECT_KEYS
from ..rpc.wire import Program

LAST_LEGACY_ID = EventID.DEVICE_REMOVED
"""The newest id libvirt's legacy REGISTER_ANY accepts."""

LEGACY_PROCEDURES: dict[int, Procedure] = {
    EventID.LIFECYCLE: REMOTE.by_name["DOMAIN_EVENT_LIFECYCLE"],
    **{eid: REMOTE.by_name[f"DOMAIN_EVENT_{eid.name}"]
       for eid in EventID if EventID.LIFECYCLE < eid <= LAST_LEGACY_ID},
}
"""Event id -> its legacy MESSAGE (the callback form's msg struct, sent bare)."""


def check_callback_id(event_id: int) -> None:
    """CALLBACK_REGISTER_ANY's check (libvirtd: INTERNAL_ERROR, 'unsupported event ID')."""
    if event_id not in EVENT_CALLBACK_PROCEDURES:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC, f"unsupported event ID {event_id}")


def check_legacy_id(event_id: int, registered: Iterable[int]) -> None:
    """REGISTER_ANY's checks: a legacy id, not registered yet by this client."""
    if event_id not in LEGACY_PROCEDURES:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC, f"unsupported event ID {event_id}")
    if event_id in registered:     # libvirtd 9.0's answer (its event list refuses the double)
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, "event callback already tracked")


def legacy_packet(event: DomainEvent) -> bytes | None:
    """The legacy message for ``event``, or None for an id without one."""
    proc = LEGACY_PROCEDURES.get(event.event_id)
    if proc is None:
        return None
    args = legacy_event_args(proc, event.dom, event.detail)
    return wire.encode_event(Program.REMOTE, proc.number, proc.encode_args(args))


def callback_packet(callback_id: int, event: DomainEvent) -> bytes | None:
    """The callback-form message for ``event`` addressed to ``callback_id``."""
    proc = EVENT_CALLBACK_PROCEDURES.get(event.event_id)   # type: ignore[call-overload]
    if proc is None:
        return None
    args = callback_event_args(proc, callback_id, event.dom, event.detail)
    return wire.encode_event(Program.REMOTE, proc.number, proc.encode_args(args))


def deliver(client: Any, legacy_events: set[int], callbacks: dict[int, tuple[int, bytes | None]],
            event: DomainEvent) -> None:
    """Send ``event`` to ``client`` in each form it registered for it.

    An event whose payload does not encode (a driver bug) is dropped with the
    error logged by the caller's bus: it must never take the client down."""
    if event.event_id in legacy_events:
        packet = legacy_packet(event)
        if packet is not None:
            client.send(packet)
    for cb, (event_id, uuid) in callbacks.items():
        if event_id == event.event_id and (uuid is None or uuid == event.dom.uuid):
            packet = callback_packet(cb, event)
            if packet is not None:
                client.send(packet)


# -- storage pool and network events (one form: the callback one) ----------------

def object_bus(conn: Any, kind: str) -> Any:
    """The host-wide bus of ``conn``'s storage pool, network or node-device events,
    or libvirt's NO_SUPPORT when the connection has none."""
    if conn is None:
        raise no_support(ErrorDomain.NONE, f"{KIND_NAMES[kind]} events")
    return conn.object_event_bus(kind)


def object_key(kind: str, obj: Any) -> Any:
    """What a registration's object filter matches: a UUID, or a node device's name."""
    return getattr(obj, OBJECT_KEYS[kind][1])


def check_object_event_id(kind: str, event_id: int) -> None:
    """libvirtd's check: INTERNAL_ERROR 'unsupported storage pool event ID N'."""
    if event_id not in EVENT_MESSAGES[kind]:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC,
                    f"unsupported {KIND_NAMES[kind]} event ID {event_id}")


def object_event_not_registered(kind: str, callback_id: int) -> Exception:
    return error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC,
                 f"{KIND_NAMES[kind]} event callback {callback_id} not registered")


def deliver_object_event(client: Any, kind: str, callbacks: dict[int, tuple[str, int, Any]],
                         event: Any) -> None:
    """Send a PoolEvent / NetworkEvent / NodeDeviceEvent to each of ``client``'s
    registrations that wants it."""
    proc = EVENT_MESSAGES[kind].get(event.event_id)
    if proc is None:
        return
    obj = getattr(event, OBJECT_KEYS[kind][0])
    key = object_key(kind, obj)
    for cb, (cb_kind, event_id, want) in callbacks.items():
        if cb_kind == kind and event_id == event.event_id and (want is None or want == key):
            payload = proc.encode_args((cb, obj, *event.detail))
            client.send(wire.encode_event(Program.REMOTE, proc.number, payload))
