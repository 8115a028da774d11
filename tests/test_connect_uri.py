"""getURI is the URI the connection was opened with, as libvirt's virConnectGetURI
formats its own conn->uri: stock virsh's ``uri``, python3-libvirt, pyvirt's library
and pyvirt's ``uri`` agree on a remote connection to pyvirtd."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import pyvirt

pytestmark = pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")

STOCK = "import libvirt, sys; print(libvirt.open(sys.argv[1]).getURI())"


def test_uri_is_the_one_the_client_opened(pyvirtd):
    for uri in (pyvirtd.uri, pyvirtd.unix_uri):
        virsh = subprocess.run(["virsh", "-c", uri, "uri"], capture_output=True, text=True, timeout=60)
        ours = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, "uri"],
                              capture_output=True, text=True, timeout=60)
        stock = subprocess.run(["/usr/bin/python3", "-c", STOCK, uri], capture_output=True, text=True, timeout=60)
        assert virsh.returncode == ours.returncode == stock.returncode == 0, (virsh.stderr, ours.stderr, stock.stderr)
        assert ours.stdout == virsh.stdout == f"{uri}\n\n"
        assert stock.stdout == f"{uri}\n"
        conn = pyvirt.open(uri)
        assert conn.getURI() == uri
        conn.close()
        with pytest.raises(pyvirt.libvirtError):
            conn.getURI()
