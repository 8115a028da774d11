"""Block jobs (copy, commit, pull) on a real QEMU guest through a real pyvirtd, driven by
stock virsh (and libvirt-python's calls through pyvirt's library for the details).

Every job is checked by content: the images are compared or read back with
qemu-img/qemu-io after the guest is gone, and the live XML shows what libvirt
shows (``<mirror>`` during a copy, the new source after a pivot, the backing
chain after a commit or pull).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path

import pytest

import pyvirt
from guests import READY, tiny_xml, wait_for, wait_for_text

pytestmark = pytest.mark.qemu


def virsh(uri: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    out = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def make_image(path: Path, size: str = "32M", backing: Path | None = None) -> None:
    extra = ["-b", str(backing), "-F", "qcow2"] if backing else []
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *extra, str(path), size], check=True)


def qemu_io(path: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-io", "-c", command, str(path)], capture_output=True, text=True)


def write(path: Path, pattern: int, offset: str, length: str) -> None:
    out = qemu_io(path, f"write -P {pattern:#x} {offset} {length}")
    assert out.returncode == 0, out.stdout + out.stderr


def reads(path: Path, pattern: int, offset: str, length: str) -> bool:
    out = qemu_io(path, f"read -P {pattern:#x} {offset} {length}")
    return out.returncode == 0 and "Pattern verification failed" not in out.stdout


def backing_of(path: Path) -> str | None:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U", str(path)],
                                     capture_output=True, text=True, check=True).stdout)
    return info.get("backing-filename")


def start(d, name: str, disk: Path) -> pyvirt.virDomain:
    log = d.workdir / f"{name}.log"
    extra = f"""
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"""
    dom = pyvirt.open(d.uri).createXML(tiny_xml(name, log, extra_devices=extra), 0)
    wait_for_text(log, READY)
    return dom


def source_of(dom: pyvirt.virDomain) -> str:
    return re.search(r"<disk .*?<source file='([^']+)'", dom.XMLDesc(0), re.S).group(1)


def test_blockcopy_pivot_with_virsh(pyvirtd):
    """virsh blockcopy --wait --verbose --pivot: the guest ends on the copy, which has
    the source's content; the live XML names it."""
    src = pyvirtd.workdir / "src.qcow2"
    make_image(src)
    write(src, 0xAB, "0", "6M")
    dom = start(pyvirtd, "bc", src)
    dest = pyvirtd.workdir / "copy.qcow2"
    out = virsh(pyvirtd.uri, "blockcopy", "bc", "vda", "--dest", str(dest), "--format", "qcow2",
                "--wait", "--verbose", "--pivot")
    assert "Successfully pivoted" in out.stdout
    assert "Block Copy: [100 %]" in out.stdout + out.stderr
    assert source_of(dom) == str(dest)
    assert "<mirror" not in dom.XMLDesc(0)
    assert dom.blockJobInfo("vda") == {}
    dom.destroy()
    cmp = subprocess.run(["qemu-img", "compare", str(src), str(dest)], capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout


def test_blockcopy_finish_keeps_source_and_mirror_xml(pyvirtd):
    """During a copy the live XML has libvirt's <mirror ... job='copy' ready='yes'>;
    --finish ends the job with a consistent copy and the guest on its own image."""
    src = pyvirtd.workdir / "src.qcow2"
    make_image(src)
    write(src, 0x5C, "1M", "4M")
    dom = start(pyvirtd, "bf", src)
    dest = pyvirtd.workdir / "copy.raw"
    out = virsh(pyvirtd.uri, "blockcopy", "bf", "vda", str(dest), "--format", "raw", "--wait")
    assert "Now in mirroring phase" in out.stdout
    xml = dom.XMLDesc(0)
    assert (f"<mirror type='file' file='{dest}' format='raw' job='copy' ready='yes'>" in xml), xml
    assert f"<source file='{dest}'/>" in xml
    info = dom.blockJobInfo("vda")
    assert info["type"] == pyvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY and info["cur"] == info["end"] > 0
    # a second job on the same disk is refused as libvirt does
    err = virsh(pyvirtd.uri, "blockpull", "bf", "vda", check=False)
    assert "disk 'vda' already in active block job" in err.stderr
    out = virsh(pyvirtd.uri, "blockjob", "bf", "vda", "--abort")
    assert source_of(dom) == str(src) and "<mirror" not in dom.XMLDesc(0)
    dom.destroy()
    cmp = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(src), str(dest)],
                         capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout


def test_blockcommit_active_pivot(pyvirtd):
    """virsh blockcommit --active --pivot --wait: the overlay's data lands in the base,
    which becomes the disk."""
    base, top = pyvirtd.workdir / "base.qcow2", pyvirtd.workdir / "top.qcow2"
    make_image(base)
    write(base, 0x11, "0", "8M")
    make_image(top, backing=base)
    write(top, 0x22, "2M", "2M")
    dom = start(pyvirtd, "cm", top)
    out = virsh(pyvirtd.uri, "blockcommit", "cm", "vda", "--active", "--pivot", "--wait", "--verbose")
    assert "Successfully pivoted" in out.stdout
    assert source_of(dom) == str(base)
    dom.destroy()
    assert reads(base, 0x22, "2M", "2M") and reads(base, 0x11, "0", "2M") and reads(base, 0x11, "4M", "4M")


def test_blockcommit_intermediate_and_refusals(pyvirtd):
    """base <- mid <- top: commit mid into base (not the active image); the chain is
    then base <- top with mid's data in base.  Committing the active image needs --active."""
    base, mid, top = (pyvirtd.workdir / f"{n}.qcow2" for n in ("base", "mid", "top"))
    make_image(base)
    write(base, 0x01, "0", "4M")
    make_image(mid, backing=base)
    write(mid, 0x02, "1M", "1M")
    make_image(top, backing=mid)
    write(top, 0x03, "3M", "1M")
    dom = start(pyvirtd, "ci", top)
    err = virsh(pyvirtd.uri, "blockcommit", "ci", "vda", "--base", str(base), "--top", str(top), check=False)
    assert "commit of 'vda' active layer requires active flag" in err.stderr
    virsh(pyvirtd.uri, "blockcommit", "ci", "vda", "--base", str(base), "--top", str(mid), "--wait")
    xml = dom.XMLDesc(0)
    assert f"<source file='{base}'/>" in xml and str(mid) not in xml
    dom.destroy()
    assert backing_of(top) == str(base)
    assert reads(top, 0x02, "1M", "1M") and reads(top, 0x03, "3M", "1M") and reads(top, 0x01, "0", "1M")


def test_blockpull_with_virsh(pyvirtd):
    """virsh blockpull --wait: the overlay gets its backing file's data and stands alone."""
    base, top = pyvirtd.workdir / "base.qcow2", pyvirtd.workdir / "top.qcow2"
    make_image(base)
    write(base, 0x44, "0", "6M")
    make_image(top, backing=base)
    write(top, 0x55, "1M", "1M")
    dom = start(pyvirtd, "bp", top)
    virsh(pyvirtd.uri, "blockpull", "bp", "vda", "--wait")
    assert "backingStore type='file'" not in dom.XMLDesc(0)
    dom.destroy()
    assert backing_of(top) is None
    assert reads(top, 0x44, "0", "1M") and reads(top, 0x55, "1M", "1M") and reads(top, 0x44, "2M", "4M")


