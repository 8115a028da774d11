"""virsh's commands for devices and tuning (attach/detach/update devices, memory, vCPUs)."""

from __future__ import annotations
