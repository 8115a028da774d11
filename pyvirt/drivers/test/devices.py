"""The test host's device calls: attach, detach and update of devices, in memory.

libvirt's test driver applies them to the live and/or persistent definition
with the same flag rules and errors as its QEMU driver, and sends the same
DEVICE_REMOVED events; nothing is hot-plugged because nothing runs.
"""

from __future__ import annotations


class DeviceAPI:
    """Mixed into TestConnection (self.host is the shared TestHost)."""
