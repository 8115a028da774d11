"""Test-only hook points: a fault-injection test stops the daemon at a named point.

Off unless the process starts with ``PYVIRT_TEST_HOOKS=PATH`` in its
environment (never set it in production): then, on reaching a point, the
daemon connects to the UNIX socket at PATH, sends the point's name and one
line of detail, and waits for the test's answer line before going on, so the
test can kill a process, cut a link or restart a daemon at exactly that
moment.  When the variable is absent, :func:`reach` returns at once (one
module attribute check).  An unreachable socket or a test that hangs up
lets the daemon go on as if the hook were off.

The points (migration phases, both source and destination side):
``begin`` (Begin's job taken), ``prepare`` (destination QEMU waiting for
the stream), ``perform-early`` (Perform's job phase entered, nothing sent),
``perform-late`` (QEMU reports the transfer active with data sent),
``finish`` (Finish called), ``confirm`` (Confirm called); and for calls
racing a guest that stops: ``begin-job`` (Begin checked the guest runs and
is about to wait for its job), ``save`` (save holds its job, nothing
written or paused yet); and ``qemu-launched`` (a start's QEMU spawned, its
monitor not yet connected: no greeting read).
"""

from __future__ import annotations

import asyncio
import os

SOCKET: str | None = os.environ.get("PYVIRT_TEST_HOOKS") or None


async def reach(name: str, detail: str = "") -> None:
    """Report reaching point ``name`` and wait for the test's go (no-op when off)."""
    if SOCKET is None:
        return
    try:
        reader, writer = await asyncio.open_unix_connection(SOCKET)
    except OSError:
        return
    try:
        writer.write(f"{name} {detail}".strip().encode(errors="replace") + b"\n")
        await writer.drain()
        await reader.readline()          # "go", or EOF when the test lets go of the point
    except OSError:
        pass
    finally:
        writer.close()
