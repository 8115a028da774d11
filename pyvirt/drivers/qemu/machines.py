"""Machine type names as this QEMU binary reports them: ``pc`` → ``pc-i440fx-7.2``.

libvirt writes the versioned machine type into a definition (qemuCanonicalizeMachine),
so a guest defined on one host keeps the same machine when it moves to a host with
a newer QEMU; pyvirt does the same.  The aliases come from ``EMULATOR -machine help``
(a second's work at most, no accelerator opened), kept per binary path, size and
modification time, so an upgraded QEMU is asked again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess

log = logging.getLogger(__name__)

# "pc    Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)"
_ALIAS_RE = re.compile(r"^(\S+)\s.*\(alias of (\S+)\)\s*$")
_DEFAULT_RE = re.compile(r"^(\S+)\s.*\(default\)\s*$")
_cache: dict[tuple[str, int, int], dict[str, str]] = {}


def _key(emulator: str) -> tuple[str, int, int] | None:
    try:
        st = os.stat(emulator)
    except OSError:
        return None
    return (emulator, st.st_size, st.st_mtime_ns)


def parse_help(text: str) -> dict[str, str]:
    """alias → canonical machine type from ``-machine help``; '' maps to the default."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if m := _ALIAS_RE.match(line):
            found[m.group(1)] = m.group(2)
        elif m := _DEFAULT_RE.match(line):
            found.setdefault("", m.group(1))
    if "" not in found and "pc" in found:
        found[""] = found["pc"]
    return found


def aliases(emulator: str) -> dict[str, str]:
    """The aliases of ``emulator``'s machine types (empty when it cannot be asked:
    then the names stay as written, and QEMU itself refuses an unknown one)."""
    key = _key(emulator)
    if key is None:
        return {}
    if key not in _cache:
        try:
            out = subprocess.run([emulator, "-machine", "help"], capture_output=True, text=True,
                                 timeout=30, stdin=subprocess.DEVNULL, check=False).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("cannot list the machine types of %s: %s", emulator, exc)
            return {}
        _cache[key] = parse_help(out)
    return _cache[key]


async def aliases_async(emulator: str) -> dict[str, str]:
    """:func:`aliases` off the event loop the first time a binary is asked (it runs QEMU)."""
    key = _key(emulator)
    if key is not None and key in _cache:
        return _cache[key]
    return await asyncio.to_thread(aliases, emulator)


def canonical(machine: str | None, table: dict[str, str]) -> str | None:
    """The versioned name of ``machine`` (None: the binary's default), or it unchanged."""
    if machine is None:
        return table.get("") or None
    return table.get(machine, machine)
