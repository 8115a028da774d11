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