def test_blockjob_info_speed_abort_and_events(pyvirtd):
    """A slow copy: virsh blockjob --info shows it and its bandwidth, --bandwidth changes
    it, --abort cancels it; BLOCK_JOB_2 events arrive (READY never, CANCELED once)."""
    src = pyvirtd.workdir / "big.qcow2"
    make_image(src, "128M")
    write(src, 0x66, "0", "64M")
    dom = start(pyvirtd, "sj", src)
    conn = pyvirt.open(pyvirtd.uri)
    seen: list[tuple[str, int, int]] = []
    got = threading.Event()

    def on_job(_conn, _dom, disk, job_type, status, _opaque):
        seen.append((disk, job_type, status))
        got.set()
    cb = conn.domainEventRegisterAny(conn.lookupByName("sj"), pyvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, on_job, None)
    dest = pyvirtd.workdir / "slow.qcow2"
    virsh(pyvirtd.uri, "blockcopy", "sj", "vda", str(dest), "--bandwidth", "1")
    out = virsh(pyvirtd.uri, "blockjob", "sj", "vda", "--info")
    # virsh prints the progress on stderr and the bandwidth on stdout
    assert re.search(r"Block Copy: \[\s*\d+ %\]", out.stderr), out.stderr
    assert "Bandwidth limit: 1048576 bytes/s (1.000 MiB/s)" in out.stdout, out.stdout
    virsh(pyvirtd.uri, "blockjob", "sj", "vda", "--bandwidth", "2")
    assert dom.blockJobInfo("vda")["bandwidth"] == 2
    assert dom.blockJobInfo("vda", pyvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES)["bandwidth"] == 2 << 20
    assert "job='copy'" in dom.XMLDesc(0) and "ready=" not in dom.XMLDesc(0)
    err = virsh(pyvirtd.uri, "blockjob", "sj", "vda", "--pivot", check=False)
    assert "block job 'vda' not ready for pivot yet" in err.stderr
    virsh(pyvirtd.uri, "blockjob", "sj", "vda", "--abort")
    assert dom.blockJobInfo("vda") == {} and "<mirror" not in dom.XMLDesc(0)
    wait_for(got.is_set, 10, what="the BLOCK_JOB_2 event")
    assert seen == [("vda", pyvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY, pyvirt.VIR_DOMAIN_BLOCK_JOB_CANCELED)]
    conn.domainEventDeregisterAny(cb)
    err = virsh(pyvirtd.uri, "blockjob", "sj", "vda", "--abort", check=False)
    assert "No active block job 'vda'" in err.stderr
    err = virsh(pyvirtd.uri, "blockjob", "sj", "vdz", "--info", check=False)
    assert "disk 'vdz' not found in domain" in err.stderr
    dom.destroy()


def pyvirt_cli(uri: str, *args: str) -> subprocess.CompletedProcess:
    import sys
    return subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, *args], capture_output=True, text=True,
                          timeout=120)


def test_pyvirt_cli_prints_what_virsh_prints(pyvirtd):
    """pyvirt's blockcopy/blockjob/blockpull/blockcommit against the same daemon and
    guest as stock virsh: same stdout, same error lines, same exit status."""
    src = pyvirtd.workdir / "src.qcow2"
    make_image(src)
    write(src, 0x3A, "0", "2M")
    dom = start(pyvirtd, "cl", src)
    for n, tool in enumerate((lambda *a: virsh(pyvirtd.uri, *a, check=False), lambda *a: pyvirt_cli(pyvirtd.uri, *a))):
        dest = pyvirtd.workdir / f"copy{n}.qcow2"
        runs = [tool("blockjob", "cl", "vda", "--info"),
                tool("blockcopy", "cl", "vda", str(dest), "--wait", "--finish"),
                tool("blockcopy", "cl", "vda", str(dest), "--reuse-external", "--bandwidth", "1"),
                tool("blockjob", "cl", "vda", "--info", "--raw"),
                tool("blockpull", "cl", "vda"),
                tool("blockjob", "cl", "vda", "--bandwidth", "2"),
                tool("blockjob", "cl", "vda", "--abort"),
                tool("blockjob", "cl", "vda", "--abort"),
                tool("blockcommit", "cl", "vda", "--active", "--wait"),
                tool("blockjob", "cl", "vdq", "--info")]
        # the copy advances between the calls: its offset is not compared
        seen = [(r.returncode, re.sub(r"cur=\d+", "cur=N", r.stdout),
                 r.stderr.strip().splitlines()[-1:] if r.returncode else []) for r in runs]
        if n == 0:
            expected = seen
        else:
            for ours, theirs, r in zip(seen, expected, runs):
                assert ours == theirs, (r.args, ours, theirs)
    assert expected[0][1] == "No current block job for vda\n"
    assert expected[1][1].endswith("Successfully copied\n")
    assert "cur=" in expected[3][1] and " type=Block Copy" in expected[3][1]
    assert "No active block job 'vda'" in expected[7][2][0]
    assert "disk 'vdq' not found in domain" in expected[9][2][0]
    dom.destroy()


