"""pyvirtd.8, generated from pyvirtd's option parser, its module documentation
and the configuration tables (what it acts on, with types and defaults; what
it accepts and ignores).  :mod:`pyvirt.manpages` writes it.
"""

from __future__ import annotations

import dataclasses
import re

from pyvirt.roff import esc, option_rows


def pyvirtd_page() -> str:
    import pyvirt
    from . import main as daemon_main
    from .config import DaemonConfig
    from .conf_keys import LIBVIRTD_KEYS, PYVIRT_KEYS, QEMU_KEYS, source_of, value_type
    doc = (daemon_main.__doc__ or "").strip().split("\n\n")
    lines = [f'.TH PYVIRTD 8 "" "pyvirt {pyvirt.__version__}" "pyvirt manual"',
             ".SH NAME", "pyvirtd \\- libvirt\\-compatible QEMU/KVM host daemon",
             ".SH SYNOPSIS", ".B pyvirtd", "[\\fIOPTION\\fR]...",
             ".SH DESCRIPTION"]
    for paragraph in doc:
        text = re.sub(r":[a-z]+:`([^`]+)`", r"\1", paragraph.replace("``", ""))   # reST roles
        lines += [esc(" ".join(text.split())), ".PP"]
    lines.pop()
    lines += [".SH OPTIONS", *option_rows(daemon_main.build_parser()), ".SH CONFIGURATION",
              esc("The configuration file has libvirtd.conf's syntax and may also hold qemu.conf's keys, "
                  "each with libvirt's value type. A key either file documents that pyvirtd does not act on "
                  "is logged once as ignored; any other key, or a value of the wrong type, is an error "
                  "naming its line."),
              ".SS Settings pyvirtd acts on"]
    acted = []
    for f in dataclasses.fields(DaemonConfig):
        kind = value_type(f.name)
        if kind is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        acted.append(f.name)
        shown = "unset" if default is None else repr(default).replace("'", '"')
        lines += [".TP", f"\\fB{esc(f.name)}\\fR ({esc(str(source_of(f.name)))}, {esc(kind.value)})",
                  esc(f"default {shown}")]
    own = sorted(k for k in PYVIRT_KEYS if k not in acted)
    if own:
        lines += [".SS pyvirt's own settings", esc(", ".join(own))]
    ignored = sorted(k for k in {**LIBVIRTD_KEYS, **QEMU_KEYS} if k not in acted)
    lines += [".SS Accepted and ignored", esc(", ".join(ignored))]
    lines += [".SH SIGNALS", ".TP", "\\fBSIGTERM\\fR, \\fBSIGINT\\fR",
              esc("stop: listeners close, clients are dropped, guests keep running and the next start "
                  "adopts them."),
              ".SH ENVIRONMENT", ".TP", "\\fBNOTIFY_SOCKET\\fR",
              esc("set by systemd for Type=notify: pyvirtd sends READY=1 once it serves and STOPPING=1 "
                  "when it stops."),
              ".SH FILES", ".TP", esc("/etc/pyvirt/pyvirtd.conf"), esc("the configuration the unit file names"),
              ".TP", esc("pyvirtd.service"), esc("the systemd unit make install writes (Type=notify, "
                                                 "KillMode=process)"),
              ".SH SEE ALSO", "\\fBpyvirt\\fR(1), \\fBlibvirtd\\fR(8), \\fBsystemd.service\\fR(5)", ""]
    return "\n".join(lines)
