"""Domain XML, status XML and the guest ABI check (a leaf: lxml and stdlib only).

``parse`` / ``DomainDef.format`` read and write libvirt's domain XML;
``check_abi_stability`` says what may not change across migration;
``DomainStatus`` / ``parse_status`` are the running-domain status file.
"""

from __future__ import annotations

from .abi import check_abi_stability, ensure_abi_stable
from .domain import CPUDef, DomainDef, OSDef, parse
from .status import DomainStatus, parse_status

__all__ = ["parse", "DomainDef", "OSDef", "CPUDef", "check_abi_stability", "ensure_abi_stable",
           "DomainStatus", "parse_status"]
