"""virsh's event watchers (net-event, pool-event): print each event, stop after
one unless --loop, and end on --timeout or ^C with virsh's closing lines."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from .registry import CommandError


class EventWatch:
    """The state one watcher shares with its callback thread."""

    def __init__(self, loop: bool) -> None:
        self.loop = loop
        self.count = 0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def show(self, line: str) -> None:
        """Print one event's line (callback thread); a one-shot watcher prints one only."""
        with self._lock:
            if not self.loop and self.count:
                return
            sys.stdout.write(line)
            sys.stdout.flush()
            self.count += 1
            if not self.loop:
                self.done.set()

    def wait(self, timeout: float | None, deregister: Callable[[], None]) -> None:
        """Wait for the events, then deregister and print virsh's count line;
        nothing received fails quietly, as virsh (main adds the blank line)."""
        import signal
        from pyvirt.errors import libvirtError
        # as virsh, ^C ends the loop even when started with SIGINT ignored (a background job)
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        if ignored:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            try:
                if not self.done.wait(timeout):
                    print("event loop timed out")
            except KeyboardInterrupt:
                print("event loop interrupted")
        finally:
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                deregister()
            except libvirtError:
                pass
        if not self.count:
            print(f"events received: {self.count}")
            raise CommandError("")
        print(f"events received: {self.count}\n")
