"""The test driver's behaviours the differential walk does not reach, with the values
libvirt 9.0's test driver gives (checked against it when written)."""

from __future__ import annotations

import threading

import pytest

import pyvirt
from pyvirt.drivers.test import driver as test_driver


@pytest.fixture(autouse=True)
def fresh_host():
    test_driver.reset_default_host()
    yield
    test_driver.reset_default_host()


def test_read_only_connection_lists_but_does_not_change():
    conn = pyvirt.openReadOnly("test:///default")
    assert conn.listStoragePools() == ["default-pool"] and conn.listNetworks() == ["default"]
    assert [i.name() for i in conn.listAllInterfaces()] == ["eth1"]
    assert sorted(conn.listDevices(None, 0)) == ["computer", "scsi_host1", "scsi_host11", "scsi_host2"]
    for call, api in ((lambda: conn.interfaceDefineXML("<interface type='ethernet' name='e'/>"),
                       "virInterfaceDefineXML"),
                      (lambda: conn.lookupByName("test").setSchedulerParameters({"weight": 10}),
                       "virDomainSetSchedulerParameters")):
        with pytest.raises(pyvirt.libvirtError) as info:
            call()
        assert info.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_DENIED
        assert info.value.get_error_message() == f"operation forbidden: read only access prevents {api}"


def test_scheduler_weight_is_checked_and_not_kept():
    dom = pyvirt.open("test:///default").lookupByName("test")
    assert dom.schedulerType() == ["fair", 1]
    assert dom.setSchedulerParameters({"weight": 10}) == 0
    assert dom.schedulerParameters() == {"weight": 50}      # libvirt's test driver keeps nothing
    with pytest.raises(LookupError, match='Attribute name "cap" could not be recognized'):
        dom.setSchedulerParameters({"cap": 10})


def test_default_host_is_shared_and_resettable():
    first, second = pyvirt.open("test:///default"), pyvirt.open("test:///default")
    first.lookupByName("test").suspend()
    assert second.lookupByName("test").state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_USER]
    test_driver.reset_default_host()
    assert pyvirt.open("test:///default").lookupByName("test").state() == [pyvirt.VIR_DOMAIN_RUNNING, 0]


def test_pool_space_and_volume_errors():
    conn = pyvirt.open("test:///default")
    pool = conn.storagePoolLookupByName("default-pool")
    with pytest.raises(pyvirt.libvirtError) as info:
        pool.createXML("<volume><name>huge</name><capacity unit='TiB'>1</capacity></volume>", 0)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INTERNAL_ERROR
    assert "Not enough free space in pool for volume 'huge'" in info.value.get_error_message()
    pool.destroy()
    with pytest.raises(pyvirt.libvirtError) as info:
        pool.listVolumes()
    assert info.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID
    assert "storage pool 'default-pool' is not active" in info.value.get_error_message()


def test_snapshot_of_a_shut_off_domain_reverts_without_starting_it():
    conn = pyvirt.open("test:///default")
    events, cond = [], threading.Condition()

    def note(c, d, ev, det, op):
        with cond:
            events.append((ev, det))
            cond.notify_all()
    cb = conn.domainEventRegisterAny(None, pyvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, note, None)
    dom = conn.lookupByName("test")
    dom.destroy()
    snap = dom.snapshotCreateXML("<domainsnapshot><name>off</name></domainsnapshot>", 0)
    assert "<state>shutoff</state>" in snap.getXMLDesc(0)
    dom.create()
    dom.revertToSnapshot(snap, 0)
    assert dom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT]
    stopped = (pyvirt.VIR_DOMAIN_EVENT_STOPPED, pyvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT)
    with cond:
        assert cond.wait_for(lambda: stopped in events, timeout=30)
    conn.domainEventDeregisterAny(cb)
    assert events[-1] == stopped and (pyvirt.VIR_DOMAIN_EVENT_STARTED,
                                      pyvirt.VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT) not in events


LIBVIRT_PYTHON = "/usr/bin/python3"


