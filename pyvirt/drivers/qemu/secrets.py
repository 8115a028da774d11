"""Secrets for QEMU, handed over through descriptors: never on its argv
(readable by anyone in ``/proc/PID/cmdline``), never in its log.

One mechanism for every secret QEMU needs (a SPICE password today; TLS key
passphrases and disk encryption keys later):

1. :func:`~.command.build_argv` asks a :class:`SecretPlan` for a ``secret``
   object per secret.  The plan only records the bytes (building stays
   pure) and writes an ``-object`` whose data QEMU reads from
   ``file=/proc/self/fd/N``, with a placeholder for N; the option that uses
   the secret names the object's id (``password-secret=``,
   ``passwordid=``, ``key-secret=``).
2. At launch, :meth:`SecretPlan.handed` puts each secret into a sealed
   memfd, substitutes the descriptor numbers and gives the descriptors to
   pass; the daemon's copies are closed once QEMU runs.

Why a memfd read through ``/proc/self/fd``: QEMU 7.2's secret object reads
``file=`` with a plain open (``/dev/fdset`` is not understood there); a
pipe or a 0600 file made by the root daemon could not be reopened by an
unprivileged QEMU, while a memfd is never on disk, cannot be changed once
sealed, and can be reopened only by a process that already holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_PLACEHOLDER = "@SECRET_FD:{}@"
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


@dataclass
class SecretPlan:
    """The secrets one QEMU start hands over, by ``secret`` object id."""

    _data: dict[str, bytes] = field(default_factory=dict)

    def object_args(self, secret_id: str, value: str | bytes) -> list[str]:
        """``-object`` arguments defining ``secret_id`` without its value."""
        if secret_id in self._data:
            raise ValueError(f"secret '{secret_id}' planned twice")
        self._data[secret_id] = value.encode() if isinstance(value, str) else bytes(value)
        obj = {"qom-type": "secret", "id": secret_id, "format": "raw",
               "file": f"/proc/self/fd/{_PLACEHOLDER.format(secret_id)}"}
        return ["-object", json.dumps(obj, separators=(",", ":"))]

    @property
    def ids(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @contextmanager
    def handed(self) -> Iterator[HandedSecrets]:
        """Descriptors holding the secrets, open for the duration of a launch."""
        fds: dict[str, int] = {}
        try:
            for secret_id, data in self._data.items():
                fds[secret_id] = _sealed_memfd(data)
            yield HandedSecrets(fds)
        finally:
            for fd in fds.values():
                os.close(fd)


@dataclass(frozen=True)
class HandedSecrets:
    by_id: dict[str, int]

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(self.by_id.values())

    def substitute(self, argv: list[str]) -> list[str]:
        """``argv`` with each secret placeholder replaced by its descriptor number."""
        out = []
        for arg in argv:
            if "@SECRET_FD:" in arg:
                for secret_id, fd in self.by_id.items():
                    arg = arg.replace(_PLACEHOLDER.format(secret_id), str(fd))
            out.append(arg)
        return out


def _sealed_memfd(data: bytes) -> int:
    fd = os.memfd_create("pyvirt-secret", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd
