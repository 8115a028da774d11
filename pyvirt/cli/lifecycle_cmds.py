"""virsh's commands for lifecycle and metadata (reset, metadata, title and description)."""

from __future__ import annotations
