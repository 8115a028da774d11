"""``nop``: libvirt's default lock manager.  Nothing is locked, nothing is carried."""

from __future__ import annotations

from . import LockPlugin, register_plugin


@register_plugin
class NopPlugin(LockPlugin):
    name = "nop"
    uses_state = False
