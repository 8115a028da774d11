"""What libvirt 9.0's ``test:///default`` host holds, as its test driver formats it.

The figures (node info, NUMA cells, the objects' names, UUIDs and XML) are
libvirt's test-driver defaults, so a script written against libvirt's
``test:///default`` reads the same values here.
"""

from __future__ import annotations

DOMAIN_XML = """<domain type='test'>
  <name>test</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory unit='KiB'>8388608</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='i686'>hvm</type>
    <boot dev='hd'/>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/diskimage1'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </disk>
    <interface type='network'>
      <mac address='aa:bb:cc:dd:ee:ff'/>
      <source network='default'/>
      <target dev='testnet0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </interface>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </memballoon>
  </devices>
</domain>
"""

NETWORK_XML = """<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
"""

POOL_XML = """<pool type='dir'>
  <name>default-pool</name>
  <uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566</uuid>
  <target>
    <path>/default-pool</path>
  </target>
</pool>
"""

INTERFACE_XML = """<interface type='ethernet' name='eth1'>
  <start mode='onboot'/>
  <mtu size='1492'/>
  <protocol family='ipv4'>
    <ip address='192.168.0.5' prefix='24'/>
    <route gateway='192.168.0.1'/>
  </protocol>
  <mac address='aa:bb:cc:dd:ee:ff'/>
</interface>
"""

NODE_DEVICES = (
    ("computer", None, ("system",), """<device>
  <name>computer</name>
  <capability type='system'>
    <hardware>
      <vendor>Libvirt</vendor>
      <version>Test driver</version>
      <serial>123456</serial>
      <uuid>11111111-2222-3333-4444-555555555555</uuid>
    </hardware>
    <firmware>
      <vendor>Libvirt</vendor>
      <version>Test Driver</version>
      <release_date>01/22/2007</release_date>
    </firmware>
  </capability>
</device>
"""),
    ("scsi_host1", "computer", ("scsi_host",), """<device>
  <name>scsi_host1</name>
  <parent>computer</parent>
  <capability type='scsi_host'>
    <host>1</host>
    <unique_id>0</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000012341234</wwnn>
      <wwpn>1000000012341234</wwpn>
      <fabric_wwn>2000000043214321</fabric_wwn>
    </capability>
    <capability type='vport_ops'>
      <max_vports>0</max_vports>
      <vports>0</vports>
    </capability>
  </capability>
</device>
"""),
    ("scsi_host2", "computer", ("scsi_host",), """<device>
  <name>scsi_host2</name>
  <parent>computer</parent>
  <capability type='scsi_host'>
    <host>2</host>
    <unique_id>1</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000056785678</wwnn>
      <wwpn>1000000056785678</wwpn>
      <fabric_wwn>2000000087658765</fabric_wwn>
    </capability>
    <capability type='vport_ops'>
      <max_vports>0</max_vports>
      <vports>0</vports>
    </capability>
  </capability>
</device>
"""),
    # the vHBA libvirt's default host has on scsi_host1
    ("scsi_host11", "scsi_host1", ("scsi_host",), """<device>
  <name>scsi_host11</name>
  <parent>scsi_host1</parent>
  <capability type='scsi_host'>
    <host>11</host>
    <unique_id>10</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000034563456</wwnn>
      <wwpn>1000000034563456</wwpn>
      <fabric_wwn>2000000043214321</fabric_wwn>
    </capability>
  </capability>
</device>
"""),
)

# virNodeInfo: model, memory KiB, cpus, MHz, nodes, sockets, cores, threads
NODE_INFO = ("i686", 3145728, 16, 1400, 2, 2, 2, 2)
# Each NUMA cell: (KiB of memory, page size KiB of its small pages); 8 CPUs each
CELLS = ((2097152, 4), (4194304, 8))
CPUS_PER_CELL = 8
MAX_VCPUS = 32
POOL_CAPACITY = 107374182400          # libvirt's DEFAULT_POOL_CAP: 100 GiB per pool
SECURITY_MODEL = ("testSecurity", "")
SECURITY_LABEL = ("libvirt-test", 1)
# virNodeGetCPUMap: CPUs 0, 2 and 4 online of 8, as libvirt's test driver answers
CPU_MAP = (8, [True, False, True, False, True, False, False, False], 3)


def capabilities(numa: tuple[tuple[int, int], ...] = CELLS) -> str:
    """The host's capabilities document, with the node's NUMA cells."""
    cells = []
    for cell_id, (memory, page) in enumerate(numa):
        cpus = "".join(
            f"            <cpu id='{c}' socket_id='{cell_id}' die_id='0' core_id='{c - cell_id * CPUS_PER_CELL}'"
            f" siblings='{c}'/>\n"
            for c in range(cell_id * CPUS_PER_CELL, (cell_id + 1) * CPUS_PER_CELL))
        cells.append(
            f"        <cell id='{cell_id}'>\n"
            f"          <memory unit='KiB'>{memory}</memory>\n"
            f"          <pages unit='KiB' size='{page}'>{memory // page}</pages>\n"
            "          <pages unit='KiB' size='2048'>0</pages>\n"
            "          <pages unit='KiB' size='1048576'>0</pages>\n"
            f"          <cpus num='{CPUS_PER_CELL}'>\n{cpus}          </cpus>\n"
            "        </cell>\n")
    guests = "".join(
        "  <guest>\n"
        f"    <os_type>{os_type}</os_type>\n"
        "    <arch name='i686'>\n"
        "      <wordsize>32</wordsize>\n"
        "      <emulator>/usr/bin/test-hv</emulator>\n"
        "      <domain type='test'/>\n"
        "    </arch>\n"
        "    <features>\n"
        "      <pae/>\n"
        "      <nonpae/>\n"
        "    </features>\n"
        "  </guest>\n\n" for os_type in ("hvm", "xen"))
    return ("<capabilities>\n\n"
            "  <host>\n"
            "    <cpu>\n"
            "      <arch>i686</arch>\n"
            "      <features>\n"
            "        <pae/>\n"
            "        <nonpae/>\n"
            "      </features>\n"
            "      <pages unit='KiB' size='4'/>\n"
            "      <pages unit='KiB' size='8'/>\n"
            "      <pages unit='KiB' size='2048'/>\n"
            "      <pages unit='KiB' size='1048576'/>\n"
            "    </cpu>\n"
            "    <power_management/>\n"
            "    <iommu support='no'/>\n"
            "    <topology>\n"
            f"      <cells num='{len(numa)}'>\n{''.join(cells)}      </cells>\n"
            "    </topology>\n"
            "    <secmodel>\n"
            f"      <model>{SECURITY_MODEL[0]}</model>\n"
            "      <doi></doi>\n"
            "    </secmodel>\n"
            "  </host>\n\n"
            f"{guests}"
            "</capabilities>\n")

# virConnectFindStoragePoolSources on libvirt's test host: two volume groups, one NFS share
POOL_SOURCES_LOGICAL = """<sources>
  <source>
    <device path='/dev/sda20'/>
    <name>testvg1</name>
    <format type='lvm2'/>
  </source>
  <source>
    <device path='/dev/sda21'/>
    <name>testvg2</name>
    <format type='lvm2'/>
  </source>
</sources>
"""
POOL_SOURCES_NETFS = """<sources>
  <source>
    <host name='%s'/>
    <dir path='/testshare'/>
    <format type='nfs'/>
  </source>
</sources>
"""
