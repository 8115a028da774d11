"""libvirt-python's methods, by area, as mixins of ``virDomain`` and ``virConnect``.

The core (lifecycle, lookups, migration, save) stays in :mod:`pyvirt.domain`
and :mod:`pyvirt.connection`; each module here adds one area's methods, all
delegating through ``self._call`` exactly as the core does.
"""
