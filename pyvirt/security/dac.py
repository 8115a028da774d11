"""The ``dac`` security driver: Unix ownership for the user QEMU runs as.

The configured ``user``/``group`` (libvirt's qemu.conf keys) are resolved to
ids once, when the manager is made: a name is looked up, ``+N`` is taken as
the number N, and a name that does not exist but is all digits is taken as
a number too, as libvirt does.  QEMU runs with those ids and the user's
supplementary groups (:meth:`DACSecurityManager.process_ids`).

With ``dynamic_ownership`` (the default) a starting guest's files are given
to that user — disk images (and the backing files of qcow2 images), kernel
and initrd, serial and console files
(created first, mode 0600, when missing), UNIX sockets QEMU connects to —
and given back when it stops.  The original owner is remembered as libvirt
does (``remember_owner``, :mod:`.remember`): in extended attributes with a
count of users, so a file two guests share is only given back when the last
one stops; where the file system keeps no attributes, in the label record
the driver stores in the status XML.  Read-only and shareable disks are
given to QEMU but never given back (other guests may still use them), as in
libvirt.  A file QEMU cannot be given — missing, or a ``chown`` the file
system refuses while QEMU could not open it as it is — refuses the start,
naming the path.

Image descriptors (save/restore) are ``fchown``-ed to those ids.  For a
regular file the old owner is returned so it can be put back once QEMU is
done with it; a pipe (to or from a compression helper) goes away with QEMU,
so there is nothing to give back.  Descriptors that are not image data
(taps, sockets) carry no Unix ownership QEMU needs: that step changes
nothing here.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import stat
import struct
from dataclasses import dataclass

from ..conf import DomainDef
from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import remember as rem
from .base import LabelRecord, ProcessIds, SavedLabel, SecurityManager

log = logging.getLogger(__name__)

# chown errors libvirt lets pass (NFS, read-only media, squashed root): the
# file may be usable as it is.
_CHOWN_TOLERATED = (errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL, errno.EROFS)
_ACL_XATTR = "system.posix_acl_access"

# How a record entry gives its file back.
BY_XATTR = "xattr"        # the owner is in the file's attributes (shared count)
BY_RECORD = "record"      # no attributes: the owner is in this record
TO_ROOT = "root"          # remember_owner = 0: back to root:root, as libvirt


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


def parse_label(label: str) -> tuple[int, int]:
    """``+UID:+GID`` (or names) → ids, as libvirt parses DAC labels."""
    user, sep, group = label.partition(":")
    if not sep:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.SECURITY,
                    f"Missing separator ':' in DAC label \"{label}\"")
    return resolve_user(user), resolve_group(group)


def format_label(uid: int, gid: int) -> str:
    return f"+{uid}:+{gid}"


@dataclass(frozen=True, slots=True)
class _Target:
    """One file QEMU opens by path."""

    path: str
    remember: bool = True         # give it back at stop (not read-only/shared disks)
    write: bool = True            # QEMU opens it for writing


_QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_V2_HEADER = 72
_QCOW2_BACKING_FORMAT = 0xE2792ACA      # header extension: the backing file's format
_MAX_CHAIN = 64


def _qcow2_backing(path: str) -> tuple[str, str | None] | None:
    """A qcow2 image's backing file and its recorded format (None: not recorded)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            if len(head) < _QCOW2_V2_HEADER or head[:4] != _QCOW2_MAGIC:
                return None
            version, offset, size = struct.unpack(">IQI", head[4:20])
            if not offset or not 0 < size < 1024:
                return None
            f.seek(offset)
            name = f.read(size).decode(errors="surrogateescape")
    except (OSError, ValueError):
        return None
    pos = struct.unpack(">I", head[100:104])[0] if version >= 3 and len(head) >= 104 else _QCOW2_V2_HEADER
    fmt = None
    while pos + 8 <= len(head):
        kind, length = struct.unpack(">II", head[pos:pos + 8])
        if kind == 0:
            break
        if kind == _QCOW2_BACKING_FORMAT:
            fmt = head[pos + 8:pos + 8 + length].decode(errors="replace")
        pos += 8 + (length + 7) // 8 * 8
    if not os.path.isabs(name):
        if ":" in name.split("/", 1)[0]:
            return None                    # a protocol (nbd:, json:): nothing on this host's disk
        name = os.path.join(os.path.dirname(path), name)
    return name, fmt


