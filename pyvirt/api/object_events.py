"""libvirt-python's storage pool, network and node-device event registration on virConnect.

``storagePoolEventRegisterAny`` / ``networkEventRegisterAny`` /
``nodeDeviceEventRegisterAny`` call ``cb(conn, obj, *fields, opaque)`` for each
event, with the fields libvirt-python passes: LIFECYCLE ``(event, detail)``, a
pool's REFRESH and a node device's UPDATE none.  A registration for one object
matches pools and networks by UUID, node devices by name.  Callbacks run on
pyvirt's event thread, as domain event callbacks do.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from ..errors import ErrorDomain, ErrorNumber, error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

STORAGE, NETWORK, NODEDEV = "storage", "network", "nodedev"
# kind -> (the public API's name, how many event ids libvirt 9.0 has)
_APIS = {STORAGE: ("virConnectStoragePoolEventRegisterAny", 2),   # LIFECYCLE, REFRESH
         NETWORK: ("virConnectNetworkEventRegisterAny", 1),      # LIFECYCLE
         NODEDEV: ("virConnectNodeDeviceEventRegisterAny", 2)}   # LIFECYCLE, UPDATE
_callback_ids = itertools.count(1)


class ConnectObjectEventsAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _drv: Any
    _object_event_lock = threading.Lock()

    def _object_callbacks(self) -> dict[int, tuple[str, int]]:
        table = self.__dict__.get("_object_event_callbacks")
        if table is None:
            table = self.__dict__.setdefault("_object_event_callbacks", {})
        return table

    def _object_register(self, kind: str, obj: Any, event_id: int, cb: Callable[..., Any], opaque: Any) -> int:
        from .. import aio
        api, last = _APIS[kind]
        if self._drv.closed:
            raise error(ErrorNumber.INVALID_CONN, ErrorDomain.NONE, api)
        if event_id < 0:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"eventID in {api} must be non-negative")
        if event_id >= last:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"eventID in {api} must be less than {last}")
        wrap, field, key = self._object_kind(kind)
        want = key(obj) if obj is not None else None

        def deliver(event: Any) -> None:
            ref = getattr(event, field)
            if event.event_id != event_id or (want is not None and getattr(ref, "uuid", ref.name) != want):
                return
            cb(self, wrap(ref), *event.detail, opaque)

        token = aio.run(self._drv.object_events_subscribe(kind, deliver, event_id))
        with self._object_event_lock:
            callbacks = self._object_callbacks()
            cb_id = next(_callback_ids)
            callbacks[cb_id] = (kind, token)
        return cb_id

    def _object_kind(self, kind: str) -> tuple[Callable[[Any], Any], str, Callable[[Any], Any]]:
        """How one kind is handed to a callback, where its event keeps the object, and
        the key a registration's filter compares (a UUID; a node device's name)."""
        if kind == NODEDEV:
            from .iface_nodedev import virNodeDevice
            return (lambda ref: virNodeDevice(self, ref)), "dev", lambda dev: dev.name()  # type: ignore[arg-type]
        if kind == STORAGE:
            return self._pool, "pool", lambda pool: pool.UUID()    # type: ignore[attr-defined]
        return self._network, "net", lambda net: net.UUID()         # type: ignore[attr-defined]

    def _object_deregister(self, kind: str, callback_id: int) -> None:
        with self._object_event_lock:
            callbacks = self._object_callbacks()
            entry = callbacks.get(callback_id)
            if entry is None or entry[0] != kind:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                            f"could not find event callback {callback_id} for deletion")
            del callbacks[callback_id]
        self._drv.object_events_unsubscribe(kind, entry[1])

    def storagePoolEventRegisterAny(self, pool: Any, eventID: int, cb: Callable[..., Any], opaque: Any) -> int:
        return self._object_register(STORAGE, pool, eventID, cb, opaque)

    def storagePoolEventDeregisterAny(self, callbackID: int) -> None:
        self._object_deregister(STORAGE, callbackID)

    def networkEventRegisterAny(self, net: Any, eventID: int, cb: Callable[..., Any], opaque: Any) -> int:
        return self._object_register(NETWORK, net, eventID, cb, opaque)

    def networkEventDeregisterAny(self, callbackID: int) -> None:
        self._object_deregister(NETWORK, callbackID)

    def nodeDeviceEventRegisterAny(self, dev: Any, eventID: int, cb: Callable[..., Any], opaque: Any) -> int:
        return self._object_register(NODEDEV, dev, eventID, cb, opaque)

    def nodeDeviceEventDeregisterAny(self, callbackID: int) -> None:
        self._object_deregister(NODEDEV, callbackID)
