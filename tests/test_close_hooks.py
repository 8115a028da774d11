"""Close hooks of a driver connection, and autodestroy registered after the connection closed.

A call may still run when its connection closes (a peer-to-peer source sends
CONNECT_CLOSE while the destination's Prepare is starting QEMU; a link is cut
before a tunnelled Perform watches its peer): what it hooks onto the closed
connection must happen at once, not wait for a close that already happened.
Unit tests of the driver layer: no daemon, no QEMU.
"""

from __future__ import annotations

import asyncio

from pyvirt.driver import ConnectionInfo, EventBus, HypervisorConnection
from pyvirt.drivers.autodestroy import AutoDestroy


def _conn() -> HypervisorConnection:
    return HypervisorConnection(ConnectionInfo("test:///default"), EventBus())


def test_hooks_run_on_close_newest_first():
    async def main() -> list[str]:
        conn, seen = _conn(), []
        conn.add_close_hook(lambda: seen.append("first"))

        async def second() -> None:
            seen.append("second")
        conn.add_close_hook(second)
        await conn.connect_close()
        return seen
    assert asyncio.run(main()) == ["second", "first"]


def test_sync_hook_added_after_close_runs_at_once():
    async def main() -> list[str]:
        conn, seen = _conn(), []
        await conn.connect_close()
        conn.add_close_hook(lambda: seen.append("late"))
        return seen
    assert asyncio.run(main()) == ["late"]


def test_async_hook_added_after_close_runs():
    async def main() -> list[str]:
        conn, seen = _conn(), []
        await conn.connect_close()
        done = asyncio.Event()

        async def late() -> None:
            seen.append("late")
            done.set()
        conn.add_close_hook(late)
        await done.wait()
        return seen
    assert asyncio.run(main()) == ["late"]


def test_autodestroy_registered_on_a_closed_connection_destroys():
    async def main() -> list[str]:
        conn, destroyed = _conn(), []
        done = asyncio.Event()

        async def destroy(uuid: str) -> None:
            destroyed.append(uuid)
            done.set()
        registry = AutoDestroy(destroy)
        await conn.connect_close()
        registry.register(conn, "6be0751d-9a97-41d0-a94a-26d80f9f4a1b")
        await done.wait()
        assert registry.owner("6be0751d-9a97-41d0-a94a-26d80f9f4a1b") is None
        return destroyed
    assert asyncio.run(main()) == ["6be0751d-9a97-41d0-a94a-26d80f9f4a1b"]


def test_failing_late_hook_is_logged_not_raised(caplog):
    async def main() -> None:
        conn = _conn()
        await conn.connect_close()

        def boom() -> None:
            raise RuntimeError("cleanup failed")
        conn.add_close_hook(boom)           # never raised into the call that added it
    asyncio.run(main())
    assert any("close hook failed" in r.getMessage() and r.exc_info for r in caplog.records)
