"""Memory, vCPUs and network interfaces of a running guest, checked against QEMU.

setmem goes to the balloon; the tiny guest has no balloon driver, so QEMU
keeps reporting the full size and so does pyvirtd (libvirt shows what the
guest gave back, not what was asked); the Linux guest, with virtio_balloon
loaded from the host kernel's modules, does give memory back.  vCPUs are hot-plugged as CPU
devices into a guest started with fewer than its maximum; the tiny guest
never enables the ACPI interface that can eject one, so QEMU refuses the unplug.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guests import READY, tiny_xml, wait_for_text
from test_hotplug import ACPI, _write, live_xml, ok, ours, pci_devices, qmp, same_output, virsh
from test_qemu_bridge import add_bridge, daemon, links, netns  # noqa: F401 - daemon, netns: fixtures
from test_qemu_bridge import pytestmark as bridge_mark           # root, iproute2, /dev/net/tun

pytestmark = [pytest.mark.qemu]


def _guest(host, name: str, xml: str, ready_timeout: float = 30) -> None:
    ok(host.uri, "define", _write(host.workdir / f"{name}.xml", xml))
    ok(host.uri, "start", name)
    wait_for_text(host.workdir / f"{name}.log", READY, ready_timeout)


def _online(host, name: str) -> int:
    return len(qmp(host, name, "query-cpus-fast"))


def test_setmem_asks_the_balloon_and_setmaxmem_is_config_only(pyvirtd, guests_built):
    uri = pyvirtd.uri
    _guest(pyvirtd, "mem", tiny_xml("mem", pyvirtd.workdir / "mem.log"))
    assert same_output(uri, "setmem", "mem", "96M").stdout == "\n"      # asking twice is harmless
    # asked, not given: the tiny guest runs no balloon driver, so QEMU still has it all
    assert qmp(pyvirtd, "mem", "query-balloon")["actual"] == 128 * 1024 * 1024
    assert "Used memory:    131072 KiB" in ok(uri, "dominfo", "mem")
    out = same_output(uri, "setmem", "mem", "1G")
    assert "cannot set memory higher than max memory" in out.stderr
    out = same_output(uri, "setmaxmem", "mem", "256M")
    assert "cannot resize the maximum memory on an active domain" in out.stderr
    # the persistent definition takes both
    assert ours(uri, "setmaxmem", "mem", "100M", "--config").returncode == 0
    ok(uri, "setmem", "mem", "64M", "--config")
    inactive = live_xml(uri, "mem", inactive=True)
    assert (inactive.memory_kib, inactive.current_memory_kib) == (102400, 65536)
    assert live_xml(uri, "mem").memory_kib == 131072
    out = same_output(uri, "setmem", "mem", "200M", "--config")
    assert "cannot set memory higher than max memory" in out.stderr


def test_setmem_without_a_balloon_is_refused(pyvirtd, guests_built):
    xml = tiny_xml("nob", pyvirtd.workdir / "nob.log", extra_devices="\n    <memballoon model='none'/>")
    _guest(pyvirtd, "nob", xml)
    out = same_output(pyvirtd.uri, "setmem", "nob", "64M")
    assert out.returncode == 1 and "without the balloon device" in out.stderr
    assert "balloon0" not in pci_devices(pyvirtd, "nob")


def test_vcpu_hotplug_on_the_tiny_guest(pyvirtd, guests_built):
    uri = pyvirtd.uri
    xml = tiny_xml("cpu", pyvirtd.workdir / "cpu.log").replace("<vcpu>1</vcpu>", "<vcpu current='1'>3</vcpu>")
    _guest(pyvirtd, "cpu", xml.replace("</os>", ACPI, 1))
    assert _online(pyvirtd, "cpu") == 1
    same_output(uri, "vcpucount", "cpu")
    assert ours(uri, "setvcpus", "cpu", "3", "--live").stdout == "\n"
    assert _online(pyvirtd, "cpu") == 3
    plugged = [c["qom-path"] for c in qmp(pyvirtd, "cpu", "query-hotpluggable-cpus")
               if str(c.get("qom-path", "")).startswith("/machine/peripheral/")]
    assert sorted(plugged) == ["/machine/peripheral/vcpu1", "/machine/peripheral/vcpu2"]
    assert "current      live           3" in same_output(uri, "vcpucount", "cpu").stdout
    assert "<vcpu placement='static' current='3'>3</vcpu>" not in ok(uri, "dumpxml", "cpu")
    assert "<vcpu placement='static'>3</vcpu>" in ok(uri, "dumpxml", "cpu")
    assert "current='1'" in ok(uri, "dumpxml", "--inactive", "cpu")
    # the tiny guest never switched QEMU's CPU hot-plug to the interface that can eject:
    # QEMU refuses the unplug, and the CPU stays
    out = virsh(uri, "setvcpus", "cpu", "2", "--live")
    assert out.returncode == 1 and "device_del" in out.stderr and "unplug" in out.stderr
    assert _online(pyvirtd, "cpu") == 3
    # boot CPUs cannot go; more than the maximum cannot come
    out = same_output(uri, "setvcpus", "cpu", "4", "--live")
    assert "greater than max allowable vcpus for the live domain: 4 > 3" in out.stderr
    # the maximum changes in the definition only
    out = same_output(uri, "setvcpus", "cpu", "4", "--maximum", "--live")
    assert out.returncode == 1
    ok(uri, "setvcpus", "cpu", "4", "--maximum", "--config")
    ok(uri, "setvcpus", "cpu", "2", "--config")
    assert "<vcpu placement='static' current='2'>4</vcpu>" in ok(uri, "dumpxml", "--inactive", "cpu")
    ok(uri, "destroy", "cpu")
    ok(uri, "start", "cpu")
    assert _online(pyvirtd, "cpu") == 2
    assert len(qmp(pyvirtd, "cpu", "query-hotpluggable-cpus")) == 4
    same_output(uri, "vcpucount", "cpu")
    same_output(uri, "vcpucount", "cpu", "--maximum", "--config")


def test_user_interface_hotplug(pyvirtd, guests_built):
    uri, work = pyvirtd.uri, pyvirtd.workdir
    _guest(pyvirtd, "nic", tiny_xml("nic", work / "nic.log").replace("</os>", ACPI, 1))
    nic = _write(work / "nic0.xml", "<interface type='user'><mac address='52:54:00:aa:bb:01'/>"
                                    "<model type='virtio'/></interface>")
    assert ours(uri, "attach-device", "nic", nic, "--live").stdout == "Device attached successfully\n\n"
    d = live_xml(uri, "nic")
    iface = d.devices.interfaces[0]
    assert (iface.alias, iface.mac) == ("net0", "52:54:00:aa:bb:01")
    assert pci_devices(pyvirtd, "nic")["net0"] == iface.address.slot
    assert qmp(pyvirtd, "nic", "qom-get", path="/machine/peripheral/net0", property="netdev") == "hostnet0"
    same_output(uri, "domiflist", "nic")
    out = same_output(uri, "attach-device", "nic", nic, "--live")
    assert out.returncode == 1 and "52:54:00:aa:bb:01" in out.stderr
    # a PCI NIC the tiny guest does not give back stays listed
    assert ok(uri, "detach-interface", "nic", "user", "--mac", "52:54:00:aa:bb:01", "--live") == \
        "Interface detached successfully\n\n"
    assert live_xml(uri, "nic").devices.interfaces
    same_output(uri, "detach-interface", "nic", "user", "--mac", "52:54:00:aa:bb:99")


# -- a bridged NIC: the daemon's own tap, handed to QEMU over the monitor ---------------------------


@bridge_mark
def test_bridge_interface_hotplug_gets_a_tap_on_the_bridge(daemon, netns, tmp_path):
    uri = daemon.uri
    add_bridge(netns, "br-hp")
    _guest(daemon, "brg", tiny_xml("brg", daemon.workdir / "brg.log").replace("</os>", ACPI, 1))
    out = same_output(uri, "attach-interface", "brg", "bridge", "br-hp", "--model", "virtio",
                      "--mac", "52:54:00:aa:bb:07", "--print-xml")
    assert "<source bridge='br-hp'/>" in out.stdout
    assert ours(uri, "attach-interface", "brg", "bridge", "br-hp", "--model", "virtio",
                "--mac", "52:54:00:aa:bb:07", "--live").stdout == "Interface attached successfully\n\n"
    nic = live_xml(uri, "brg").devices.interfaces[0]
    assert nic.target_dev.startswith("vnet")
    link = links(netns)[nic.target_dev]
    assert link["master"] == "br-hp" and link["address"] == "fe:54:00:aa:bb:07"
    assert pci_devices(daemon, "brg")[nic.alias] == nic.address.slot
    assert qmp(daemon, "brg", "qom-get", path=f"/machine/peripheral/{nic.alias}", property="netdev") == \
        f"host{nic.alias}"
    same_output(uri, "domiflist", "brg")
    ok(uri, "destroy", "brg")
    assert nic.target_dev not in links(netns)         # the tap went with QEMU's netdev


def test_migration_keeps_hotplugged_vcpus(tmp_path, guests_built):
    from daemons import Pyvirtd, running_pair
    a, b = Pyvirtd(tmp_path / "a"), Pyvirtd(tmp_path / "b")
    with running_pair(a, b):
        log = a.workdir / "mc.log"
        xml = tiny_xml("mc", log, cmdline="dirty=8:4").replace("<vcpu>1</vcpu>", "<vcpu current='1'>3</vcpu>")
        ok(a.uri, "create", _write(a.workdir / "mc.xml", xml.replace("</os>", ACPI, 1)))
        wait_for_text(log, "PYVIRT-HEARTBEAT 1")
        ok(a.uri, "setvcpus", "mc", "3", "--live")
        ok(a.uri, "migrate", "--live", "mc", b.uri)
        assert _online(b, "mc") == 3
        assert ok(b.uri, "domstate", "mc").strip() == "running"
        assert "current      live           3" in same_output(b.uri, "vcpucount", "mc").stdout


def test_a_linux_guest_gives_memory_back_to_the_balloon(pyvirtd, guests_built):
    """The Linux guest with virtio_balloon loaded really inflates: QEMU's query-balloon,
    BALLOON_CHANGE (pyvirt's client), virsh dominfo/dommemstat and python3-libvirt's info()
    all show the smaller size once the guest has given it back, and the size it grows to again."""
    import queue
    import subprocess

    import pyvirt
    from test_stats_disk_io import start_io_guest

    dom, _image, _log = start_io_guest(pyvirtd, "bl")
    conn = pyvirt.open(pyvirtd.uri)
    changes: queue.Queue = queue.Queue()
    conn.domainEventRegisterAny(conn.lookupByName("bl"), pyvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
                                lambda _c, _d, actual, _o: changes.put(actual), None)
    try:
        assert qmp(pyvirtd, "bl", "query-balloon")["actual"] == 256 << 20
        before = 256 << 10
        for target_mib in (192, 256):
            assert ok(pyvirtd.uri, "setmem", "bl", f"{target_mib}M", "--live") == "\n"
            low, high = sorted((before, target_mib << 10))
            while (actual := changes.get(timeout=60)) != target_mib << 10:   # QEMU reports the steps too
                assert low <= actual <= high, (actual, low, high)
            before = actual
            assert qmp(pyvirtd, "bl", "query-balloon")["actual"] == target_mib << 20
            assert f"Used memory:    {target_mib << 10} KiB" in ok(pyvirtd.uri, "dominfo", "bl")
            assert f"actual {target_mib << 10}\n" in ok(pyvirtd.uri, "dommemstat", "bl")
            out = subprocess.run(["/usr/bin/python3", "-c", "import sys, libvirt; print(libvirt.openReadOnly("
                                  "sys.argv[1]).lookupByName('bl').info()[2])", pyvirtd.uri],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0 and int(out.stdout) == target_mib << 10, out.stderr
            assert live_xml(pyvirtd.uri, "bl").current_memory_kib == target_mib << 10
    finally:
        conn.close()
        dom.destroy()


def _pyvirt_client(uri: str, name: str, steps: list, expect: list) -> dict:
    """``steps`` through pyvirt's own client, as test_hotplug.stock_client runs them through python3-libvirt."""
    import queue

    import pyvirt
    conn = pyvirt.open(uri)
    seen: queue.Queue = queue.Queue()
    try:
        dom = conn.lookupByName(name)
        for kind, event in (("added", pyvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED),
                            ("removed", pyvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED)):
            conn.domainEventRegisterAny(dom, event, lambda _c, _d, alias, k: seen.put([k, alias]), kind)
        results = []
        for method, *args in steps:
            try:
                results.append(getattr(dom, method)(*args))
            except pyvirt.libvirtError as exc:
                results.append(["error", exc.get_error_code(), str(exc)])
        events = []
        while not all(e in events for e in expect):
            events.append(seen.get(timeout=60))
        return {"results": results, "events": events}
    finally:
        conn.close()


@pytest.mark.parametrize("client", ["python3-libvirt", "pyvirt"])
def test_device_and_tuning_calls_of_both_libraries(pyvirtd, guests_built, client):
    """attachDevice/detachDevice, updateDeviceFlags (media change), setVcpusFlags/vcpusFlags,
    setMemory/setMemoryFlags/setMaxMemory through a library, each checked against QEMU."""
    from test_hotplug import disk_xml, image, stock_client
    run = stock_client if client == "python3-libvirt" else _pyvirt_client
    uri, work = pyvirtd.uri, pyvirtd.workdir
    xml = tiny_xml("lib", work / "lib.log").replace("<vcpu>1</vcpu>", "<vcpu current='1'>2</vcpu>")
    xml = xml.replace("</os>", ACPI, 1).replace(
        "</devices>", "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk></devices>")
    _guest(pyvirtd, "lib", xml)
    img, iso = image(work, "lib.qcow2"), image(work, "lib.iso", fmt="raw")
    scsi = disk_xml(img, "sda", "scsi")

    def block(qdev: str) -> dict | None:
        return next((b for b in qmp(pyvirtd, "lib", "query-block") if b["qdev"] == qdev), None)

    assert run(uri, "lib", [["setVcpusFlags", 2, 1], ["vcpusFlags", 1], ["vcpusFlags", 2]], [])["results"] == \
        [0, 2, 1]
    assert _online(pyvirtd, "lib") == 2

    out = run(uri, "lib", [["attachDevice", scsi]], [["added", "scsi0-0-0-0"]])
    assert out["results"] == [0] and ["added", "scsi0"] in out["events"]
    assert block("scsi0-0-0-0")["inserted"]["file"] == str(img)
    out = run(uri, "lib", [["detachDevice", scsi]], [["removed", "scsi0-0-0-0"]])
    assert out == {"results": [0], "events": [["removed", "scsi0-0-0-0"]]}
    assert block("scsi0-0-0-0") is None

    cdrom = "<disk type='file' device='cdrom'>{}<target dev='hdc' bus='ide'/></disk>"
    assert run(uri, "lib", [["updateDeviceFlags", cdrom.format(f"<source file='{iso}'/>"), 1]], [])["results"] == [0]
    assert block("ide0-1-0")["inserted"]["file"] == str(iso)
    assert run(uri, "lib", [["updateDeviceFlags", cdrom.format(""), 1]], [])["results"] == [0]
    assert "inserted" not in block("ide0-1-0")

    out = run(uri, "lib", [["setMemoryFlags", 98304, 2], ["setMaxMemory", 65536], ["setMemoryFlags", 120832, 6],
                           ["setMemory", 98304]], [])["results"]
    assert out[0] == out[2] == out[3] == 0
    assert out[1] == ["error", 55, "Requested operation is not valid: "
                      "cannot resize the maximum memory on an active domain"]
    inactive = live_xml(uri, "lib", inactive=True)
    assert (inactive.memory_kib, inactive.current_memory_kib, inactive.vcpus) == (120832, 98304, 2)
    # asked of the balloon; the tiny guest has no driver to give it, so QEMU keeps it all
    assert qmp(pyvirtd, "lib", "query-balloon")["actual"] == 128 << 20
    ok(uri, "destroy", "lib")


LINK_MODULES = ("drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_legacy_dev",
                "drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci", "net/core/failover",
                "drivers/net/net_failover", "drivers/net/virtio_net")
LINK_INIT = f"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() {{ echo "$*" > /dev/ttyS0; }}
for m in {' '.join(m.rsplit('/', 1)[1] for m in LINK_MODULES)}; do
    insmod /lib/modules/pyvirt-link/$m.ko || say "PYVIRT-LINK-WARN insmod $m failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
ip link set eth0 up
last=
while :; do
    now=$(cat /sys/class/net/eth0/carrier 2>/dev/null)
    [ "$now" != "$last" ] && say "PYVIRT-LINK $now" && last=$now
    sleep 0.1
done
"""


def _link_initrd(where: Path) -> Path:
    import gzip

    from guests import LINUX_INITRD
    from test_stats_disk_io import KERNEL_VERSION, cpio_newc
    if not KERNEL_VERSION.exists():
        pytest.skip("the Linux test guest is not built")
    moddir = Path("/lib/modules") / KERNEL_VERSION.read_text().strip() / "kernel"
    entries = [("lib", 0o40755, b""), ("lib/modules", 0o40755, b""), ("lib/modules/pyvirt-link", 0o40755, b"")]
    for module in LINK_MODULES:
        path = moddir / f"{module}.ko"
        if not path.exists():
            pytest.skip(f"the guest kernel's module {path.name} is not on this host")
        entries.append((f"lib/modules/pyvirt-link/{path.name}", 0o100644, path.read_bytes()))
    entries.append(("init", 0o100755, LINK_INIT.encode()))
    target = where / "link-initramfs.cpio.gz"
    target.write_bytes(LINUX_INITRD.read_bytes() + gzip.compress(cpio_newc(entries)))
    target.chmod(0o644)
    return target


def test_link_state_reaches_the_guests_carrier(pyvirtd, guests_built):
    """<link state='down'/> at start, then live updateDeviceFlags of the interface (virsh
    update-device and domif-setlink, pyvirt's client, python3-libvirt): the Linux guest's
    virtio-net sees its carrier go and come; other live changes are refused as libvirt does."""
    import subprocess

    import pyvirt
    from guests import LINUX_INITRD, linux_xml, wait_for
    uri, work = pyvirtd.uri, pyvirtd.workdir
    log = work / "nl.log"
    mac = "52:54:00:5a:11:01"
    nic = "<interface type='user'><mac address='{}'/><model type='virtio'/>{}</interface>"
    xml = linux_xml("nl", log).replace(f"<initrd>{log.parent / LINUX_INITRD.name}</initrd>",
                                       f"<initrd>{_link_initrd(work)}</initrd>")
    ok(uri, "create", _write(work / "nl.xml", xml.replace(
        "</devices>", nic.format(mac, "<link state='down'/>") + "</devices>")))

    def carrier_changes() -> list[str]:
        return [line.split()[1] for line in log.read_text(errors="replace").splitlines()
                if line.startswith("PYVIRT-LINK ") and len(line.split()) == 2]

    def expect(changes: list[str]) -> None:
        wait_for(lambda: carrier_changes() == changes, 60,
                 what=lambda: f"the guest's carrier changes {changes} (seen {carrier_changes()})")
    expect(["0"])
    assert "<link state='down'/>" in ok(uri, "dumpxml", "nl")
    assert ok(uri, "update-device", "nl", _write(work / "up.xml", nic.format(mac, "<link state='up'/>")),
              "--live") == "Device updated successfully\n\n"
    expect(["0", "1"])
    assert ok(uri, "domif-setlink", "nl", mac, "down") == "Device updated successfully\n\n"
    expect(["0", "1", "0"])
    assert ok(uri, "domif-getlink", "nl", mac) == f"{mac} down\n"
    conn = pyvirt.open(uri)
    try:
        dom = conn.lookupByName("nl")
        assert dom.updateDeviceFlags(nic.format(mac, "<link state='up'/>"), pyvirt.VIR_DOMAIN_AFFECT_LIVE) == 0
        expect(["0", "1", "0", "1"])
        with pytest.raises(pyvirt.libvirtError, match="cannot modify network device model from virtio to e1000"):
            dom.updateDeviceFlags(nic.format(mac, "").replace("virtio", "e1000"), pyvirt.VIR_DOMAIN_AFFECT_LIVE)
    finally:
        conn.close()
    out = subprocess.run(["/usr/bin/python3", "-c", "import sys, libvirt; print(libvirt.open(sys.argv[1])"
                          ".lookupByName('nl').updateDeviceFlags(sys.argv[2], libvirt.VIR_DOMAIN_AFFECT_LIVE))",
                          uri, nic.format(mac, "<link state='down'/>")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "0\n", out.stderr
    expect(["0", "1", "0", "1", "0"])
    ok(uri, "destroy", "nl")


def test_domif_setlink_and_getlink_print_what_virsh_prints(pyvirtd, guests_built):
    uri, work = pyvirtd.uri, pyvirtd.workdir
    mac = "52:54:00:5a:11:02"
    _guest(pyvirtd, "ln", tiny_xml("ln", work / "ln.log", extra_devices=(
        f"<interface type='user'><mac address='{mac}'/><model type='virtio'/></interface>")))
    ok(uri, "define", _write(work / "bare.xml", tiny_xml("bare", work / "bare.log")))
    cases = [("domif-getlink", "ln", mac), ("domif-getlink", "ln", mac.upper()), ("domif-getlink", "ln", "vnet9"),
             ("domif-getlink", "ln", "52:54:00:00:00:09"), ("domif-getlink", "ln", mac, "--config"),
             ("domif-setlink", "ln", mac, "sideways"), ("domif-setlink", "ln", "52:54:00:00:00:09", "down"),
             ("domif-setlink", "ln", "vnet9", "down"), ("domif-setlink", "bare", mac, "down"),
             ("domif-setlink", "ln", mac, "down", "--print-xml"),
             ("domif-setlink", "ln", mac, "down"), ("domif-setlink", "ln", mac, "down"),
             ("domif-getlink", "ln", mac), ("domif-getlink", "ln", mac, "--config"),
             ("domif-setlink", "ln", mac, "down", "--config"), ("domif-getlink", "ln", mac, "--config"),
             ("domif-setlink", "ln", mac, "up")]
    for case in cases:
        same_output(uri, *case)
    assert "<link state='down'/>" in ok(uri, "dumpxml", "--inactive", "ln")
    assert "<link state='up'/>" in ok(uri, "dumpxml", "ln")
