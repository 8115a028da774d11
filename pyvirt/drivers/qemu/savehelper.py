"""The compression helper between QEMU and a save image.

Saving with compression runs ``QEMU → pipe → compressor → file``; restoring
runs ``file → decompressor → pipe → QEMU``.  The daemon spawns the helper
itself from the format's argument list (no shell), with the file and the
pipe as its stdin/stdout and its stderr captured, so when it fails its exit
status and its own words are what the caller is told.

The program is looked up on the daemon's ``PATH`` (or the driver's
configured search path) before anything else happens, as libvirt does, so a
missing helper is reported before the guest is touched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from typing import Callable

from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from .saveimage import ImageFormat

log = logging.getLogger(__name__)

STDERR_KEEP = 4096          # bytes of the helper's stderr kept for the error message


def find_program(fmt: ImageFormat, search_path: str | None = None) -> str:
    """The helper's full path, or an error naming the program and where it was looked for."""
    assert fmt.program is not None
    found = shutil.which(fmt.program, path=search_path)
    if found is None:
        where = search_path if search_path is not None else os.environ.get("PATH", os.defpath)
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"compression program '{fmt.program}' for save image format '{fmt.name}' is not "
                    f"available: not found in {where or '(empty search path)'}")
    return found


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Helper:
    """A running compressor or decompressor; ``role`` names it in messages."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: list[str], role: str) -> None:
        self.proc = proc
        self.argv = argv
        self.role = role
        self.killed = False                 # we stopped it: its exit is no failure
        self._stderr = bytearray()
        self._callbacks: list[Callable[[], None]] = []
        self._done = asyncio.get_running_loop().create_task(self._collect(), name=f"{role}-{proc.pid}")

    @classmethod
    async def start(cls, argv: list[str], stdin: int, stdout: int, role: str) -> "Helper":
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=stdin, stdout=stdout,
                                                        stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"cannot run the {role} '{argv[0]}': {exc.strerror}") from exc
        log.debug("%s started: %s (pid %d)", role, " ".join(argv), proc.pid)
        return cls(proc, argv, role)

    async def _collect(self) -> int:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self._stderr += chunk
            del self._stderr[:-STDERR_KEEP]
        code = await self.proc.wait()
        for callback in self._callbacks:
            callback()
        return code

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def done(self) -> bool:
        return self._done.done()

    @property
    def returncode(self) -> int | None:
        return self._done.result() if self._done.done() and not self._done.cancelled() else None

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace").strip()

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the helper has exited (at once if it already has)."""
        if self._done.done():
            callback()
        else:
            self._callbacks.append(callback)

    @property
    def broken_pipe(self) -> bool:
        """It died writing to a reader that had gone (QEMU stopped reading first)."""
        code = self.returncode
        return code == -signal.SIGPIPE or (bool(code) and "Broken pipe" in self.stderr)

    def failure(self) -> libvirtError | None:
        """The helper's own failure, if it failed and we did not stop it."""
        code = self.returncode
        if code is None or code == 0 or self.killed:
            return None
        what = f"{self.role} '{os.path.basename(self.argv[0])}' {_describe_exit(code)}"
        detail = self.stderr
        return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                     f"{what}: {detail}" if detail else f"{what} (it printed nothing)")

    async def wait(self, timeout: float | None = None) -> int | None:
        """Its exit status; None if it is still running after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except asyncio.TimeoutError:
            return None

    def kill(self) -> None:
        """Stop it now (the save or restore is being abandoned)."""
        if self._done.done():
            return
        self.killed = True
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass

    async def stop(self) -> None:
        """Kill it and reap it."""
        self.kill()
        await asyncio.shield(self._done)
