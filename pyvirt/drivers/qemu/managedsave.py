"""Managed save: the image the driver keeps for a persistent domain
(``ROOT/lib/qemu/save/NAME.save``), restored by the next start; its XML
read and replaced as a caller-named image's is (virsh managedsave-dumpxml,
managedsave-define)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...errors import ErrorDomain, ErrorNumber, error
from .imagedefine import define
from .imagefile import image_is_partial, image_xml, os_error
from .jobs import JobKind
from .restore import restore

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)


async def start_managed(drv: "QemuDriver", obj: "QemuDomainObj", flags: int, force_boot: bool) -> bool:
    """Start a persistent domain from its managed-save image, if it has one.

    Returns False when the domain should boot normally instead: it has no
    image, ``force_boot`` discarded it, or the image was left incomplete by
    a save that never finished (removed, as libvirt does).  A restore that
    fails for any other reason is an error, and the image is kept.
    """
    path = drv.cfg.managed_save_path(obj.definition.name)
    if not path.exists():
        obj.has_managed_save = False
        return False
    if force_boot or await image_is_partial(str(path)):
        if not force_boot:
            log.warning("%s: ignoring the incomplete managed-save image %s", obj.name, path)
        remove_managed(drv, obj)
        return False
    await restore(drv, str(path), None, flags, managed=obj)
    remove_managed(drv, obj)
    return True


def remove_managed(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    path = drv.cfg.managed_save_path(obj.definition.name)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise os_error("cannot remove managed-save image", str(path), exc) from None
    obj.has_managed_save = False


def _existing_image(drv: "QemuDriver", obj: "QemuDomainObj") -> str:
    path = drv.cfg.managed_save_path(obj.definition.name)
    if not path.exists():
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "domain does not have managed save image")
    return str(path)


async def managed_xml(drv: "QemuDriver", obj: "QemuDomainObj", secure: bool) -> str:
    """virDomainManagedSaveGetXMLDesc: the XML in the domain's managed-save image."""
    return await image_xml(_existing_image(drv, obj), secure)


async def define_managed_xml(drv: "QemuDriver", obj: "QemuDomainObj", dxml: str | None, flags: int) -> None:
    """virDomainManagedSaveDefineXML: replace the XML in the managed-save image (the
    guest ABI kept), or with no XML only its running/paused state."""
    async with drv.job_guard(obj, JobKind.MODIFY):      # not while a start restores it
        await define(_existing_image(drv, obj), dxml, flags, drv.cfg.emulator)
