"""Print what a test-driver host lists (see tests/test_test_driver_custom.py).

Run as ``PYTHON list_host.py MODULE URI`` (MODULE ``libvirt`` or ``pyvirt``); one
JSON object: node info, capabilities, and per domain, network, pool and volume
what virsh's list/info commands show, and their XML.
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
       "domains": {}, "networks": {}, "pools": {}}
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
print(json.dumps(out))
