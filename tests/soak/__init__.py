"""A chaos soak: random lifecycle, migration and fault operations from several
python3-libvirt clients at once against two real pyvirtd hosts, with the host
invariants checked after every step (tests/test_soak.py, ``make soak``)."""
