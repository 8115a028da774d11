"""One asyncio event loop on a background thread: the sync facade's engine.

Drivers are written once, as coroutines.  The blocking libvirt-python style
API runs each call on this loop and waits for the result, and the loop keeps
running between calls so that QMP events, child-exit watchers, keepalives and
RPC event messages are handled while the application does other things.
"""

from __future__ import annotations

import atexit
import threading
import types
from collections.abc import Coroutine

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    import asyncio
    from typing import Any, TypeVar

    T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


class Done:
    """A result already there, as a blocking driver gives it: awaitable like a
    coroutine's (so async code can await it), and :func:`run` returns it at
    once, without an event loop (or asyncio imported) at all.  Generic in its
    value's type (``Done[int]``) as typing.Generic would make it."""

    __slots__ = ("value",)
    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, value: T) -> None:
        self.value = value

    def __await__(self) -> Any:
        return self.value
        yield  # noqa: unreachable - makes this a generator


def loop() -> asyncio.AbstractEventLoop:
    """The shared background loop, started on first use."""
    import asyncio
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            _thread = threading.Thread(target=run, name="pyvirt-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = new_loop
        return _loop


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and wait for its result.

    Called from the loop thread itself (a callback calling back into the
    API), this would deadlock, so it refuses instead.
    """
    if isinstance(coro, Done):
        return coro.value
    import asyncio
    target = loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("pyvirt API called from its own event-loop thread; "
                           "use the async driver methods there")
    return asyncio.run_coroutine_threadsafe(coro, target).result(timeout)


def in_loop_thread() -> bool:
    return threading.current_thread() is _thread


@atexit.register
def _shutdown() -> None:
    if _loop is not None and not _loop.is_closed():
        _loop.call_soon_threadsafe(_loop.stop)