def test_bad_arguments_get_libvirt_errors(pyvirtd):
    """Bad input is refused with a libvirt-style error and the guest carries on; nothing
    is left running (no job, no <mirror>)."""
    src = pyvirtd.workdir / "src.qcow2"
    make_image(src)
    dom = start(pyvirtd, "ba", src)
    dest = pyvirtd.workdir / "d.qcow2"
    good = f"<disk type='file'><source file='{dest}'/><driver type='qcow2'/></disk>"
    cases = [
        (lambda: dom.blockCopy("vda", "<disk", {}, 0), pyvirt.VIR_ERR_XML_DETAIL),   # libvirt: a syntax error
        (lambda: dom.blockCopy("vda", "<disk type='network'><source protocol='nbd'/></disk>", {}, 0),
         pyvirt.VIR_ERR_CONFIG_UNSUPPORTED),
        (lambda: dom.blockCopy("vda", "<disk type='file'><source file='rel.qcow2'/></disk>", {}, 0),
         pyvirt.VIR_ERR_INVALID_ARG),
        (lambda: dom.blockCopy("vda", good, {"granularity": 1000}, 0), pyvirt.VIR_ERR_INVALID_ARG),
        (lambda: dom.blockCopy("vda", good, {}, 1 << 10), pyvirt.VIR_ERR_INVALID_ARG),
        (lambda: dom.blockCopy("vdx", good, {}, 0), pyvirt.VIR_ERR_INVALID_ARG),
        (lambda: dom.blockCopy("vda", good, {}, pyvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT), pyvirt.VIR_ERR_INVALID_ARG),
        (lambda: dom.blockCommit("vda", None, None, 0, pyvirt.VIR_DOMAIN_BLOCK_COMMIT_DELETE),
         pyvirt.VIR_ERR_OPERATION_UNSUPPORTED),
        (lambda: dom.blockCommit("vda", None, None, 0, pyvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE),
         pyvirt.VIR_ERR_INVALID_ARG),        # no backing file to commit into
        (lambda: dom.blockRebase("vda", None, 0, pyvirt.VIR_DOMAIN_BLOCK_REBASE_COPY), pyvirt.VIR_ERR_INVALID_ARG),
        (lambda: dom.blockJobSetSpeed("vda", 1, 0), pyvirt.VIR_ERR_OPERATION_INVALID),
        (lambda: dom.blockJobAbort("vda", pyvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT), pyvirt.VIR_ERR_OPERATION_INVALID),
        (lambda: dom.blockPull("vda", 1 << 60, 0), pyvirt.VIR_ERR_OVERFLOW),
    ]
    for call, code in cases:
        with pytest.raises(pyvirt.libvirtError) as exc:
            call()
        assert exc.value.get_error_code() == code, (exc.value, code)
    assert dom.blockJobInfo("vda") == {} and "<mirror" not in dom.XMLDesc(0)
    assert not dest.exists()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    ro = pyvirt.openReadOnly(pyvirtd.uri).lookupByName("ba")
    assert ro.blockJobInfo("vda") == {}
    with pytest.raises(pyvirt.libvirtError) as exc:
        ro.blockPull("vda", 0, 0)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_DENIED
    dom.destroy()


def test_a_restarted_daemon_follows_the_copy_and_pivots(pyvirtd):
    """A copy under way when the daemon restarts: the new daemon finds the job in QEMU,
    shows it, raises its READY event and pivots to the copy as before."""
    src = pyvirtd.workdir / "src.qcow2"
    make_image(src, "64M")
    write(src, 0x7E, "0", "32M")
    dom = start(pyvirtd, "rs", src)
    dest = pyvirtd.workdir / "copy.qcow2"
    virsh(pyvirtd.uri, "blockcopy", "rs", "vda", str(dest), "--bandwidth", "1")
    pyvirtd.stop()
    pyvirtd.start()
    conn = pyvirt.open(pyvirtd.uri)
    dom = conn.lookupByName("rs")
    assert dom.blockJobInfo("vda")["type"] == pyvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY
    assert "job='copy'" in dom.XMLDesc(0)
    ready = threading.Event()
    cb = conn.domainEventRegisterAny(dom, pyvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
                                     lambda c, d, disk, t, st, o: st == pyvirt.VIR_DOMAIN_BLOCK_JOB_READY and ready.set(),
                                     None)
    dom.blockJobSetSpeed("vda", 0)          # unlimited: the copy catches up
    wait_for(ready.is_set, 60, what="the READY event from the restarted daemon")
    conn.domainEventDeregisterAny(cb)
    assert "ready='yes'" in dom.XMLDesc(0)
    virsh(pyvirtd.uri, "blockjob", "rs", "vda", "--pivot")
    assert source_of(dom) == str(dest) and "<mirror" not in dom.XMLDesc(0)
    dom.destroy()
    cmp = subprocess.run(["qemu-img", "compare", str(src), str(dest)], capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout
