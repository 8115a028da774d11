"""Block statistics of a guest that really reads and writes its disk.

The Linux test guest gets a second initramfs archive appended to its own (the
kernel unpacks both, the later one's files winning): an /init that loads the
host kernel's virtio modules, reads 1 MiB of /dev/vda and writes 256 KiB to
it with O_DIRECT (so every block is one request to the device) and fsync,
then prints the guest's own /sys/block/vda/stat.  Every figure pyvirtd gives
(virsh domblkstat, python3-libvirt's blockStats/blockStatsFlags and
getAllDomainStats, pyvirt's client) must equal QEMU's query-blockstats, and
the bytes must equal what the guest's kernel says it moved.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import pyvirt
from guests import LINUX_INITRD, linux_xml, wait_for_text
from test_stats import SYSTEM_PYTHON, disk_xml, make_image, qmp

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed"),
              pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")]

REPO = Path(__file__).resolve().parent.parent
KERNEL_VERSION = REPO / "build" / "guests" / "linux" / "kernel-version"
# Dependencies first, as insmod needs them.
MODULES = ("drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_legacy_dev",
           "drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci", "drivers/block/virtio_blk",
           "drivers/virtio/virtio_balloon")
READ_BLOCKS, WRITE_BLOCKS, BLOCK = 256, 64, 4096

IO_INIT = f"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() {{ echo "$*" > /dev/ttyS0; }}
for m in {' '.join(Path(m).name for m in MODULES)}; do
    insmod /lib/modules/pyvirt-io/$m.ko || say "PYVIRT-IO-WARN insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
dd if=/dev/vda of=/dev/null bs={BLOCK} count={READ_BLOCKS} skip=16 iflag=direct 2>/dev/null || say PYVIRT-IO-WARN read
dd if=/dev/zero of=/dev/vda bs={BLOCK} count={WRITE_BLOCKS} seek=1024 oflag=direct conv=fsync,notrunc 2>/dev/null \\
    || say PYVIRT-IO-WARN write
say "PYVIRT-IO-STAT $(cat /sys/block/vda/stat)"
say PYVIRT-IO-DONE
case " $(cat /proc/cmdline) " in
    *" pyvirt.io=loop "*)    # keeps reading, for tests that watch the figures move
        while :; do dd if=/dev/vda of=/dev/null bs={BLOCK} count=16 iflag=direct 2>/dev/null; sleep 0.2; done ;;
esac
while :; do sleep 3600; done
"""


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's initramfs format ("newc") of (name, mode, data)."""
    out = bytearray()

    def add(ino: int, name: str, mode: int, data: bytes) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))
    for ino, (name, mode, data) in enumerate(entries, start=1):
        add(ino, name, mode, data)
    add(0, "TRAILER!!!", 0, b"")
    return bytes(out)


def io_initrd(where: Path) -> Path:
    """The guest's initramfs with the disk-exercising /init and the virtio modules appended."""
    if not KERNEL_VERSION.exists():
        pytest.skip("the Linux test guest is not built")
    moddir = Path("/lib/modules") / KERNEL_VERSION.read_text().strip() / "kernel"
    entries: list[tuple[str, int, bytes]] = [("lib", 0o40755, b""), ("lib/modules", 0o40755, b""),
                                             ("lib/modules/pyvirt-io", 0o40755, b"")]
    for module in MODULES:
        path = moddir / f"{module}.ko"
        if not path.exists():
            pytest.skip(f"the guest kernel's module {path.name} is not on this host")
        entries.append((f"lib/modules/pyvirt-io/{path.name}", 0o100644, path.read_bytes()))
    entries.append(("init", 0o100755, IO_INIT.encode()))
    target = where / "io-initramfs.cpio.gz"
    target.write_bytes(LINUX_INITRD.read_bytes() + gzip.compress(cpio_newc(entries)))
    target.chmod(0o644)
    return target


PY3 = r"""
import json, sys, libvirt
conn = libvirt.openReadOnly(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
(_, rec), = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_BLOCK, 0)
print(json.dumps({"blockStats": dom.blockStats("vda"), "blockStatsFlags": dom.blockStatsFlags("vda", 0),
                  "all": {k: v for k, v in rec.items() if k.startswith("block.0.")}}))
"""


FIRMWARE_READ = 512    # SeaBIOS reads the boot disk's first sector before the kernel runs


def start_io_guest(daemon, name: str = "st", loop: bool = False,
                   image: Path | None = None) -> tuple[pyvirt.virDomain, Path, Path]:
    """The Linux guest with a virtio qcow2 disk (``image``, else a new empty one) and a
    virtio balloon, once it has done its disk I/O (and, with ``loop``, goes on
    reading): (domain, image, serial log)."""
    work = daemon.workdir
    image = image or make_image(work / f"{name}.qcow2")
    log = work / f"{name}.log"
    xml = linux_xml(name, log)
    initrd = io_initrd(work)
    xml = xml.replace(f"<initrd>{log.parent / LINUX_INITRD.name}</initrd>", f"<initrd>{initrd}</initrd>")
    assert str(initrd) in xml
    if loop:
        xml = xml.replace("panic=-1</cmdline>", "panic=-1 pyvirt.io=loop</cmdline>")
    xml = xml.replace("  </devices>", disk_xml(image) + "\n    <memballoon model='virtio'/>\n  </devices>")
    dom = pyvirt.open(daemon.uri).createXML(xml, 0)
    try:
        wait_for_text(log, "PYVIRT-IO-DONE", timeout=120)
    except BaseException:
        dom.destroy()
        raise
    return dom, image, log


