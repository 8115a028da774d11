"""A script written for libvirt-python.  Run it with ``import libvirt`` (real
python3-libvirt) or ``import pyvirt as libvirt``; both must print the same.

usage: walkthrough.py MODULE URI
"""

import importlib
import sys

libvirt = importlib.import_module(sys.argv[1])
uri = sys.argv[2]

XML = """<domain type='test'>
  <name>walk</name>
  <uuid>5b0f1a5e-6bd3-4d1e-9a55-0c2d1d6c1c01</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>"""

conn = libvirt.open(uri)
print("type", conn.getType())
print("lib", conn.getLibVersion() >= 9000000)
print("domains", sorted(d.name() for d in conn.listAllDomains(0)))
dom = conn.defineXML(XML)
print("defined", dom.name(), dom.UUIDString(), dom.ID(), dom.isActive(), dom.isPersistent())
print("state", dom.state())
dom.create()
print("started id>0", dom.ID() > 0, dom.state(), dom.isActive())
info = dom.info()
print("info", info[0], info[1], info[2], info[3])
dom.suspend()
print("suspended", dom.state())
dom.resume()
print("resumed", dom.state())
xml = dom.XMLDesc(0)
print("xml has name", "<name>walk</name>" in xml, "id=" in xml)
print("inactive xml has id", "id=" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
same = conn.lookupByUUIDString(dom.UUIDString())
print("lookup", same.name(), conn.lookupByID(dom.ID()).name())
dom.destroy()
print("destroyed", dom.state(), dom.isActive())
try:
    dom.suspend()
except libvirt.libvirtError as e:
    print("suspend error raised", isinstance(e.get_error_message(), str))
dom.undefine()
try:
    conn.lookupByName("walk")
except libvirt.libvirtError as e:
    print("lookup error", e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)
try:
    conn.defineXML("<domain type='test'><name>broken")
except libvirt.libvirtError as e:
    print("xml error", e.get_error_code() in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL))
flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
print("active", [d.name() for d in conn.listAllDomains(flags)])
ro = libvirt.openReadOnly(uri)
try:
    ro.lookupByName("test").destroy()
except libvirt.libvirtError as e:
    print("read-only", e.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED)
print("ro lookup ok", ro.lookupByName("test").name())
ro.close()
conn.close()
