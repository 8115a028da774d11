"""The ``dac`` security driver: Unix ownership for the user QEMU runs as.

The configured ``user``/``group`` (libvirt's qemu.conf keys; ``root`` by
default) are resolved to ids once, when the manager is made: a name is
looked up, ``+N`` is taken as the number N, and a name that does not exist
but is all digits is taken as a number too, as libvirt does.

Image descriptors are ``fchown``-ed to those ids.  For a regular file the
old owner is returned so it can be put back once QEMU is done with it; a
pipe (to or from a compression helper) goes away with QEMU, so there is
nothing to give back.  Descriptors that are not image data (taps, sockets)
carry no Unix ownership QEMU needs: that step changes nothing here.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from ..conf import DomainDef
from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from .base import SavedLabel, SecurityManager


def _resolve(kind: str, name: str, lookup) -> int:
    text = str(name).strip()
    if text.startswith("+"):
        digits = text[1:]
        if digits.isdigit():
            return int(digits)
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.SECURITY, f"invalid {kind} id '{name}'")
    try:
        return lookup(text)
    except KeyError:
        if text.isdigit():
            return int(text)
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.SECURITY,
                    f"cannot find {kind} '{name}' (the {kind} QEMU runs as)") from None


def resolve_user(name: str) -> int:
    return _resolve("user", name, lambda n: pwd.getpwnam(n).pw_uid)


def resolve_group(name: str) -> int:
    return _resolve("group", name, lambda n: grp.getgrnam(n).gr_gid)


class DACSecurityManager(SecurityManager):
    model = "dac"

    def __init__(self, user: str = "root", group: str = "root") -> None:
        self.uid = resolve_user(user)
        self.gid = resolve_group(group)

    @property
    def label(self) -> str:
        """libvirt's way of showing a DAC label: ``+UID:+GID``."""
        return f"+{self.uid}:+{self.gid}"

    def _chown_fd(self, fd: int, uid: int, gid: int) -> None:
        try:
            os.fchown(fd, uid, gid)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY,
                        f"unable to set the owner of descriptor {fd} to {uid}:{gid}: {exc.strerror}") from exc

    def set_image_fd_label(self, domain: DomainDef, fd: int) -> SavedLabel | None:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY,
                        f"unable to stat descriptor {fd}: {exc.strerror}") from exc
        if (st.st_uid, st.st_gid) == (self.uid, self.gid):
            return None
        self._chown_fd(fd, self.uid, self.gid)
        return SavedLabel(st.st_uid, st.st_gid) if stat.S_ISREG(st.st_mode) else None

    def restore_image_fd_label(self, domain: DomainDef, fd: int, saved: SavedLabel | None) -> None:
        if saved is not None:
            self._chown_fd(fd, saved.uid, saved.gid)

    def set_tap_fd_label(self, domain: DomainDef, fd: int) -> None:
        return None

    def set_saved_state_label(self, domain: DomainDef, path: str) -> SavedLabel | None:
        try:
            st = os.stat(path)
            if (st.st_uid, st.st_gid) == (self.uid, self.gid):
                return None
            os.chown(path, self.uid, self.gid)
        except OSError as exc:
            raise _path_error(path, self.uid, self.gid, exc) from exc
        return SavedLabel(st.st_uid, st.st_gid)

    def restore_saved_state_label(self, domain: DomainDef, path: str, saved: SavedLabel | None) -> None:
        if saved is None:
            return
        try:
            os.chown(path, saved.uid, saved.gid)
        except OSError as exc:
            raise _path_error(path, saved.uid, saved.gid, exc) from exc


def _path_error(path: str, uid: int, gid: int, exc: OSError) -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY,
                 f"unable to set the owner of '{path}' to {uid}:{gid}: {exc.strerror}")
