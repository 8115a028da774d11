"""The node-device events a driver emits (libvirt's virConnectNodeDeviceEventRegisterAny).

Node devices have no driver of their own in pyvirt: the connection that lists
them (the test driver's host) also carries the host-wide bus these events go
out on (``HypervisorConnection.node_device_events``).
"""

from __future__ import annotations

from typing import Any

from .enums_more import NodeDeviceEventID, NodeDeviceEventLifecycle
from .refs import FrozenRecord, NodeDeviceRef

EVENT_ID_LIFECYCLE, EVENT_ID_UPDATE = NodeDeviceEventID.LIFECYCLE, NodeDeviceEventID.UPDATE
CREATED, DELETED = NodeDeviceEventLifecycle.CREATED, NodeDeviceEventLifecycle.DELETED


class NodeDeviceEvent(FrozenRecord):
    """An event about a node device: ``event_id`` is VIR_NODE_DEVICE_EVENT_ID_*;
    ``detail`` is the message's fields after ``dev``: LIFECYCLE ``(event, detail)``,
    UPDATE ``()``."""

    __slots__ = ("event_id", "dev", "detail")
    _fields = __match_args__ = __slots__
    event_id: int
    dev: NodeDeviceRef
    detail: tuple[Any, ...]

    def __init__(self, event_id: int, dev: NodeDeviceRef, detail: tuple[Any, ...]) -> None:
        self._set(event_id=event_id, dev=dev, detail=detail)
