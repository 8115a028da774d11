"""libvirt-python's methods for lifecycle and metadata (reset, metadata, title and description),
and the shapes of its event callbacks.

:func:`callback_arguments` turns a driver event's ``detail`` (the wire
fields after ``dom``, see :class:`pyvirt.driver.DomainEvent`) into the
arguments libvirt-python passes its callbacks between ``dom`` and
``opaque``: graphics addresses as dicts, typed parameters as a dict, the
rest as on the wire.
"""

from __future__ import annotations

from collections.abc import Callable

from ..enums import EventID
from ..errors import ErrorDomain, ErrorNumber, error
from ..typedparams import to_dict

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


def _graphics_address(address: Any) -> dict[str, Any]:
    family, node, service = address
    return {"family": family, "node": node, "service": service}


def callback_arguments(event_id: int, detail: tuple[Any, ...]) -> tuple[Any, ...]:
    """What libvirt-python's callback for ``event_id`` gets between ``dom`` and ``opaque``."""
    if event_id == EventID.GRAPHICS:
        phase, local, remote, scheme, subject = detail
        return (phase, _graphics_address(local), _graphics_address(remote), scheme,
                [tuple(item) for item in subject])
    if event_id in (EventID.TUNABLE, EventID.JOB_COMPLETED):
        return (to_dict(detail[0]),)
    return tuple(detail)


class DomainLifecycleAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference

    def reset(self, flags: int = 0) -> int:
        self._call("domain_reset", flags)
        return 0

    def setMetadata(self, type: int, metadata: str | None, key: str | None, uri: str | None,
                    flags: int = 0) -> int:
        self._call("domain_set_metadata", type, metadata, key, uri, flags)
        return 0

    def metadata(self, type: int, uri: str | None, flags: int = 0) -> str:
        return self._call("domain_get_metadata", type, uri, flags)


class ConnectLifecycleAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through
    domainEventRegisterAny: Callable[..., int]
    domainEventDeregisterAny: Callable[..., int]
    _legacy_callbacks: dict[Any, int]

    def domainEventRegister(self, cb: Callable[..., Any], opaque: Any) -> int:
        """libvirt's old lifecycle-only registration: ``cb(conn, dom, event, detail, opaque)``."""
        legacy = self.__dict__.setdefault("_legacy_callbacks", {})
        if cb in legacy:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NONE, "event callback already tracked")
        legacy[cb] = self.domainEventRegisterAny(None, int(EventID.LIFECYCLE), cb, opaque)
        return 0

    def domainEventDeregister(self, cb: Callable[..., Any]) -> int:
        legacy = self.__dict__.setdefault("_legacy_callbacks", {})
        callback_id = legacy.pop(cb, None)
        if callback_id is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, "could not find event callback for deletion")
        self.domainEventDeregisterAny(callback_id)
        return 0