def _backing_chain(path: str) -> list[str]:
    """The backing files QEMU opens itself below a qcow2 image, top first.  Only
    images whose format is recorded as qcow2 are read further: a raw image's
    content is the guest's, never metadata (libvirt does not probe either)."""
    chain: list[str] = []
    seen = {os.path.realpath(path)}
    current: str | None = path
    while current is not None and len(chain) < _MAX_CHAIN:
        found = _qcow2_backing(current)
        if found is None:
            break
        backing, fmt = found
        real = os.path.realpath(backing)
        if real in seen:
            break
        seen.add(real)
        chain.append(backing)
        current = backing if fmt == "qcow2" else None
    return chain


def _targets(domain: DomainDef) -> list[_Target]:
    """What QEMU opens by path, in libvirt's order: disks (with the backing
    files of qcow2 images: shared, so read-only and never given back),
    chardevs, kernel."""
    out: list[_Target] = []
    for disk in domain.devices.disks:
        if disk.source is None or disk.storage_type not in ("file", "block"):
            continue
        shared = disk.readonly or disk.shareable
        out.append(_Target(disk.source, remember=not shared, write=not disk.readonly))
        if disk.driver_type == "qcow2":
            out.extend(_Target(path, remember=False, write=False) for path in _backing_chain(disk.source))
    for dev in _chardevs(domain):
        if dev.path is None:
            continue
        if dev.type in ("file", "dev"):
            out.append(_Target(dev.path))
        elif dev.type == "unix" and dev.mode == "connect":
            out.append(_Target(dev.path))     # QEMU creates the ones it listens on itself
    for path in (domain.os.kernel, domain.os.initrd, domain.os.dtb):   # what libvirt labels of <os>
        if path:
            out.append(_Target(path, write=False))
    return out


def _chardevs(domain: DomainDef) -> list:
    devices = domain.devices
    # A console beside serial ports is the first serial shown again: no file of its own.
    return [*devices.serials, *([] if devices.serials else devices.consoles)]


def _precreate(domain: DomainDef) -> None:
    """File chardevs exist before they are labelled (libvirt creates them too),
    so QEMU does not need to write in their directory."""
    for dev in _chardevs(domain):
        if dev.type != "file" or not dev.path:
            continue
        try:
            fd = os.open(dev.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY, 0o600)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY,
                        f"Unable to pre-create chardev file '{dev.path}': {exc.strerror}") from exc
        except ValueError:        # a NUL in the path
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.SECURITY,
                        f"Unable to pre-create chardev file {dev.path!r}: not a valid path") from None
        os.close(fd)


