"""Stock python3-libvirt (Debian's package, built for the system Python) loaded
into the test interpreter, so the soak's clients are libvirt's own C client.

The package is found by asking the system interpreter where it lives; it is
loaded only when its extension module was built for this interpreter's ABI
(the same CPython minor version), otherwise the caller skips."""

from __future__ import annotations

import importlib
import importlib.machinery
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SYSTEM_PYTHON = "/usr/bin/python3"


def load() -> tuple[ModuleType, ModuleType] | str:
    """(libvirt, libvirt_qemu), or why they cannot be loaded here."""
    if "libvirtmod" in sys.modules:
        return sys.modules["libvirt"], sys.modules["libvirt_qemu"]
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt; print(libvirt.__file__)"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no system Python: {exc}"
    if out.returncode:
        return "python3-libvirt is not installed"
    where = Path(out.stdout.strip()).parent
    if not any((where / f"libvirtmod{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES):
        return f"python3-libvirt in {where} is built for another Python than {sys.version.split()[0]}"
    sys.path.append(str(where))
    try:
        libvirt = importlib.import_module("libvirt")
        libvirt_qemu = importlib.import_module("libvirt_qemu")
    finally:
        sys.path.remove(str(where))
    # The C library prints every error on stderr unless a handler is set; the
    # soak reads them from the exceptions.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt, libvirt_qemu
