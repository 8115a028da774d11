"""Migratable XML: the definition one host sends another (migration Begin, save images).

libvirt's qemu driver writes it as the inactive XML of a copy with a few
devices taken out, for compatibility with receivers that add them back by
themselves (qemuDomainDefFormatBufInternal, libvirt 9.0):

* the default USB controller of an i440FX guest (the only USB controller,
  index 0, no model or ``piix3-uhci``, no user alias);
* the PCI root (the only PCI controller, index 0, ``pci-root``, no user alias);
* PS/2 keyboards (every x86 guest has one);

and with the CPU as it was defined (libvirt's origCPU), not as QEMU expanded it.

The receiver's post-parse adds each back at the same address, so the guest
sees the same machine.  pyvirt's own guests may lack devices a receiver would
add on its own; for those the copy says so explicitly, so nothing is added
that the running QEMU does not have:

* no USB controller at all: ``<controller type='usb' model='none'/>``;
* no memory balloon: ``<memballoon model='none'/>``;
* graphics but no video card: ``<video><model type='none'/></video>``.
"""

from __future__ import annotations

from .controllers import Controller
from .devices import USER_ALIAS_PREFIX, Memballoon, Video
from .pciaddr import is_i440fx


def _user_alias(dev: object) -> bool:
    alias = getattr(dev, "alias", None)
    return bool(alias and alias.startswith(USER_ALIAS_PREFIX))


def migratable_copy(d):   # DomainDef -> DomainDef (conf.domain imports this module)
    """A copy of ``d`` as libvirt's migratable XML describes it (format it inactive)."""
    copy = d.copy()
    if copy.orig_cpu is not None:      # the CPU as defined, not as QEMU expanded it
        copy.cpu = copy.orig_cpu
    devs = copy.devices
    usbs = [c for c in devs.controllers if c.type == "usb"]
    if not usbs:
        devs.controllers.append(Controller("usb", 0, "none"))
    elif (len(usbs) == 1 and is_i440fx(copy) and usbs[0].index == 0
          and usbs[0].model in (None, "piix3-uhci") and not _user_alias(usbs[0])):
        devs.controllers.remove(usbs[0])
    pcis = [c for c in devs.controllers if c.type == "pci"]
    if len(pcis) == 1 and pcis[0].index == 0 and pcis[0].model == "pci-root" and not _user_alias(pcis[0]):
        devs.controllers.remove(pcis[0])
    devs.inputs = [i for i in devs.inputs if not (i.type == "keyboard" and i.bus in ("ps2", "xen"))]
    if devs.memballoon is None:
        devs.memballoon = Memballoon("none")
    if devs.graphics and not devs.videos:
        devs.videos = [Video(type="none")]
    return copy
