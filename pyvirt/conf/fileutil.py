"""Writing state files so that a crash never leaves half of one behind."""

from __future__ import annotations

import contextlib
import os
import tempfile

from ..errors import ErrorDomain, ErrorNumber, error

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` atomically.

    The text goes to a temporary file in the same directory (so the rename
    cannot cross file systems), is fsync'ed, then renamed over ``path``; the
    directory is fsync'ed so the rename itself survives a crash.  Readers see
    the old file or the new one, never a mix.  ``mode`` defaults to 0600
    because status files hold graphics passwords.  Failures raise
    SYSTEM_ERROR naming the file; the old file is left untouched.
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(target, exc) from exc
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    # Some file systems cannot fsync a directory; the data is safe already.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_error(path: str, exc: OSError) -> Exception:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.NONE,
                 f"cannot write file '{path}': {exc.strerror or exc}")
