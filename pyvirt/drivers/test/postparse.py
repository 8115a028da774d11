"""The defaults libvirt's test driver (and its generic post-parse) give a domain's video devices.

A guest with graphics and no ``<video>`` gets one (virDomainDefAddImplicitVideo).  A video
model left to the driver becomes Xen's framebuffer for a Xen or Linux guest, VGA on ppc64,
Cirrus otherwise (testDomainDevicesDefPostParse); its video RAM, when not given, is the
model's default, and every size is rounded up to a power of two as libvirt does.
"""

from __future__ import annotations

from ...conf import DomainDef
from ...conf.devices import Video

# KiB of (v)RAM libvirt gives a model without one (virDomainVideoDefaultRAM, for this driver's
# virt type; models absent here get none)
_DEFAULT_RAM = {"vga": 16384, "cirrus": 16384, "vmvga": 16384, "bochs": 16384, "xen": 4096, "qxl": 65536}


def _power_of_two(kib: int | None) -> int | None:
    if not kib:
        return kib
    return 1 << (kib - 1).bit_length()


def _default_model(d: DomainDef) -> str:
    if d.os.type in ("xen", "linux"):
        return "xen"
    return "vga" if (d.os.arch or "").startswith("ppc64") else "cirrus"


def complete_videos(d: DomainDef) -> None:
    devs = d.devices
    if devs.graphics and not devs.videos:
        devs.videos.append(Video(primary=True))
    for video in devs.videos:
        if video.type == "default":
            video.type = _default_model(d)
        if not video.ram and video.type == "qxl":
            video.ram = _DEFAULT_RAM["qxl"]
        if not video.vram:
            video.vram = _DEFAULT_RAM.get(video.type) or video.vram
        video.ram, video.vram = _power_of_two(video.ram), _power_of_two(video.vram)
        if video.heads is None:
            video.heads = 1
