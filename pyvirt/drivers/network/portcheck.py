"""What libvirt 9.0's network driver checks of a network's ``<bandwidth>``, ``<vlan>`` and
``<virtualport>`` (and its portgroups') when one is defined or created (networkValidate),
and when a NIC takes a port of it (networkAllocatePort).

Only the network driver checks these: libvirt's test driver keeps any of them.
"""

from __future__ import annotations

from ...conf.network import NetworkDef
from ...conf.network_records import PortGroup
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError


def _unsupported(detail: str) -> libvirtError:
    return error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.NETWORK, detail)


def mode(net: NetworkDef) -> str:
    return net.forward or "none"


def validate(net: NetworkDef) -> None:
    """networkValidate's checks of these elements, in its order."""
    # the virtual networks shape their own bridge; a bridge network only a named host bridge
    bandwidth_allowed = net.virtual or net.bridge is not None
    if net.bandwidth is not None and not bandwidth_allowed:
        raise _unsupported(f"Unsupported network-wide <bandwidth> element in network {net.name} "
                           f"with forward mode='{mode(net)}'")
    # of pyvirt's forward modes, only a bridge network onto an Open vSwitch bridge tags a vlan
    vlan_allowed = net.forward == "bridge" and net.virtualport is not None and \
        net.virtualport.type == "openvswitch"
    vlan_used = net.vlan is not None
    bad_vlan = False
    default: PortGroup | None = None
    for i, group in enumerate(net.portgroups):
        if vlan_used or group.vlan is not None:
            if group.virtualport is not None:
                bad_vlan |= net.forward != "bridge" or group.virtualport.type != "openvswitch"
            elif not vlan_allowed:
                bad_vlan = True
        if group.default:
            if default is not None:
                raise _unsupported(f"network '{net.name}' has multiple default <portgroup> elements "
                                   f"({default.name} and {group.name}), but only one default is allowed")
            default = group
        if any(other.name == group.name for other in net.portgroups[i + 1:]):
            raise _unsupported(f"multiple <portgroup> elements with the same name ({group.name}) "
                               f"in network '{net.name}'")
        if group.bandwidth is not None and not bandwidth_allowed:
            raise _unsupported(f"Unsupported <bandwidth> element in network '{net.name}' in portgroup "
                               f"'{group.name}' with forward mode='{mode(net)}'")
    # with a default portgroup every port takes one, so the loop above has judged them all
    if bad_vlan or (vlan_used and not vlan_allowed and default is None):
        raise _unsupported(f"<vlan> element specified for network {net.name}, "
                           "whose type doesn't support vlan configuration")


def check_port(net: NetworkDef, portgroup: str | None = None) -> None:
    """A NIC's port of active network ``net`` (of ``portgroup``, else the default one).

    libvirt refuses a virtualport on a network that forwards by IP (its words); pyvirt
    has no Open vSwitch or 802.1Qbg/Qbh port plugging, no vlan tagging and no per-port
    tc shaping, so it refuses those too rather than give a port without them.
    """
    group = next((g for g in net.portgroups if g.name == portgroup), None) if portgroup else \
        next((g for g in net.portgroups if g.default), None)
    virtualport = (group.virtualport if group else None) or net.virtualport
    if virtualport is not None and virtualport.type is not None and net.virtual:
        raise _unsupported(f"<virtualport type='{virtualport.type}'> not supported for network "
                           f"'{net.name}' which uses IP forwarding")
    if virtualport is not None:
        raise _unsupported(f"network '{net.name}': pyvirt cannot plug a port with a <virtualport>")
    if (group is not None and group.vlan is not None) or net.vlan is not None:
        raise _unsupported(f"network '{net.name}': pyvirt cannot tag a port with a <vlan>")
    if group is not None and group.bandwidth is not None:
        raise _unsupported(f"network '{net.name}': pyvirt cannot shape a port with its portgroup's <bandwidth>")