class DACSecurityManager(SecurityManager):
    model = "dac"

    def __init__(self, user: str = "root", group: str = "root", *, dynamic_ownership: bool = True,
                 remember_owner: bool = True) -> None:
        self.uid = resolve_user(user)
        self.gid = resolve_group(group)
        self.dynamic_ownership = dynamic_ownership
        self.remember_owner = remember_owner
        self.groups = _group_list(self.uid, self.gid)
        self._fallback_key = f"{id(self):x}"

    @property
    def label(self) -> str:
        """libvirt's way of showing a DAC label: ``+UID:+GID``."""
        return format_label(self.uid, self.gid)

    def process_ids(self) -> ProcessIds:
        return ProcessIds(self.uid, self.gid, self.groups)

    # -- a whole domain ------------------------------------------------------
    def set_all_label(self, domain: DomainDef) -> LabelRecord:
        if not self.dynamic_ownership:
            return None
        _precreate(domain)
        record: list[list[str]] = []
        try:
            for target in _targets(domain):
                entry = self._set_path(domain, target)
                if entry is not None:
                    record.append(entry)
        except BaseException:
            self.restore_all_label(domain, record)
            raise
        return record or None

    def restore_all_label(self, domain: DomainDef, record: LabelRecord) -> None:
        for entry in reversed(record or ()):
            try:
                self._restore_path(domain, *entry)
            except (libvirtError, OSError, TypeError, ValueError) as exc:
                log.warning("%s: cannot give '%s' back: %s", domain.name, entry[0] if entry else "?", exc)

    def reserve_all_label(self, domain: DomainDef, record: LabelRecord) -> None:
        for path, how, owner in record or ():
            if how == BY_RECORD:
                rem.FALLBACK.acquire(path, self._user_key(domain), owner)

    def _user_key(self, domain: DomainDef) -> str:
        # One guest of this manager; the same UUID can run twice on a host
        # (both ends of a migration), under two managers.
        return f"{self._fallback_key}:{domain.uuid}"

    def _set_path(self, domain: DomainDef, target: _Target) -> list[str] | None:
        path = target.path
        st = _stat(path)
        found = format_label(st.st_uid, st.st_gid)
        if not target.remember:
            self._chown(path, st, target.write)
            return None
        if not self.remember_owner:
            self._chown(path, st, target.write)
            return [path, TO_ROOT, ""]
        with rem.metadata_lock(path):
            count = rem.remember(path, found)
            if count == rem.UNSUPPORTED:
                owner = rem.FALLBACK.acquire(path, self._user_key(domain), found)
                entry = [path, BY_RECORD, owner]
            else:
                entry = [path, BY_XATTR, found]
            try:
                if count > 1 and (st.st_uid, st.st_gid) != (self.uid, self.gid):
                    raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.SECURITY,
                                f"Setting different DAC user or group on {path} which is already in use")
                self._chown(path, st, target.write)
            except BaseException:
                self._forget(domain, entry)
                raise
        log.debug("%s: gave '%s' (%s) to %s", domain.name, path, found, self.label)
        return entry

    def _forget(self, domain: DomainDef, entry: list[str]) -> None:
        """Undo the count of a labelling that failed (the owner is unchanged)."""
        path, how, _ = entry
        try:
            if how == BY_XATTR:
                rem.recall(path)
            else:
                rem.FALLBACK.release(path, self._user_key(domain))
        except libvirtError as exc:
            log.warning("cannot undo the remembered owner of '%s': %s", path, exc)

    def _restore_path(self, domain: DomainDef, path: str, how: str, owner: str) -> None:
        if how == TO_ROOT:
            self._give_back(path, 0, 0)
            return
        if how == BY_RECORD:
            if rem.FALLBACK.release(path, self._user_key(domain)):
                self._give_back(path, *parse_label(owner))
            return
        with rem.metadata_lock(path):
            label = rem.recall(path)
            if label is None:
                return                       # other guests still use it
            if label == rem.UNSUPPORTED:     # the attributes went away: what we found then
                label = owner
            self._give_back(path, *parse_label(label))

    def _give_back(self, path: str, uid: int, gid: int) -> None:
        try:
            st = os.stat(path)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(path, uid, gid)
        except OSError as exc:
            raise _path_error(path, uid, gid, exc) from exc

    def _chown(self, path: str, st: os.stat_result, write: bool) -> None:
        if (st.st_uid, st.st_gid) == (self.uid, self.gid):
            return
        try:
            os.chown(path, self.uid, self.gid)
        except OSError as exc:
            if exc.errno in _CHOWN_TOLERATED and self._usable_as_is(path, st, write):
                log.info("cannot give '%s' to %s (%s); QEMU can use it as it is",
                         path, self.label, exc.strerror)
                return
            raise _path_error(path, self.uid, self.gid, exc) from exc

    def _usable_as_is(self, path: str, st: os.stat_result, write: bool) -> bool:
        """Whether QEMU's ids may open the file without a chown (mode bits;
        with an ACL we cannot tell, so we let QEMU try)."""
        try:
            if os.getxattr(path, _ACL_XATTR):
                return True
        except OSError:
            pass
        if st.st_uid == self.uid:
            bits = st.st_mode >> 6
        elif st.st_gid == self.gid or st.st_gid in self.groups:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        need = 0o6 if write else 0o4
        return self.uid == 0 or (bits & need) == need

    # -- descriptors and save files ------------------------------------------
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


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY,
                    f"unable to stat: {path}: {exc.strerror}") from exc
    except ValueError:            # a NUL in the path
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.SECURITY,
                    f"unable to stat: {path!r}: not a valid path") from None


def _group_list(uid: int, gid: int) -> tuple[int, ...]:
    """``gid`` and the groups the user is a member of (libvirt's virGetGroupList)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return (gid,)
    return tuple(dict.fromkeys([gid, *os.getgrouplist(name, gid)]))


def _path_error(path: str, uid: int, gid: int, exc: OSError) -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY,
                 f"unable to set user and group to '{uid}:{gid}' on '{path}': {exc.strerror}")
