"""pyvirtlockd: the host's lock daemon, which holds the guests' disk leases.

It is a process of its own so that a pyvirtd crash or restart never drops a
lease: the leases are tied to the QEMU processes (watched through pidfds),
not to pyvirtd's connection.  One per host (per pyvirtd state directory),
started by pyvirtd when absent.  How a lease is held is a backend's job
(:mod:`.backend`); the wire protocol is in :mod:`.protocol`.
"""
