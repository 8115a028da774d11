"""Live migration between a real libvirtd 9.0 and a real pyvirtd, both ways.

One libvirtd (bench/libvirt_ref.py's private host) and one pyvirtd run on
loopback for the whole module; stock virsh is the client.  A guest with
heartbeats on its serial port moves libvirtd → pyvirtd → libvirtd in each
flow (client-driven v3, peer-to-peer, tunnelled), and after every hop it runs
on exactly one host, in exactly one QEMU, and its heartbeats go on; the same
with convergence tools both QEMUs must agree on, a suspended guest, an
adopted persistent definition, a user's abort.  Into
libvirtd, virsh is given ``--migrateuri tcp://127.0.0.1:PORT --listen-address
127.0.0.1``: the private libvirtd's hostname does not resolve, and it
refuses ``migration_address`` in its qemu.conf.

A migration the destination refuses leaves the source running and reports
the destination's own error (the first error); mandatory cookie features and
equal host UUIDs are refused in libvirt's words whichever side reads the
cookie, equal hostnames are not the same host.  The cookies libvirtd sends in each
step are recorded (pyvirt's library drives those migrations, each step's
cookie captured) and read back with pyvirt's parser;
``PYVIRT_REGENERATE=1`` stores them as tests/data/cookie/libvirtd/ (see
test_migration_cookie_libvirtd.py, which reads them without daemons).
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

import pytest

import pyvirt
from daemons import Pyvirtd, running_copies
from guests import REPO, ensure_guests, pid_alive, qemu_available, tiny_xml, wait_for, wait_for_text

sys.path.insert(0, str(REPO / "bench"))

import libvirt_ref  # noqa: E402
from libvirt_ref import LibvirtHost, pick_free_ports  # noqa: E402

from pyvirt.drivers.qemu.migration.cookie import STEP_ACCEPTS, CookieFlags, parse_cookie  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()
pytestmark = [pytest.mark.libvirtd, pytest.mark.qemu,
              pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}")]

VIRSH = "/usr/bin/virsh"
GOLDEN = REPO / "tests" / "data" / "cookie" / "libvirtd"
REGENERATE = os.environ.get("PYVIRT_REGENERATE") == "1"
HOP_TIMEOUT = 180.0       # a hop on a loaded 2-core machine; never a timing assertion


# -- the two hosts -----------------------------------------------------------

@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    if not qemu_available():
        pytest.skip("qemu-system-x86_64 is not installed")
    ensure_guests()
    base = tmp_path_factory.mktemp("cross")
    base.chmod(0o755)
    lv = LibvirtHost(base / "libvirtd", pick_free_ports(1)[0], cache_dir=base / "cache")
    pv = Pyvirtd(base / "pyvirtd")
    leaked: list[int] = []
    left: dict[int, str] = {}
    try:
        lv.start()
        pv.start()
        yield lv, pv, base
    finally:
        left = {pid: guest_of(pid) for pid in qemus_of(base)}     # for the report only
        try:
            leaked += pv.cleanup()
        finally:
            leaked += lv.stop()
    assert not leaked, f"QEMUs left behind: {leaked} (running at teardown: {left})"


@pytest.fixture
def guest(hosts, request):
    """A fresh heartbeat guest on libvirtd; destroyed wherever it is at the end."""
    lv, pv, base = hosts
    name = f"x{uuid.uuid4().hex[:8]}"
    g = Guest(name, str(uuid.uuid4()), base / f"{name}.log", lv, pv)
    yield g
    for host in (lv, g.pv):
        if g.running_on(host):
            virsh(host.uri, "destroy", name, check=False)
        if name in virsh(host.uri, "list", "--all", "--name", check=False).stdout.split():
            virsh(host.uri, "undefine", name, check=False)      # made persistent by a migration
    assert qemu_count(name) == 0


class Guest:
    def __init__(self, name: str, uid: str, log: Path, lv: LibvirtHost, pv: Pyvirtd) -> None:
        self.name, self.uuid, self.log, self.lv, self.pv = name, uid, log, lv, pv
        self.devices = ""       # more devices for the XML

    def xml(self, log: Path | None = None) -> str:
        return tiny_xml(self.name, log or self.log, cmdline="dirty=8:4", uuid=self.uuid,
                        extra_devices=self.devices)

    def start_on(self, host) -> None:
        path = self.log.with_suffix(".xml")
        path.write_text(self.xml())
        virsh(host.uri, "create", str(path))
        wait_for_text(self.log, "PYVIRT-HEARTBEAT 1")

    def running_on(self, host) -> bool:
        out = virsh(host.uri, "list", "--name", check=False).stdout.split()
        return self.name in out

    def heartbeat(self) -> int:
        beats = re.findall(r"PYVIRT-HEARTBEAT (\d+)\r?\n", self.log.read_text(errors="replace"))
        return int(beats[-1]) if beats else 0

    def assert_only_on(self, host) -> None:
        other = self.pv if host is self.lv else self.lv
        assert self.running_on(host), f"{self.name} is not running on {host.uri}"
        assert not self.running_on(other), f"{self.name} still runs on {other.uri}"
        assert qemu_count(self.name) == 1, "not exactly one QEMU runs the guest"
        assert running_copies([self.pv], self.uuid) == (1 if host is self.pv else 0)
        state = virsh(host.uri, "domstate", "--reason", self.name).stdout.strip()
        assert state.startswith("running"), state

    def keeps_beating(self) -> None:
        before = self.heartbeat()
        wait_for(lambda: self.heartbeat() > before + 1, 30, what=f"heartbeats of {self.name} to continue")


def virsh(uri: str, *args: str, check: bool = True, timeout: float = HOP_TIMEOUT):
    import subprocess
    proc = subprocess.run([VIRSH, "-q", "-c", uri, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def qemus_of(base: Path) -> list[int]:
    """QEMU processes whose command line names a path under ``base``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes() if entry.isdigit() else b""
        except OSError:
            continue
        if argv.startswith(b"/usr/bin/qemu-system") and str(base).encode() in argv and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def guest_of(pid: int) -> str:
    try:
        found = re.search(rb"guest=([^,\0]+)", Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return "?"
    return found[1].decode() if found else "?"


def qemu_count(name: str) -> int:
    """QEMU processes of this machine that run the guest (its -name is unique per test)."""
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and f"guest={name},".encode() in b"\0".join(argv) \
                and pid_alive(int(entry)):
            found += 1
    return found


def cpu_of(uri: str, name: str) -> str:
    """The <cpu> element of a running guest's live XML."""
    xml = virsh(uri, "dumpxml", name).stdout
    found = re.search(r"<cpu .*?(?:/>|</cpu>)", xml, re.S)
    assert found, xml
    return found[0]


def into_libvirtd() -> list[str]:
    """What virsh needs to send a guest into the private libvirtd (see the module's docstring)."""
    port = pick_free_ports(1)[0]
    return ["--migrateuri", f"tcp://127.0.0.1:{port}", "--listen-address", "127.0.0.1"]


FLOWS = {
    "client-driven": [],
    "p2p": ["--p2p"],
    "tunnelled": ["--p2p", "--tunnelled"],
}
# Convergence tools each side's QEMU must agree on (capabilities set on both ends).
TUNED = {
    "compressed-xbzrle": ["--compressed"],
    "p2p-compressed-mt": ["--p2p", "--compressed", "--comp-methods", "mt"],
    "parallel": ["--parallel"],
    "p2p-parallel-3": ["--p2p", "--parallel", "--parallel-connections", "3"],
    "auto-converge": ["--auto-converge"],
}


# -- every flow, both ways ---------------------------------------------------

@pytest.mark.parametrize("flow", [*sorted(FLOWS), *sorted(TUNED)])
def test_libvirtd_to_pyvirtd_and_back(hosts, guest, flow):
    lv, pv, _ = hosts
    flags = FLOWS[flow] if flow in FLOWS else TUNED[flow]
    guest.start_on(lv)
    cpu = cpu_of(lv.uri, guest.name)
    virsh(lv.uri, "migrate", "--live", *flags, guest.name, pv.uri)
    guest.assert_only_on(pv)
    # the CPU libvirtd expanded (its Begin cookie's <cpu>) is the one pyvirtd's QEMU runs
    assert cpu_of(pv.uri, guest.name) == cpu
    guest.keeps_beating()
    back = flags + ([] if "--tunnelled" in flags else into_libvirtd())
    virsh(pv.uri, "migrate", "--live", *back, guest.name, lv.uri)
    guest.assert_only_on(lv)
    assert cpu_of(lv.uri, guest.name) == cpu     # and back in pyvirtd's Begin cookie
    guest.keeps_beating()


@pytest.mark.parametrize("flow", ["client-driven", "p2p"])
def test_paused_guest_arrives_paused_both_ways(hosts, guest, flow):
    """A suspended guest stays suspended on the other host (libvirt adds PAUSED), and
    runs on from where it was once resumed there."""
    lv, pv, _ = hosts
    flags = FLOWS[flow]
    guest.start_on(lv)
    virsh(lv.uri, "suspend", guest.name)
    for src, dst in ((lv, pv), (pv, lv)):
        extra = into_libvirtd() if dst is lv else []
        virsh(src.uri, "migrate", "--live", *flags, guest.name, dst.uri, *extra)
        assert virsh(dst.uri, "domstate", guest.name).stdout.strip() == "paused"
        assert not guest.running_on(src) and qemu_count(guest.name) == 1
    virsh(lv.uri, "resume", guest.name)
    guest.assert_only_on(lv)
    guest.keeps_beating()


def test_adoption_persistent_definition_moves_and_restarts(hosts, guest):
    """The adoption path: a defined guest leaves libvirtd for good (--persistent
    --undefinesource), pyvirtd keeps its definition complete (the default devices the
    migratable XML leaves out added back, as libvirt adds them), so after a restart
    there the same machine runs and goes back to libvirtd."""
    lv, pv, _ = hosts
    path = guest.log.with_suffix(".xml")
    path.write_text(guest.xml())
    virsh(lv.uri, "define", str(path))
    virsh(lv.uri, "start", guest.name)
    wait_for_text(guest.log, "PYVIRT-HEARTBEAT 1")
    inactive_there = virsh(lv.uri, "dumpxml", "--inactive", guest.name).stdout
    virsh(lv.uri, "migrate", "--live", "--persistent", "--undefinesource", guest.name, pv.uri)
    guest.assert_only_on(pv)
    assert guest.name not in virsh(lv.uri, "list", "--all", "--name").stdout.split()
    inactive_here = virsh(pv.uri, "dumpxml", "--inactive", guest.name).stdout
    for device in ("<controller type='usb' index='0' model='piix3-uhci'>", "<controller type='pci' index='0'",
                   "<input type='keyboard' bus='ps2'/>"):
        assert device in inactive_there, (device, inactive_there)
        assert device in inactive_here, (device, inactive_here)
    virsh(pv.uri, "destroy", guest.name)
    offset = guest.log.stat().st_size
    virsh(pv.uri, "start", guest.name)            # a fresh boot of the adopted definition
    wait_for(lambda: "PYVIRT-HEARTBEAT 1" in guest.log.read_bytes()[offset:].decode(errors="replace"), 60,
             what="the restarted guest's first heartbeat")
    virsh(pv.uri, "migrate", "--live", "--persistent", "--undefinesource", guest.name, lv.uri, *into_libvirtd())
    guest.assert_only_on(lv)
    guest.keeps_beating()


def test_job_figures_cross_both_ways(hosts, guest):
    """Each side's completed job knows the other's timing, as between two libvirtds:
    libvirtd's Confirm takes the clock delta pyvirtd's Finish measured, and libvirtd's
    incoming job the figures of pyvirtd's Perform."""
    lv, pv, _ = hosts
    path = guest.log.with_suffix(".xml")
    path.write_text(guest.xml())
    virsh(lv.uri, "define", str(path))           # persistent: its completed job stays on libvirtd
    virsh(lv.uri, "start", guest.name)
    wait_for_text(guest.log, "PYVIRT-HEARTBEAT 1")
    virsh(lv.uri, "migrate", "--live", guest.name, pv.uri)
    guest.assert_only_on(pv)
    done = virsh(lv.uri, "domjobinfo", "--completed", guest.name).stdout
    assert "Operation:        Outgoing migration" in done and "Time elapsed w/o network" in done, done
    virsh(lv.uri, "undefine", guest.name)
    virsh(pv.uri, "migrate", "--live", guest.name, lv.uri, *into_libvirtd())
    guest.assert_only_on(lv)
    done = virsh(lv.uri, "domjobinfo", "--completed", guest.name).stdout
    assert "Operation:        Incoming migration" in done and "Time elapsed w/o network" in done, done


# -- refusals ----------------------------------------------------------------

@pytest.mark.parametrize("flow", sorted(FLOWS))
@pytest.mark.parametrize("direction", ["libvirtd-to-pyvirtd", "pyvirtd-to-libvirtd"])
def test_destination_refusal_keeps_the_source_running(hosts, guest, direction, flow, tmp_path):
    """The destination cannot start the guest the XML describes (its serial file sits
    in a directory that host lacks): the source runs on, the destination's own error
    text is the one reported (the first error), nothing is left on the destination."""
    lv, pv, _ = hosts
    src, dst = (lv, pv) if direction == "libvirtd-to-pyvirtd" else (pv, lv)
    guest.start_on(src)
    missing = tmp_path / "not-on-this-host" / "serial.log"
    xml = tmp_path / "dest.xml"
    live = virsh(src.uri, "dumpxml", "--migratable", guest.name).stdout
    xml.write_text(live.replace(str(guest.log), str(missing)))
    flags = FLOWS[flow]
    extra = into_libvirtd() if dst is lv and "--tunnelled" not in flags else []
    proc = virsh(src.uri, "migrate", "--live", *flags, "--xml", str(xml), guest.name, dst.uri, *extra,
                 check=False)
    assert proc.returncode != 0
    message = proc.stderr
    assert str(missing) in message and "No such file or directory" in message, message
    # the destination's words: pyvirt labels the file before QEMU opens it, libvirtd creates it
    assert ("Unable to pre-create chardev file" if dst is pv else "Failed to create file") in message, message
    guest.assert_only_on(src)
    guest.keeps_beating()
    assert guest.name not in virsh(dst.uri, "list", "--all", "--name").stdout.split()


@pytest.mark.parametrize("flow", ["client-driven", "tunnelled"])
def test_abort_keeps_the_source_both_ways(hosts, guest, flow):
    """domjobabort on the source while the stream flows (1 MiB/s): the migration is
    cancelled in the source's words, the source runs on, the destination keeps nothing."""
    import subprocess
    lv, pv, _ = hosts
    flags = FLOWS[flow]
    guest.start_on(lv)
    for src, dst in ((lv, pv), (pv, lv)):
        extra = into_libvirtd() if dst is lv and "--tunnelled" not in flags else []
        proc = subprocess.Popen([VIRSH, "-q", "-c", src.uri, "migrate", "--live", *flags, "--bandwidth", "1",
                                 guest.name, dst.uri, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            wait_for(lambda: "Unbounded" in virsh(src.uri, "domjobinfo", guest.name, check=False).stdout
                     or proc.poll() is not None, HOP_TIMEOUT, what="the migration to run")
            assert proc.poll() is None, proc.communicate()
            virsh(src.uri, "domjobabort", guest.name)
            _out, err = proc.communicate(timeout=HOP_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode != 0
        assert "canceled by client" in err, err
        guest.assert_only_on(src)
        guest.keeps_beating()
        assert guest.name not in virsh(dst.uri, "list", "--all", "--name").stdout.split()
        if src is lv:       # over to pyvirtd for the other direction
            virsh(lv.uri, "migrate", "--live", *flags, guest.name, pv.uri)
            guest.assert_only_on(pv)


def test_mandatory_cookie_features_honoured_both_ways(hosts, guest):
    """A Begin cookie whose mandatory feature the destination does not know, or knows but
    cannot take in Prepare, is refused in libvirt's words by libvirtd and by pyvirtd alike;
    the source's job ends with Confirm(cancelled) and the guest runs on."""
    from pyvirt import aio, typedparams
    lv, pv, _ = hosts
    guest.start_on(pv)
    cpv, clv = pyvirt.open(pv.uri), pyvirt.open(lv.uri)
    dom = cpv.lookupByName(guest.name)
    live = pyvirt.VIR_MIGRATE_LIVE
    for dst in (clv, cpv):          # pyvirtd's Begin cookie, to libvirtd's Prepare and back to pyvirtd's
        for feature, words in (("teleport", "Unknown migration cookie feature teleport"),
                               ("persistent", "Unsupported migration cookie feature persistent")):
            cookie, xml = aio.run(cpv._drv.domain_migrate_begin3_params(dom._ref, [], live))
            bogus = cookie.replace(b"</hostuuid>", f"</hostuuid>\n  <feature name='{feature}'/>".encode())
            params = typedparams.from_dict({"destination_xml": xml}, typedparams.MIGRATION_PARAM_TYPES)
            with pytest.raises(pyvirt.libvirtError) as info:
                if dst is cpv:      # the same host would be refused first: read as another host's
                    bogus = bogus.replace(pv.host_uuid.encode(), lv.host_uuid.encode())
                aio.run(dst._drv.domain_migrate_prepare3_params(params, bogus, live))
            assert info.value.get_error_message() == f"internal error: {words}", info.value
            aio.run(cpv._drv.domain_migrate_confirm3_params(dom._ref, [], b"", live, 1))
            guest.assert_only_on(pv)
    # and libvirtd's own mandatory feature (lockstate) is understood: the guest moves there and back
    virsh(pv.uri, "migrate", "--live", guest.name, lv.uri, *into_libvirtd())
    guest.assert_only_on(lv)
    virsh(lv.uri, "migrate", "--live", guest.name, pv.uri)
    guest.assert_only_on(pv)
    guest.keeps_beating()


def test_abi_difference_refused(hosts, guest, tmp_path):
    """A destination XML that changes the guest (two vCPUs for one) is refused before
    anything moves, with libvirt's code, by pyvirt as by libvirtd."""
    lv, pv, _ = hosts
    guest.start_on(lv)
    for src, dst in ((lv, pv), (pv, lv)):
        live = virsh(src.uri, "dumpxml", "--migratable", guest.name).stdout
        changed = re.sub(r"<vcpu([^>]*)>1</vcpu>", r"<vcpu\1>2</vcpu>", live)
        assert changed != live
        path = tmp_path / "changed.xml"
        path.write_text(changed)
        extra = into_libvirtd() if dst is lv else []
        proc = virsh(src.uri, "migrate", "--live", "--xml", str(path), guest.name, dst.uri, *extra, check=False)
        assert proc.returncode != 0
        assert "unsupported configuration" in proc.stderr and "vcpu" in proc.stderr.lower(), proc.stderr
        guest.assert_only_on(src)
        if src is lv:       # move it over for the other direction
            virsh(lv.uri, "migrate", "--live", guest.name, pv.uri)
            guest.assert_only_on(pv)


def test_same_host_uuid_refused_both_ways(hosts, guest, tmp_path):
    """A pyvirtd with libvirtd's host UUID is the same host, whichever reads the cookie."""
    lv, pv, _ = hosts
    twin = Pyvirtd(tmp_path / "twin", host_uuid=lv.host_uuid)
    twin.start()
    try:
        guest.start_on(lv)
        proc = virsh(lv.uri, "migrate", "--live", guest.name, twin.uri, check=False)
        assert proc.returncode != 0
        assert f"Attempt to migrate guest to the same host {lv.host_uuid}" in proc.stderr, proc.stderr
        guest.assert_only_on(lv)
        virsh(lv.uri, "destroy", guest.name)
        guest.pv = twin
        guest.start_on(twin)
        proc = virsh(twin.uri, "migrate", "--live", guest.name, lv.uri, *into_libvirtd(), check=False)
        assert proc.returncode != 0
        assert f"Attempt to migrate guest to the same host {lv.host_uuid}" in proc.stderr, proc.stderr
        assert guest.running_on(twin) and qemu_count(guest.name) == 1
        virsh(twin.uri, "destroy", guest.name)
    finally:
        assert twin.cleanup() == []


def test_equal_hostnames_are_not_the_same_host(hosts, guest, tmp_path):
    """Only the host UUID tells hosts apart (libvirt 9.0 dropped its hostname check): a
    pyvirtd whose hostname is libvirtd's, with a UUID of its own, takes the guest and
    gives it back."""
    lv, _pv, _ = hosts
    # its own UTS namespace, named as libvirtd's host
    twin = Pyvirtd(tmp_path / "twin", argv_prefix=[
        libvirt_ref.UNSHARE, "--uts", libvirt_ref.SH, "-c", f'{libvirt_ref.HOSTNAME} "$0" && exec "$@"',
        lv.hostname])
    twin.start()
    try:
        guest.pv = twin
        guest.start_on(lv)
        clv = pyvirt.open(lv.uri)
        seen: list[tuple[str, bytes]] = []
        ctwin = pyvirt.open(twin.uri)
        record_cookies(ctwin, seen)
        moved = clv.lookupByName(guest.name).migrate(ctwin, pyvirt.VIR_MIGRATE_LIVE)
        assert f"<hostname>{lv.hostname}</hostname>".encode() in dict(seen)["prepare3_params"]
        guest.assert_only_on(twin)
        port = pick_free_ports(1)[0]
        moved.migrate3(clv, {"migrate_uri": f"tcp://127.0.0.1:{port}", "listen_address": "127.0.0.1"},
                       pyvirt.VIR_MIGRATE_LIVE)
        guest.assert_only_on(lv)
        guest.keeps_beating()
    finally:
        assert twin.cleanup() == []


# -- the cookies libvirtd sends ----------------------------------------------

STEPS = ("begin3_params", "prepare3_params", "perform3_params", "finish3_params", "confirm3_params")


def record_cookies(conn: pyvirt.virConnect, log: list[tuple[str, bytes]]) -> None:
    """Wrap the connection's migration steps so the cookie each returns is kept."""
    drv = conn._drv
    for step in STEPS:
        method = getattr(drv, f"domain_migrate_{step}")

        async def recording(*args, _step=step, _method=method, **kw):
            result = await _method(*args, **kw)
            if _step == "begin3_params" or _step == "prepare3_params":
                log.append((_step, bytes(result[0])))
            elif _step == "perform3_params":
                log.append((_step, bytes(result)))
            elif _step == "finish3_params":
                log.append((_step, bytes(result[1])))
            return result
        setattr(drv, f"domain_migrate_{step}", recording)


def test_libvirtd_cookies_in_each_step(hosts, guest):
    """Drive L → P and P → L with pyvirt's library, keep what each daemon answered in
    each step, and read libvirtd's cookies with pyvirt's parser (what pyvirtd's steps
    accept); with PYVIRT_REGENERATE=1 they become the golden files.  The guest has a
    SPICE display, whose address each destination's Prepare cookie tells the source."""
    lv, pv, _ = hosts
    guest.devices = "\n    <graphics type='spice' autoport='yes' listen='127.0.0.1'/>"
    guest.start_on(lv)
    clv, cpv = pyvirt.open(lv.uri), pyvirt.open(pv.uri)
    seen: dict[str, list[tuple[str, bytes]]] = {"libvirtd": [], "pyvirtd": []}
    record_cookies(clv, seen["libvirtd"])
    record_cookies(cpv, seen["pyvirtd"])
    moved = clv.lookupByName(guest.name).migrate(cpv, pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PERSIST_DEST)
    guest.assert_only_on(pv)
    assert moved.isPersistent()          # from libvirtd's <domain> in its Perform cookie
    port = pick_free_ports(1)[0]
    moved.migrate3(clv, {"migrate_uri": f"tcp://127.0.0.1:{port}", "listen_address": "127.0.0.1"},
                   pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PERSIST_DEST)
    guest.assert_only_on(lv)
    got = dict(seen["libvirtd"])
    assert set(got) == {"begin3_params", "perform3_params", "prepare3_params", "finish3_params"}, got.keys()
    accepts = {"begin3_params": STEP_ACCEPTS["prepare"], "prepare3_params": STEP_ACCEPTS["perform"],
               "perform3_params": STEP_ACCEPTS["finish"], "finish3_params": STEP_ACCEPTS["confirm"]}
    local_uuid = pv.host_uuid
    parsed = {}
    for step, data in got.items():
        parsed[step] = parse_cookie(data, local_host_uuid=local_uuid, expect_name=guest.name,
                                    expect_uuid=guest.uuid, accepted=accepts[step])
        assert parsed[step].hostuuid == lv.host_uuid and parsed[step].hostname == lv.hostname
    begin = parsed["begin3_params"]
    assert begin.mandatory == CookieFlags.LOCKSTATE and begin.lockstate is None
    assert ("pause-before-switchover", True) in begin.capabilities
    prepare = parsed["prepare3_params"]
    assert ("late-block-activate", True) in prepare.capabilities
    port = int(re.search(r"<graphics type='spice' port='(\d+)'",
                         virsh(lv.uri, "dumpxml", guest.name).stdout)[1])
    assert (prepare.graphics.type, prepare.graphics.listen, prepare.graphics.port) == ("spice", "127.0.0.1", port)
    assert parsed["perform3_params"].statistics["memory_total"] > 0     # the source's job figures
    assert parsed["perform3_params"].mandatory == CookieFlags.PERSISTENT
    assert f"<name>{guest.name}</name>" in parsed["perform3_params"].persistent_xml
    assert parsed["finish3_params"].statistics["time_elapsed"] >= 0
    # and pyvirtd's answers were what libvirtd expects in each step
    mine = dict(seen["pyvirtd"])
    assert b"<feature name='lockstate'/>" in mine["begin3_params"]
    # the CPU libvirtd expanded goes back in pyvirtd's Begin cookie, as libvirtd sends its origCPU's
    assert parse_cookie(mine["begin3_params"], local_host_uuid=lv.host_uuid, expect_name=guest.name,
                        expect_uuid=guest.uuid, accepted=STEP_ACCEPTS["prepare"]).cpu == begin.cpu
    assert b"<cap name='late-block-activate' auto='yes'/>" in mine["prepare3_params"]
    assert b"<graphics type='spice' port='" in mine["prepare3_params"]
    assert b"<feature name='persistent'/>" in mine["perform3_params"]
    assert b"<started>" in mine["perform3_params"] and b"<sent>" in mine["perform3_params"]
    # libvirtd took pyvirtd's figures for the job it completed: it knows the hosts' clock delta
    jobinfo = virsh(lv.uri, "domjobinfo", "--completed", guest.name).stdout
    assert "Time elapsed w/o network" in jobinfo, jobinfo
    if REGENERATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for step, data in got.items():
            (GOLDEN / f"{step.split('3')[0]}.xml").write_bytes(data.rstrip(b"\0"))
