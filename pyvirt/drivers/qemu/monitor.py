"""QEMU's monitor (QMP), over the QEMU project's own ``qemu.qmp`` library.

:class:`Monitor` adds typed helpers for the commands the driver uses and
turns QMP events, and the loss of the connection, into calls on a
:class:`MonitorCallbacks` object.  An unexpected disconnect (QEMU died) is
delivered as ``on_eof`` exactly once: it is an event, never an exception
that escapes into the driver; our own :meth:`Monitor.close` never is.  A QMP error reply becomes a libvirtError
(INTERNAL_ERROR, QEMU) quoting QEMU's own description in libvirt's words.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from typing import Any, Mapping, Protocol

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError, Runstate

from ...conf.names import socket_address
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError

log = logging.getLogger(__name__)


class _QMPClient(QMPClient):
    """qemu.qmp's client without its per-message debug line, which formats every
    message as indented JSON even with debug logging off: most of the cost of a
    large reply (query-named-block-nodes for every statistics call) was that."""

    def _cb_outbound(self, msg):  # type: ignore[no-untyped-def,override]
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("--> %s", str(msg))
        return msg

    def _cb_inbound(self, msg):  # type: ignore[no-untyped-def,override]
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("<-- %s", str(msg))
        return msg


class MonitorCallbacks(Protocol):
    def on_event(self, name: str, data: Mapping[str, Any], timestamp: float) -> None: ...
    def on_eof(self, reason: str) -> None: ...


class Monitor:
    """One QMP connection to one QEMU."""

    def __init__(self, name: str, callbacks: MonitorCallbacks) -> None:
        self.name = name
        self._callbacks = callbacks
        self._client = _QMPClient(name)
        self._event_task: asyncio.Task[None] | None = None
        self._closing = False
        self._eof_sent = False
        self._passthrough_id = 0

    async def connect(self, path: str) -> None:
        """Connect and negotiate; then start forwarding events."""
        try:
            with socket_address(path) as address:      # a long state directory: via its descriptor
                await self._client.connect(address)
        except QMPError as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"cannot connect to the monitor of '{self.name}': {exc}") from exc
        self._event_task = asyncio.get_running_loop().create_task(self._pump_events(),
                                                                   name=f"qmp-events-{self.name}")

    async def _pump_events(self) -> None:
        """Forward events until QEMU closes the connection, then report EOF once.

        Events QEMU sent before closing (SHUTDOWN, say) are delivered first,
        so the driver can tell a clean shutdown from a crash.
        """
        listener = EventListener()
        self._client.register_listener(listener)
        try:
            while self._client.runstate == Runstate.RUNNING:
                getter = asyncio.ensure_future(listener.get())
                changed = asyncio.ensure_future(self._client.runstate_changed())
                try:
                    done, _ = await asyncio.wait({getter, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                    if not getter.done():
                        getter.cancel()
                if getter in done and not getter.cancelled():
                    self._dispatch(getter.result())
            for event in listener.clear():
                self._dispatch(event)
        except asyncio.CancelledError:
            return
        finally:
            self._client.remove_listener(listener)
        self._report_eof("QEMU closed its monitor connection")

    def _dispatch(self, event: Mapping[str, Any]) -> None:
        name = event["event"]
        data = event.get("data", {})
        ts = event.get("timestamp", {})
        stamp = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
        log.debug("%s: event %s %s", self.name, name, data)
        try:
            self._callbacks.on_event(name, data, stamp)
        except Exception:  # a handler bug must not kill the monitor
            log.exception("%s: handling event %s failed", self.name, name)

    def _report_eof(self, reason: str) -> None:
        if self._eof_sent or self._closing:
            return
        self._eof_sent = True
        try:
            self._callbacks.on_eof(reason)
        except Exception:
            log.exception("%s: EOF handler failed", self.name)

    async def close(self) -> None:
        """Close our end.  This is never reported as ``on_eof``: only QEMU closing
        its end means QEMU is going away; a daemon that stops, or a driver done
        with a QEMU that already exited, closes the monitor without it."""
        self._closing = True
        if self._event_task is not None:
            self._event_task.cancel()
        try:
            await self._client.disconnect()
        except Exception:  # already broken: nothing left to close
            pass

    @property
    def connected(self) -> bool:
        return self._client.runstate == Runstate.RUNNING

    async def execute(self, cmd: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Run one QMP command; a QMP error becomes a libvirtError with QEMU's text."""
        try:
            return await self._client.execute(cmd, arguments)
        except ExecuteError as exc:
            desc = str(exc)   # QEMU's own description of the failure
            # libvirt's qemuMonitorJSONCheckErrorFull reports exactly this, so callers see the same text
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                        f"unable to execute QEMU command '{cmd}': {desc}") from exc
        except (QMPError, OSError, EOFError) as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"monitor of '{self.name}' is gone during '{cmd}': {exc or type(exc).__name__}") from exc

    async def execute_passthrough(self, cmd: str, arguments: Mapping[str, Any] | None) -> str:
        """QEMU's reply to an arbitrary command as JSON text, an error reply included."""
        self._passthrough_id += 1
        reply_id = f"libvirt-{self._passthrough_id}"
        try:
            result = await self._client.execute(cmd, arguments)
            reply: dict[str, Any] = {"return": result, "id": reply_id}
        except ExecuteError as exc:
            reply = {"id": reply_id, "error": {"class": exc.error_class, "desc": str(exc)}}
        except (QMPError, OSError, EOFError) as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"monitor of '{self.name}' is gone during '{cmd}': {exc}") from exc
        return json.dumps(reply)

    def listener(self, *names: str) -> Any:
        """A context manager giving a qemu.qmp EventListener for the events ``names``,
        for a caller that awaits one QEMU job's events (the driver's own handler
        still sees every event)."""
        return self._client.listener(names)

    # -- typed helpers -----------------------------------------------------
    async def query_status(self) -> dict[str, Any]:
        return await self.execute("query-status")

    async def stop(self) -> None:
        await self.execute("stop")

    async def cont(self) -> None:
        await self.execute("cont")

    async def system_powerdown(self) -> None:
        await self.execute("system_powerdown")

    async def system_reset(self) -> None:
        await self.execute("system_reset")

    async def query_migrate(self) -> dict[str, Any]:
        return await self.execute("query-migrate")

    async def migrate(self, uri: str) -> None:
        await self.execute("migrate", {"uri": uri})

    async def migrate_incoming(self, uri: str) -> None:
        await self.execute("migrate-incoming", {"uri": uri})

    async def migrate_cancel(self) -> None:
        await self.execute("migrate_cancel")

    async def migrate_set_parameters(self, **params: Any) -> None:
        await self.execute("migrate-set-parameters", {k.replace("_", "-"): v for k, v in params.items()})

    async def migrate_set_capabilities(self, caps: Mapping[str, bool]) -> None:
        await self.execute("migrate-set-capabilities",
                           {"capabilities": [{"capability": k, "state": v} for k, v in caps.items()]})

    async def query_migrate_parameters(self) -> dict[str, Any]:
        return await self.execute("query-migrate-parameters")

    async def getfd(self, fd: int, fdname: str) -> None:
        """Pass ``fd`` to QEMU under ``fdname`` (SCM_RIGHTS, then ``getfd``)."""
        try:
            self._send_fd(fd)
        except (QMPError, OSError, AttributeError) as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"cannot pass a file descriptor to '{self.name}': {exc}") from exc
        await self.execute("getfd", {"fdname": fdname})

    def _send_fd(self, fd: int) -> None:
        """SCM_RIGHTS with one blank byte (harmless between QMP's JSON messages).

        Done here rather than with qemu.qmp's send_fd_scm, which reaches into
        asyncio's private socket wrapper and so fails under uvloop.
        """
        transport = self._client._writer.transport if self._client._writer else None  # noqa: SLF001
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            raise OSError("the monitor is not connected")
        with socket.socket(fileno=os.dup(sock.fileno())) as raw:
            raw.sendmsg([b" "], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("@i", fd))])

    async def add_fd(self, fd: int) -> int:
        """Put a copy of ``fd`` into a new fd set of QEMU's (``add-fd``); its id.  QEMU then
        opens ``/dev/fdset/ID`` for a path argument as that descriptor."""
        try:
            self._send_fd(fd)
        except (QMPError, OSError, AttributeError) as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"cannot pass a file descriptor to '{self.name}': {exc}") from exc
        return (await self.execute("add-fd"))["fdset-id"]

    async def remove_fd(self, fdset_id: int) -> None:
        await self.execute("remove-fd", {"fdset-id": fdset_id})

    async def closefd(self, fdname: str) -> None:
        await self.execute("closefd", {"fdname": fdname})

    async def client_migrate_info(self, protocol: str, hostname: str, port: int | None = None,
                                  tls_port: int | None = None, cert_subject: str | None = None) -> None:
        args: dict[str, Any] = {"protocol": protocol, "hostname": hostname}
        if port is not None:
            args["port"] = port
        if tls_port is not None:
            args["tls-port"] = tls_port
        if cert_subject:
            args["cert-subject"] = cert_subject
        await self.execute("client_migrate_info", args)

    async def human_monitor_command(self, cmd: str) -> str:
        return await self.execute("human-monitor-command", {"command-line": cmd})


def listening_socket(path: str) -> socket.socket:
    """A UNIX socket bound and listening at ``path``, to hand to QEMU as its
    monitor: the driver can connect at once, with no wait for QEMU to create it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with socket_address(path) as address:
            sock.bind(address)
        sock.listen(1)
    except OSError:
        sock.close()
        raise
    return sock


__all__ = ["Monitor", "MonitorCallbacks", "listening_socket", "libvirtError"]
