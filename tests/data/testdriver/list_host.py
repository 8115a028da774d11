"""Print what a test-driver host lists (see tests/test_test_driver_custom.py).

Run as ``PYTHON list_host.py MODULE URI`` (MODULE ``libvirt`` or ``pyvirt``); one
JSON object: node info, capabilities, and per domain, network, pool and volume
what virsh's list/info commands show, and their XML; interfaces and node devices too.
"""

import json
import sys

MODULE, URI = sys.argv[1:3]
if MODULE == "libvirt":
    import libvirt
else:
    import pyvirt as libvirt

conn = libvirt.open(URI)
out = {"uri": conn.getURI(), "nodeinfo": conn.getInfo(), "capabilities": conn.getCapabilities(),
       "domains": {}, "networks": {}, "pools": {}, "interfaces": {}, "devices": {}}
for dom in conn.listAllDomains(0):
    out["domains"][dom.name()] = {
        "id": dom.ID(), "uuid": dom.UUIDString(), "state": dom.state(), "info": dom.info()[:4],
        "persistent": dom.isPersistent(), "managedsave": dom.hasManagedSaveImage(0),
        "xml": dom.XMLDesc(0)}
for net in conn.listAllNetworks(0):
    out["networks"][net.name()] = {"active": net.isActive(), "persistent": net.isPersistent(),
                                   "bridge": net.bridgeName(), "xml": net.XMLDesc(0)}
for pool in conn.listAllStoragePools(0):
    vols = {v.name(): {"key": v.key(), "path": v.path(), "info": v.info(), "xml": v.XMLDesc(0)}
            for v in pool.listAllVolumes(0)}
    out["pools"][pool.name()] = {"info": pool.info(), "xml": pool.XMLDesc(0), "volumes": vols}
for iface in conn.listAllInterfaces(0):
    out["interfaces"][iface.name()] = {"mac": iface.MACString(), "active": iface.isActive(),
                                       "xml": iface.XMLDesc(0)}
for dev in conn.listAllDevices(0):
    out["devices"][dev.name()] = {"parent": dev.parent(), "caps": dev.listCaps(), "xml": dev.XMLDesc(0)}
for dom in conn.listAllDomains(0):    # what the test namespace and the tuning elements gave each domain
    entry = out["domains"][dom.name()]
    entry["autostart"] = dom.autostart()
    entry["xml-inactive"] = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    entry["memtune"] = dom.memoryParameters(0)
    entry["vcpupin"] = dom.vcpuPinInfo(0)
    entry["vcpus"] = [dom.vcpusFlags(0), dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM)]
    entry["iothreads"] = dom.ioThreadInfo(0)
    entry["stats"] = conn.domainListGetStats([dom], 0, 0)[0][1]
    snaps = {}
    for snap in dom.listAllSnapshots(0):
        parent = snap.getParent(0).getName() if snap.numChildren(0) >= 0 and snap.getName() not in \
            dom.snapshotListNames(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS) else None
        snaps[snap.getName()] = {"parent": parent, "current": snap.isCurrent(0), "xml": snap.getXMLDesc(0),
                                 "children": sorted(snap.listChildrenNames(0))}
    entry["snapshots"] = snaps
    entry["current-snapshot"] = dom.snapshotCurrent(0).getName() if dom.hasCurrentSnapshot(0) else None
out["counts"] = [conn.numOfDomains(), conn.numOfDefinedDomains(), conn.numOfNetworks(),
                 conn.numOfDefinedNetworks(), conn.numOfStoragePools(), conn.numOfDefinedStoragePools(),
                 conn.numOfInterfaces(), conn.numOfDefinedInterfaces(), conn.numOfDevices(None, 0)]
out["freemem"] = conn.getFreeMemory()
print(json.dumps(out))