def test_block_figures_of_a_guest_doing_disk_io(pyvirtd, guests_built):
    dom, image, log = start_io_guest(pyvirtd)
    try:
        text = log.read_text()
        assert "PYVIRT-IO-WARN" not in text, text
        guest_stat = [int(v) for v in text.split("PYVIRT-IO-STAT ", 1)[1].split("\n", 1)[0].split()]
        guest_rd_bytes, guest_wr_bytes = guest_stat[2] * 512, guest_stat[6] * 512

        entry, = qmp(pyvirtd, "query-blockstats")
        qemu = entry["stats"]
        # the guest's own count of what it moved is what the device saw, plus the boot
        # sector the firmware reads first: the disk is the boot device (bootindex 1, as
        # libvirt gives the first disk for <boot dev='hd'/>, the default)
        assert qemu["rd_bytes"] - FIRMWARE_READ == guest_rd_bytes >= READ_BLOCKS * BLOCK
        assert qemu["wr_bytes"] == guest_wr_bytes >= WRITE_BLOCKS * BLOCK
        assert qemu["rd_operations"] >= READ_BLOCKS and qemu["wr_operations"] >= WRITE_BLOCKS
        assert qemu["flush_operations"] >= 1
        expect = [qemu["rd_operations"], qemu["rd_bytes"], qemu["wr_operations"], qemu["wr_bytes"], -1]

        # pyvirt's client
        assert list(dom.blockStats("vda")) == expect
        flags = dom.blockStatsFlags("vda", 0)
        assert flags["rd_operations"] == qemu["rd_operations"] and flags["wr_bytes"] == qemu["wr_bytes"]
        assert flags["flush_operations"] == qemu["flush_operations"]
        assert flags["rd_total_times"] == qemu["rd_total_time_ns"]
        assert flags["wr_total_times"] == qemu["wr_total_time_ns"]
        assert flags["flush_total_times"] == qemu["flush_total_time_ns"]

        # stock python3-libvirt
        run = subprocess.run([SYSTEM_PYTHON, "-c", PY3, pyvirtd.uri, "st"], capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, run.stderr
        got = json.loads(run.stdout)
        assert got["blockStats"] == expect
        assert got["blockStatsFlags"]["rd_bytes"] == qemu["rd_bytes"]
        assert got["blockStatsFlags"]["wr_operations"] == qemu["wr_operations"]
        rec = got["all"]
        assert rec["block.0.name"] == "vda" and rec["block.0.path"] == str(image)
        assert (rec["block.0.rd.reqs"], rec["block.0.rd.bytes"], rec["block.0.wr.reqs"],
                rec["block.0.wr.bytes"], rec["block.0.fl.reqs"]) == (
            qemu["rd_operations"], qemu["rd_bytes"], qemu["wr_operations"], qemu["wr_bytes"],
            qemu["flush_operations"])
        assert rec["block.0.rd.times"] == qemu["rd_total_time_ns"] > 0
        assert rec["block.0.wr.times"] == qemu["wr_total_time_ns"] > 0

        # stock virsh, the operator's view
        out = subprocess.run(["virsh", "-c", pyvirtd.uri, "domblkstat", "st", "vda"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        rows = dict(line.split()[1:] for line in out.stdout.splitlines() if line.strip())
        assert int(rows["rd_req"]) == qemu["rd_operations"] and int(rows["rd_bytes"]) == qemu["rd_bytes"]
        assert int(rows["wr_req"]) == qemu["wr_operations"] and int(rows["wr_bytes"]) == qemu["wr_bytes"]
        assert int(rows["flush_operations"]) == qemu["flush_operations"]
    finally:
        dom.destroy()


DISK_ERRORS = r"""
import json, sys, libvirt
conn = libvirt.openReadOnly(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
out = {"errors": dom.diskErrors()}
try:
    conn.lookupByName("off").diskErrors()
except libvirt.libvirtError as e:
    out["off"] = [e.get_error_code(), e.get_error_message()]
print(json.dumps(out))
"""


def test_disk_errors_of_a_guest_doing_disk_io(pyvirtd, guests_built):
    """virsh domblkerror / diskErrors(): the disks QEMU's query-block reports in error
    (none here: the guest's I/O succeeded); a shut-off guest is refused as libvirtd refuses it."""
    dom, image, log = start_io_guest(pyvirtd)
    conn = pyvirt.open(pyvirtd.uri)
    off = conn.defineXML(linux_xml("off", pyvirtd.workdir / "off.log"))
    try:
        assert all(b.get("io-status", "ok") == "ok" for b in qmp(pyvirtd, "query-block"))
        out = subprocess.run(["virsh", "-c", pyvirtd.uri, "domblkerror", "st"], capture_output=True, text=True,
                             timeout=60)
        assert (out.returncode, out.stdout, out.stderr) == (0, "No errors found\n\n", "")
        out = subprocess.run(["virsh", "-c", pyvirtd.uri, "domblkerror", "off"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 1 and out.stderr == "error: Requested operation is not valid: domain is not running\n"
        assert dom.diskErrors() == {} and conn._call("domain_get_disk_errors", dom._ref, 0, 0) == ([], 1)
        run = subprocess.run([SYSTEM_PYTHON, "-c", DISK_ERRORS, pyvirtd.uri, "st"], capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, run.stderr
        got = json.loads(run.stdout)
        assert got["errors"] == {}
        assert got["off"] == [pyvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running"]
        with pytest.raises(pyvirt.libvirtError) as info:
            conn._call("domain_get_disk_errors", dom._ref, 257, 0)
        assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG and "maxerrors too large" in str(info.value)
    finally:
        dom.destroy()
        off.undefine()


def test_disk_errors_from_query_block():
    """query-block's io-status read as libvirt reads it (a unit test of the parsing alone:
    the stopped-on-error states need a host disk that fails)."""
    from pyvirt.drivers.qemu.stats import disk_errors
    reply = [{"device": "", "qdev": "/machine/peripheral/virtio-disk0/virtio-backend", "io-status": "nospace"},
             {"device": "", "qdev": "/machine/peripheral/virtio-disk1/virtio-backend", "io-status": "ok"},
             {"device": "", "qdev": "/machine/peripheral/scsi0-0-0-0", "io-status": "failed"},
             {"device": "", "qdev": "/machine/peripheral/ide0-1-0"}]
    assert disk_errors(reply) == {"virtio-disk0": 2, "scsi0-0-0-0": 1}


MEMORY = r"""
import json, sys, libvirt
dom = libvirt.open(sys.argv[1]).lookupByName(sys.argv[2])
print(json.dumps(dom.memoryStats()))
"""
# libvirt-python's memoryStats() key -> QEMU's guest-stats name and its unit (bytes become KiB)
GUEST_STATS = {"swap_in": ("stat-swap-in", 1024), "swap_out": ("stat-swap-out", 1024),
               "major_fault": ("stat-major-faults", 1), "minor_fault": ("stat-minor-faults", 1),
               "unused": ("stat-free-memory", 1024), "available": ("stat-total-memory", 1024),
               "usable": ("stat-available-memory", 1024), "disk_caches": ("stat-disk-caches", 1024)}


def test_memory_stats_of_the_guests_balloon_driver(pyvirtd, guests_built):
    """With the guest's virtio balloon driver loaded and a stats period set, memoryStats()
    (python3-libvirt, pyvirt's client) and virsh dommemstat give the guest's own figures:
    QEMU's guest-stats of the same update (last-update equal), converted as libvirt does."""
    dom, _image, _log = start_io_guest(pyvirtd)
    try:
        dom.setMemoryStatsPeriod(1, pyvirt.VIR_DOMAIN_AFFECT_LIVE)

        def guest_stats() -> dict:
            return qmp(pyvirtd, "qom-get", {"path": "/machine/peripheral/balloon0", "property": "guest-stats"})
        from guests import wait_for
        wait_for(lambda: guest_stats()["stats"].get("stat-free-memory", -1) >= 0, 30, interval=0.1,
                 what="the guest's first balloon statistics")
        for _attempt in range(20):           # the guest updates every second: take a pair of the same update
            before = guest_stats()
            run = subprocess.run([SYSTEM_PYTHON, "-c", MEMORY, pyvirtd.uri, "st"], capture_output=True,
                                 text=True, timeout=60)
            ours = dom.memoryStats()
            out = subprocess.run(["virsh", "-c", pyvirtd.uri, "dommemstat", "st"], capture_output=True,
                                 text=True, timeout=60)
            if guest_stats()["last-update"] == before["last-update"]:
                break
        else:
            pytest.fail("the guest's statistics changed around every reading")
        assert run.returncode == 0 and out.returncode == 0, (run.stderr, out.stderr)
        theirs = json.loads(run.stdout)
        virsh_rows = dict(line.split() for line in out.stdout.splitlines() if line.strip())
        for got in (theirs, ours, {k: int(v) for k, v in virsh_rows.items()}):
            assert got["last_update"] == before["last-update"]
            assert got["actual"] == qmp(pyvirtd, "query-balloon")["actual"] // 1024
            for key, (name, unit) in GUEST_STATS.items():
                if before["stats"].get(name, -1) >= 0:
                    assert got[key] == before["stats"][name] // unit, key
            assert 0 < got["unused"] < got["available"] <= 256 * 1024 and got["rss"] > 0
    finally:
        dom.destroy()