def _libvirt(script: str, *args: str) -> str:
    import subprocess
    out = subprocess.run([LIBVIRT_PYTHON, "-c", "import libvirt, sys\n" + script, *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_save_images_cross_with_libvirts_test_driver(tmp_path):
    import subprocess
    if subprocess.run([LIBVIRT_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    theirs, ours = str(tmp_path / "theirs.img"), str(tmp_path / "ours.img")
    _libvirt("c = libvirt.open('test:///default'); c.lookupByName('test').save(sys.argv[1])", theirs)
    conn = pyvirt.open("test:///default")
    dom = conn.lookupByName("test")
    dom.destroy()
    conn.restore(theirs)                                  # libvirt's image restores here
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_RESTORED]
    dom.setMemory(1048576)
    dom.save(ours)
    assert open(ours, "rb").read(15) == b"TestGuestMagic\0"
    out = _libvirt("c = libvirt.open('test:///default'); d = c.lookupByName('test'); d.destroy();"
                   " c.restore(sys.argv[1]); print(d.state(), d.info()[2])", ours)
    assert out.split() == ["[1,", "3]", "1048576"]         # ...and ours there: running (restored), its memory


def test_core_dump_writes_the_test_header(tmp_path):
    dom = pyvirt.open("test:///default").lookupByName("test")
    assert dom.coreDump(str(tmp_path / "core")) == 0
    assert (tmp_path / "core").read_bytes() == b"TestGuestMagic\0"
    dom.coreDump(str(tmp_path / "core2"), pyvirt.VIR_DUMP_CRASH)
    assert dom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_CRASHED]


def test_interface_addresses_from_the_agent_refused_read_only():
    conn = pyvirt.openReadOnly("test:///default")
    dom = conn.lookupByName("test")
    assert dom.interfaceAddresses(pyvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)["testnet0"]["addrs"] == [
        {"addr": "192.168.122.3", "prefix": 24, "type": pyvirt.VIR_IP_ADDR_TYPE_IPV4}]
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.interfaceAddresses(pyvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_DENIED


def test_tuning_survives_define_and_snapshot_revert():
    conn = pyvirt.open("test:///default")
    dom = conn.lookupByName("test")
    dom.setMemoryParameters({pyvirt.VIR_DOMAIN_MEMORY_HARD_LIMIT: 4096}, pyvirt.VIR_DOMAIN_AFFECT_LIVE)
    snap = dom.snapshotCreateXML("<domainsnapshot><name>t</name></domainsnapshot>", 0)
    dom.setMemoryParameters({"hard_limit": 8192}, 0)
    dom.revertToSnapshot(snap, 0)
    assert dom.memoryParameters(0)["hard_limit"] == 4096
    assert "<hard_limit unit='KiB'>4096</hard_limit>" in snap.getXMLDesc(0)
    xml = dom.XMLDesc(0)
    dom.destroy()
    conn.defineXML(xml)                       # the live XML's tuning becomes the definition's
    assert dom.memoryParameters(0)["hard_limit"] == 4096


def test_network_record_sections_change_the_definition_and_refuse_a_second_add():
    net = pyvirt.open("test:///default").networkLookupByName("default")
    for section, xml, written in (
            (pyvirt.VIR_NETWORK_SECTION_DNS_TXT, "<txt name='t' value='v&amp;w'/>", "<txt name='t' value='v&amp;w'/>"),
            (pyvirt.VIR_NETWORK_SECTION_DNS_SRV, "<srv service='http' protocol='tcp'/>",
             "<srv service='http' protocol='tcp'/>"),
            (pyvirt.VIR_NETWORK_SECTION_PORTGROUP, "<portgroup name='p'/>", "<portgroup name='p'>"),
            (pyvirt.VIR_NETWORK_SECTION_FORWARD_INTERFACE, "<interface dev='eth3'/>", "<interface dev='eth3'/>")):
        net.update(pyvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section, -1, xml, 0)
        assert written in net.XMLDesc(0)
        with pytest.raises(pyvirt.libvirtError) as info:
            net.update(pyvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section, -1, xml, 0)
        assert info.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID
        net.update(pyvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section, -1, xml, 0)
        assert written not in net.XMLDesc(0)
