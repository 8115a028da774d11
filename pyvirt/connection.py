"""``virConnect``: libvirt-python's connection object over a pyvirt driver.

Each method forwards to the driver connection's coroutine of the same
procedure name (see :mod:`pyvirt.driver`) on the shared background loop.
Which driver serves a URI is decided here, as libvirt's ``virConnectOpen``
does: ``test:///default`` and ``qemu:///embed`` run in-process, a URI with a
host or transport (and ``qemu:///system``) goes to a daemon.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from . import aio, uri as urimod
from .driver import ConnectionInfo, DomainEvent, HypervisorConnection, check_access
from .enums import EventID
from .errors import ErrorDomain, ErrorNumber, error, libvirtError

from .api.console import ConnectConsoleAPI
from .api.cpu_files import ConnectCPUFilesAPI
from .api.devices import ConnectDevicesAPI
from .api.host import ConnectHostAPI
from .api.lifecycle import ConnectLifecycleAPI, callback_arguments
from .api.network import ConnectNetworkAPI
from .api.object_events import ConnectObjectEventsAPI
from .api.iface_nodedev import ConnectIfaceNodedevAPI
from .api.sched import ConnectSchedAPI
from .api.stats import ConnectStatsAPI
from .api.storage import ConnectStorageAPI
from .api.tuning import ConnectTuningAPI

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any
    from .domain import virDomain


async def _open_driver(text: str, read_only: bool, auth: Any = None) -> HypervisorConnection:
    parsed = urimod.parse(text)
    info = ConnectionInfo(uri=text, read_only=read_only, credentials=auth)   # auth: openAuth's
    if not parsed.is_remote:
        if parsed.driver == "test" and parsed.path in ("/default", ""):
            from .drivers.test import driver as test_driver
            return await test_driver.open_connection(info)
        if parsed.driver == "test" and parsed.path.startswith("/"):
            from .drivers.test import driver as test_driver     # a custom host file (test:///PATH)
            return await test_driver.open_path(parsed.path, info)
        if parsed.driver == "qemu" and parsed.path == "/embed":
            from .drivers.qemu import embed
            return await embed.open_connection(parsed, info, connector=_connect_peer)
    if parsed.driver in ("qemu", "test", "remote"):
        try:
            from .drivers.remote import driver as remote_driver
        except ImportError:
            remote_driver = None
        if remote_driver is not None:
            return await remote_driver.open_connection(parsed, info)
    raise error(ErrorNumber.NO_CONNECT, ErrorDomain.NONE, text)


async def _connect_peer(uri: str) -> HypervisorConnection:
    """How an embedded driver reaches another host (peer-to-peer migration)."""
    from .drivers.remote import driver as remote_driver
    return await remote_driver.open_connection(urimod.parse(uri), ConnectionInfo(uri=uri))


class virConnect(ConnectStatsAPI, ConnectHostAPI, ConnectConsoleAPI, ConnectDevicesAPI,  # noqa: N801
                 ConnectLifecycleAPI, ConnectStorageAPI, ConnectNetworkAPI, ConnectObjectEventsAPI,
                 ConnectSchedAPI, ConnectIfaceNodedevAPI, ConnectTuningAPI, ConnectCPUFilesAPI):  # libvirt-python's
    """A connection to a hypervisor driver."""

    def __init__(self, drv: HypervisorConnection, uri: str) -> None:
        self._drv = drv
        self._uri = uri
        self._event_callbacks: dict[int, tuple[int, Callable[..., Any]]] = {}
        self._next_callback = 0
        self._lock = threading.Lock()

    # The one place every call goes through: access check, then the loop.
    def _call(self, method: str, *args: Any) -> Any:
        if self._drv.closed:
            raise error(ErrorNumber.INVALID_CONN, ErrorDomain.NONE, method)
        check_access(self._drv, method)
        return aio.run(getattr(self._drv, method)(*args))

    def _domain(self, ref: Any) -> "virDomain":
        from .domain import virDomain
        return virDomain(self, ref)

    # -- connection ----------------------------------------------------------
    def getType(self) -> str:
        return self._call("connect_get_type")

    def getVersion(self) -> int:
        return self._call("connect_get_version")

    def getLibVersion(self) -> int:
        return self._call("connect_get_lib_version")

    def getHostname(self) -> str:
        return self._call("connect_get_hostname")

    def getURI(self) -> str:
        # libvirt's virConnectGetURI formats the URI the connection was opened with (the
        # daemon's own "qemu:///system" would hide the transport and host the caller chose)
        if self._drv.closed:
            raise error(ErrorNumber.INVALID_CONN, ErrorDomain.NONE, "getURI")
        return self._uri

    def getCapabilities(self) -> str:
        return self._call("connect_get_capabilities")

    def getInfo(self) -> list[Any]:
        model, memory, cpus, mhz, nodes, sockets, cores, threads = self._call("node_get_info")
        return [model, memory // 1024, cpus, mhz, nodes, sockets, cores, threads]

    def _node_info_kib(self) -> list[Any]:
        """virNodeInfo as the C API has it, memory in KiB (getInfo's is MiB): for pyvirt's
        CLI, whose nodeinfo prints the KiB figure as virsh does."""
        return list(self._call("node_get_info"))

    def isAlive(self) -> int:
        return int(not self._drv.closed)

    def isSecure(self) -> int:
        return self._call("connect_is_secure")

    def close(self) -> int:
        if not self._drv.closed:
            aio.run(self._drv.connect_close())
        return 0

    # -- domains ---------------------------------------------------------------
    def listAllDomains(self, flags: int = 0) -> list["virDomain"]:
        refs, _count = self._call("connect_list_all_domains", 1, flags)
        return [self._domain(ref) for ref in refs]

    def listDomainsID(self) -> list[int]:
        return self._call("connect_list_domains", self._call("connect_num_of_domains"))

    def listDefinedDomains(self) -> list[str]:
        return self._call("connect_list_defined_domains", self._call("connect_num_of_defined_domains"))

    def numOfDomains(self) -> int:
        return self._call("connect_num_of_domains")

    def numOfDefinedDomains(self) -> int:
        return self._call("connect_num_of_defined_domains")

    def lookupByName(self, name: str) -> "virDomain":
        return self._domain(self._call("domain_lookup_by_name", name))

    def lookupByUUID(self, uuid: bytes) -> "virDomain":
        return self._domain(self._call("domain_lookup_by_uuid", bytes(uuid)))

    def lookupByUUIDString(self, uuidstr: str) -> "virDomain":
        import uuid as uuidlib
        try:
            raw = uuidlib.UUID(uuidstr).bytes
        except (ValueError, AttributeError, TypeError):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"invalid UUID '{uuidstr}'") from None
        return self.lookupByUUID(raw)

    def lookupByID(self, id: int) -> "virDomain":
        return self._domain(self._call("domain_lookup_by_id", int(id)))

    def defineXML(self, xml: str) -> "virDomain":
        return self._domain(self._call("domain_define_xml", xml))

    def defineXMLFlags(self, xml: str, flags: int = 0) -> "virDomain":
        return self._domain(self._call("domain_define_xml_flags", xml, flags))

    def createXML(self, xmlDesc: str, flags: int = 0) -> "virDomain":
        return self._domain(self._call("domain_create_xml", xmlDesc, flags))

    # -- save images (paths made absolute, as libvirt's client library does) -----
    def restore(self, frm: str) -> int:
        self._call("domain_restore", os.path.abspath(frm))
        return 0

    def restoreFlags(self, frm: str, dxml: str | None = None, flags: int = 0) -> int:
        self._call("domain_restore_flags", os.path.abspath(frm), dxml, flags)
        return 0

    def restoreParams(self, params: dict[str, Any] | None = None, flags: int = 0) -> int:
        from .domain import SAVE_PARAM_TYPES
        from .typedparams import from_dict
        values = dict(params or {})
        if "file" in values:
            values["file"] = os.path.abspath(values["file"])
        self._call("domain_restore_params", from_dict(values, SAVE_PARAM_TYPES), flags)
        return 0

    def saveImageGetXMLDesc(self, file: str, flags: int = 0) -> str:
        return self._call("domain_save_image_get_xml_desc", os.path.abspath(file), flags)

    def saveImageDefineXML(self, file: str, dxml: str, flags: int = 0) -> int:
        self._call("domain_save_image_define_xml", os.path.abspath(file), dxml, flags)
        return 0

    # -- events ------------------------------------------------------------------
    def domainEventRegisterAny(self, dom: "virDomain | None", eventID: int,
                               cb: Callable[..., Any], opaque: Any) -> int:
        """Call ``cb(conn, dom, *payload, opaque)`` for each matching event.

        Callbacks run on pyvirt's event thread; do not call back into the
        API from inside them synchronously for long work.
        """
        if eventID < 0:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                        "eventID in virConnectDomainEventRegisterAny must be non-negative")
        if eventID >= len(EventID):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                        f"eventID in virConnectDomainEventRegisterAny must be less than {len(EventID)}")
        want = dom.UUID() if dom is not None else None

        def deliver(event: DomainEvent) -> None:
            if event.event_id != eventID or (want is not None and event.dom.uuid != want):
                return
            cb(self, self._domain(event.dom), *callback_arguments(eventID, event.detail), opaque)

        token = aio.run(self._drv.events_subscribe(deliver, eventID))
        with self._lock:
            self._next_callback += 1
            cb_id = self._next_callback
            self._event_callbacks[cb_id] = (token, cb)
        return cb_id

    def domainEventDeregisterAny(self, callbackID: int) -> int:
        with self._lock:
            entry = self._event_callbacks.pop(callbackID, None)
        if entry is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                        f"could not find event callback {callbackID} for deletion")
        self._drv.unsubscribe_events(entry[0])
        return 0

    def __repr__(self) -> str:
        return f"<pyvirt.virConnect {self._uri}>"


def open(name: str | None = None, flags: int = 0) -> virConnect:  # noqa: A001 - libvirt's name
    uri = name or "test:///default"
    read_only = bool(flags & 1)
    return virConnect(aio.run(_open_driver(uri, read_only)), uri)


def openReadOnly(name: str | None = None) -> virConnect:
    return open(name, 1)


__all__ = ["virConnect", "open", "openReadOnly", "libvirtError"]
