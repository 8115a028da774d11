"""The remote driver: pyvirt's client side of libvirt's RPC protocol."""
