"""QEMU live migration: the cookie, the parameters, and the two sides.

``cookie`` is the XML each step hands the next (pure, no I/O); ``params``
maps the API's flags and typed parameters to QEMU's; ``source`` runs Begin,
Perform and Confirm, ``destination`` runs Prepare and Finish.
"""
