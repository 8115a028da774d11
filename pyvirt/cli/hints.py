"""Plain words after an error the user can act on (imported only when one happens).

libvirt's messages for disk leases are exact but terse ("Lockspace resource
'3f2a…' is locked"): the line after them says which disk, why, and what to do.
"""

from __future__ import annotations

import re

from pyvirt.errors import ErrorDomain, ErrorNumber

# lockd: "the lease on 'PATH' is held ..."; etcd: "the lease on disk 'PATH' is held ..." or
# "the lease on disk 'PATH' (token N) was lost ..."
_LEASED_DISK = re.compile(r"the lease on (?:disk )?'(?P<what>[^']+)'")
_RESOURCE = re.compile(r"Lockspace resource '(?P<name>.+?)' is locked")


def hint_for(exc: BaseException) -> str | None:
    """A hint line for ``exc``, or None when the message says it all."""
    code, domain = getattr(exc, "get_error_code", lambda: 0)(), getattr(exc, "get_error_domain", lambda: 0)()
    message = exc.get_error_message() if hasattr(exc, "get_error_message") else str(exc)
    if code == ErrorNumber.RESOURCE_BUSY and domain == ErrorDomain.LOCKSPACE:
        found = _LEASED_DISK.search(message) or _RESOURCE.search(message)
        what = found.group(1) if found else "one of its disks"
        named = what if what.startswith("lease ") or what == "one of its disks" else f"disk '{what}'"
        if "was lost" in message:
            return (f"the guest lost its lease on {named} while the lock manager (etcd) was unreachable, "
                    "and another host may hold it now: the guest stays paused; destroy it, and start it "
                    "again once no other guest uses the disk")
        return (f"{named} is in use by another running guest, on this host or on another host sharing "
                "the storage (the lease on it is held there): stop or migrate that guest first, "
                "since two guests writing one disk would corrupt it")
    if domain == ErrorDomain.LOCKING and "no leases specified" in message:
        return ("the lock manager requires a lease for every read/write disk: set auto_disk_leases = 1 "
                "in pyvirtd.conf, add a <lease> to the domain, or mark the disk <shareable/> or <readonly/>")
    if domain == ErrorDomain.LOCKING and ("lock daemon" in message or "pyvirtlockd" in message):
        return ("pyvirtd keeps disk leases in its lock daemon (pyvirtlockd, started on demand); "
                "its log is pyvirtlockd.log in the daemon's log directory")
    if "lock state for migration cookie" in message or ("lock driver" in message and "different" in message):
        return "both hosts of a migration must run the same lock_manager in pyvirtd.conf"
    return None
