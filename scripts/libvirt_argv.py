"""Regenerate tests/data/libvirtargv/: libvirt 9.0's QEMU argv for each domain XML.

For every ``tests/data/domain/NAME.xml`` this asks a private libvirtd 9.0
(``bench/libvirt_ref.py``'s LibvirtHost: its own namespace, directories and
port, nothing of the machine's own libvirt touched) for::

    virsh -c URI domxml-to-native qemu-argv NAME.xml

and writes the answer to ``tests/data/libvirtargv/NAME.args`` (the command
that made it on the first line, as a comment), or libvirt's refusal to
``NAME.error``.  For the guests in LIVE it also starts the guest (its files
made in a temporary directory, the tiny test kernel from build/guests) and
keeps libvirt's live XML (``virsh dumpxml``) and migratable XML (``virsh
dumpxml --migratable``, what its migration Begin sends) as NAME.live.xml and
NAME.migratable.xml, the temporary paths written back as the domain XML had them.  ``tests/test_libvirt_argv.py`` compares pyvirt's argv with
these files.  Run as root on Debian 12 with libvirt-daemon-driver-qemu::

    .venv/bin/python scripts/libvirt_argv.py [NAME ...]

Review the diff before committing: the files are the reference.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from libvirt_ref import VIRSH, LibvirtHost, pick_free_port  # noqa: E402
from lxml import etree  # noqa: E402

DOMAINS = REPO / "tests" / "data" / "domain"
OUT = REPO / "tests" / "data" / "libvirtargv"
# The host's work directory: kept between runs so QEMU's capabilities are probed once.
WORKDIR = REPO / "build" / "libvirt-argv"


def _without_environment(line: str) -> str:
    """The argv without the VAR=value words virsh puts first (the daemon's PATH
    and the domain's HOME: the host's, not the guest's)."""
    words = shlex.split(line)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)
    return shlex.join(words)


def generate(host: LibvirtHost, xml: Path) -> None:
    cmd = [VIRSH, "-c", host.uri, "domxml-to-native", "qemu-argv", xml.name]
    proc = subprocess.run(cmd, cwd=xml.parent, capture_output=True, text=True, timeout=120)
    shown = "virsh -c qemu:///system domxml-to-native qemu-argv " + \
        shlex.quote(str(xml.relative_to(REPO)))
    for stale in (OUT / f"{xml.stem}.args", OUT / f"{xml.stem}.error"):
        stale.unlink(missing_ok=True)
    if proc.returncode == 0:
        (OUT / f"{xml.stem}.args").write_text(f"# {shown}\n{_without_environment(proc.stdout)}\n")
    else:
        (OUT / f"{xml.stem}.error").write_text(f"# {shown}\n{proc.stderr.strip()}\n")
    print(f"{xml.stem}: {'ok' if proc.returncode == 0 else proc.stderr.strip()}")


# guests started for their live and migratable XML
LIVE = ("tiny", "full", "q35")
# the path prefixes of tests/data/domain's XMLs -> a directory of the temporary tree
PATH_PREFIXES = {"/srv/shared/": "shared", "/var/log/guests/": "log", "/var/lib/guests/": "lib"}
TINY_KERNEL = REPO / "build" / "guests" / "tiny.elf"


def live_xml(host: LibvirtHost, xml: Path) -> None:
    """Start the guest on ``host`` and keep its live and migratable XML."""
    text = xml.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        mapping = {prefix: f"{tmp}/{sub}/" for prefix, sub in PATH_PREFIXES.items()}
        for sub in PATH_PREFIXES.values():
            os.mkdir(f"{tmp}/{sub}")
        for prefix, real in mapping.items():
            text = text.replace(prefix, real)
        root = etree.fromstring(text.encode())
        for source in root.iterfind("devices/disk/source"):
            driver = source.getparent().find("driver")
            fmt = driver.get("type", "raw") if driver is not None else "raw"
            subprocess.run(["qemu-img", "create", "-q", "-f", fmt, source.get("file"), "16M"], check=True)
        kernel = root.findtext("os/kernel")
        if kernel:
            shutil.copyfile(TINY_KERNEL, kernel)
        started = Path(tmp) / xml.name
        started.write_text(text)
        name = root.findtext("name")
        host.virsh("create", str(started))
        try:
            for suffix, args in (("live", ()), ("migratable", ("--migratable",))):
                out = host.virsh("dumpxml", *args, name).stdout
                for prefix, real in mapping.items():
                    out = out.replace(real, prefix)
                # (an XML comment cannot hold '--': the flag is named instead)
                shown = f"virsh dumpxml {name}" + (" (VIR_DOMAIN_XML_MIGRATABLE)" if args else "")
                (OUT / f"{xml.stem}.{suffix}.xml").write_text(f"<!-- {shown} -->\n{out.strip()}\n")
            # and libvirt's argv for its own live XML (the CPU with the features QEMU enabled)
            dumped = Path(tmp) / f"{xml.stem}.live.xml"
            dumped.write_text(host.virsh("dumpxml", name).stdout)
            argv = host.virsh("domxml-to-native", "qemu-argv", str(dumped)).stdout
            for prefix, real in mapping.items():
                argv = argv.replace(real, prefix)
            shown = ("virsh -c qemu:///system domxml-to-native qemu-argv "
                     f"tests/data/libvirtargv/{xml.stem}.live.xml")
            (OUT / f"{xml.stem}.live.args").write_text(f"# {shown}\n{_without_environment(argv)}\n")
        finally:
            host.virsh("destroy", name, check=False)
    print(f"{xml.stem}: live and migratable XML")


def main(names: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    xmls = [DOMAINS / f"{n}.xml" for n in names] if names else sorted(DOMAINS.glob("*.xml"))
    with tempfile.TemporaryDirectory():
        with LibvirtHost(WORKDIR, pick_free_port()) as host:
            for xml in xmls:
                generate(host, xml)
                if xml.stem in LIVE:
                    live_xml(host, xml)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
