"""virDomainMigrateGet/SetCompressionCache on a real QEMU, and libvirt-python's
None-on-failure answers of the two migration getters."""

from __future__ import annotations

import subprocess
import time

import pytest

import pyvirt
from guests import tiny_xml

pytestmark = pytest.mark.qemu


def _virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)


def test_compression_cache_set_and_read_back(pyvirtd, tmp_path):
    conn = pyvirt.open(pyvirtd.uri)
    try:
        dom = conn.defineXML(tiny_xml("cc", tmp_path / "cc.log"))
        # a shut-off guest has no QEMU to ask: libvirt's getter fails, so libvirt-python answers None
        assert dom.migrateGetCompressionCache() is None
        assert dom.migrateGetMaxDowntime() is None
        with pytest.raises(pyvirt.libvirtError) as info:
            dom.migrateSetCompressionCache(1 << 20)
        assert info.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID
        dom.create()
        assert dom.migrateSetCompressionCache(128 << 20) == 0
        assert dom.migrateGetCompressionCache() == 128 << 20
        assert isinstance(dom.migrateGetMaxDowntime(), int)
        # stock virsh, through the same RPC rows
        assert _virsh(pyvirtd.uri, "migrate-compcache", "cc", "--size", str(64 << 20)).returncode == 0
        out = _virsh(pyvirtd.uri, "migrate-compcache", "cc")
        assert (out.returncode, out.stdout.strip()) == (0, "Compression cache: 64.000 MiB"), out
        with pytest.raises(pyvirt.libvirtError) as info:
            dom.migrateSetCompressionCache(1 << 20, 1)
        assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
        dom.destroy()
        dom.undefine()
    finally:
        conn.close()
