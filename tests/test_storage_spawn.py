"""The storage driver's helper runner (posix_spawn, pipes on the loop, pidfd exit)."""

from __future__ import annotations

import asyncio
import os
import uuid

from pyvirt.drivers.storage import spawn


def _running(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_status_and_both_outputs():
    code, out, err = asyncio.run(spawn.run(["/bin/sh", "-c", "echo out; echo err >&2; head -c 2000000 /dev/zero; exit 3"]))
    assert code == 3 and out == b"out\n" + bytes(2000000) and err == b"err\n"


def test_a_cancelled_run_takes_its_child_along():
    marker = f"pyvirt-spawn-{uuid.uuid4().hex}"

    async def scenario() -> bool:
        task = asyncio.ensure_future(spawn.run(["/bin/bash", "-c", f"exec -a {marker} sleep 60"]))
        while not _running(marker):      # the child is up (polled on /proc, no timing assumed)
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario())
    assert _running(marker) == []
