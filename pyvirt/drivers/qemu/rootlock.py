"""One manager per QEMU driver root: an exclusive lock on ``ROOT/run/pyvirtd.pid``.

Whoever manages a root (pyvirtd on its ``state_dir``, or the embedded driver
of ``qemu:///embed?root=DIR``) takes this lock before it touches anything
under the root, and holds it for as long as it runs.  A second manager
would adopt the first one's guests while the first still holds their
monitors, time out, and take the guests for dead; so it is refused at once,
naming the holder (libvirt's QEMU driver does the same with its
``driver.pid`` file).

The lock is ``flock`` on the file: it belongs to the open file, so the
kernel drops it when the holder dies however it dies, and two openers in
one process exclude each other too.  The descriptor is close-on-exec: no
QEMU or helper started meanwhile inherits it.  The file holds the holder's
pid on its first line (a pidfile, as libvirtd's) and what it is on the
second.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ...errors import ErrorDomain, ErrorNumber, error

LOCK_FILE = Path("run") / "pyvirtd.pid"


class RootLock:
    """The held lock of one root; :meth:`release` lets it go (also on exit, by the kernel)."""

    def __init__(self, root: Path, path: Path, fd: int) -> None:
        self.root, self.path, self._fd = root, path, fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the pidfile and unlock (in this order: a waiting manager that opened
        the old file sees it is no longer the root's file and opens the new one)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        os.close(fd)


def acquire(root: str | Path, holder: str = "pyvirtd") -> RootLock:
    """Lock ``root`` for this process, or fail naming who holds it.

    ``holder`` says what this process is, for the error another one will print.
    """
    root = Path(root)
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, who = _holder(fd)
            os.close(fd)
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NONE,
                        f"{who} is already running with pid {pid} on state directory {root}") from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)   # the previous holder removed this file as we locked it: take the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{holder}\n".encode(), 0)
    return RootLock(root, path, fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder(fd: int) -> tuple[str, str]:
    """(pid, what) as the holder wrote them.  It writes right after locking, so an
    empty file means it is between the two; the pid is then not known yet."""
    text = os.pread(fd, 256, 0).decode(errors="replace").split("\n")
    pid = text[0].strip() if text and text[0].strip().isdigit() else "unknown"
    who = text[1].strip() if len(text) > 1 and text[1].strip() else "pyvirtd"
    return pid, who
