"""Tunnelled migration: the stream travels inside the daemons' RPC connection.

The driver only deals in pipes; moving their bytes is the stream's job,
behind the seam of :class:`SendingStream` and :class:`~pyvirt.driver.StreamSink`
(the remote driver and the daemon implement them with ``pyvirt.rpc.stream``,
by ``splice`` on threads of their own, so job info, abort, speed and
downtime keep working meanwhile).

Source: QEMU migrates into a pipe (``getfd`` of the pipe's *write* end,
then ``migrate fd:``); the read end goes to the destination's
:class:`SendingStream`.  Destination: QEMU reads the *read* end of another
pipe (``migrate-incoming fd:``); the write end goes back, as a StreamSink,
for the daemon's stream to write the packets' payload into.

On failure or abort the pipe and the stream are closed first and QEMU's
migration cancelled after, so QEMU never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from typing import Any, Callable, Protocol

from ....driver import HypervisorConnection, StreamSink
from ....typedparams import MIGRATION_PARAM_TYPES, from_dict
from .params import MigrationRequest, to_params

log = logging.getLogger(__name__)

FD_NAME = "migrate-tunnel"
PIPE_SIZE = 1 << 20


def make_pipe() -> tuple[int, int]:
    """A pipe of PIPE_SIZE: fewer, larger hand-overs between QEMU and the stream."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass   # above /proc/sys/fs/pipe-max-size for an unprivileged process: the default size works
    return r, w


class SendingStream(Protocol):
    """The sending end of a stream, as the destination's Prepare-tunnel returned it."""

    on_failure: Callable[[BaseException], None] | None

    async def send_from_fd(self, fd: int) -> int:
        """Send everything readable from ``fd`` until its EOF; the byte count."""

    def stop(self) -> None:
        """Stop sending at once (an abort follows)."""

    async def finish(self) -> None:
        """End the stream; raises if the destination did not acknowledge it."""

    async def abort(self) -> None:
        """Tell the destination the stream is cancelled; never raises."""


class Tunnel:
    """The source end: QEMU → pipe → the stream to the destination."""

    qemu_uri = f"fd:{FD_NAME}"

    def __init__(self, stream: SendingStream) -> None:
        self.stream = stream
        self.read_fd = -1
        self.pump: asyncio.Task[int] | None = None
        self._on_failure: Callable[[BaseException], None] | None = None

    def on_failure(self, callback: Callable[[BaseException], None]) -> None:
        self._on_failure = callback
        self.stream.on_failure = callback

    async def start_source(self, monitor: Any) -> None:
        r, w = make_pipe()
        try:
            await monitor.getfd(w, FD_NAME)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)        # QEMU has its copy; ours would hide QEMU's EOF from the pump
        self.read_fd = r
        self.pump = asyncio.get_running_loop().create_task(self.stream.send_from_fd(r), name="tunnel-pump")

        def pumped(task: asyncio.Task[int]) -> None:
            if not task.cancelled() and task.exception() is not None and self._on_failure is not None:
                self._on_failure(task.exception())
        self.pump.add_done_callback(pumped)

    async def finish(self) -> None:
        """QEMU is done: wait for the pump to drain the pipe, then end the stream."""
        assert self.pump is not None
        sent = await self.pump
        self._close_pipe()
        await self.stream.finish()
        log.debug("tunnel: %d bytes sent", sent)

    async def abort(self) -> None:
        self.stream.stop()     # the pump polls with a wake-up pipe: it stops at once
        if self.pump is not None and not self.pump.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.pump), 5)
            except BaseException:
                pass
        if self.pump is None or self.pump.done():
            self._close_pipe()     # a QEMU still writing gets EPIPE, never blocks
        else:                      # never close under a running thread: when it ends
            self.pump.add_done_callback(lambda _: self._close_pipe())
        await self.stream.abort()

    def _close_pipe(self) -> None:
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1


async def prepare_remote(dconn: HypervisorConnection, req: MigrationRequest, cookie: bytes, xml: str,
                         flags: int, use_params: bool) -> tuple[Tunnel, bytes]:
    """Prepare-tunnel on the destination: returns the tunnel and the destination's cookie."""
    if use_params:
        values = {name: value for name, _t, value in to_params(req) if name != "migrate_uri"}
        values["destination_xml"] = xml
        cookie_out, stream = await dconn.domain_migrate_prepare_tunnel3_params(
            from_dict(values, MIGRATION_PARAM_TYPES), cookie, flags)
    else:
        cookie_out, stream = await dconn.domain_migrate_prepare_tunnel3(cookie, flags, req.dname, req.bandwidth, xml)
    return Tunnel(stream), cookie_out


async def attach_destination(monitor: Any, on_done: Callable[[BaseException | None], Any]) -> StreamSink:
    """Give the destination QEMU a pipe to read the stream from; return where the daemon writes it."""
    r, w = make_pipe()
    try:
        await monitor.getfd(r, FD_NAME)
        await monitor.migrate_incoming(f"fd:{FD_NAME}")
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    return StreamSink(w, on_done)
