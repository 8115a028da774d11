"""libvirt-python's scheduler-parameter and security-label calls, isUpdated and maxVcpus.

Shapes are libvirt-python's: ``schedulerType`` ``[type, nparams]``,
``schedulerParameters*`` a dict, ``securityLabel`` ``[label, enforcing]``,
``getSecurityModel`` ``[model, doi]``.  Setting parameters sends each with
the type the domain's current parameter of that name has, as libvirt-python
does (it asks for them first).
"""

from __future__ import annotations

from collections.abc import Callable

from .tuning import string_okay

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class DomainSchedAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]
    _conn: Any

    def isUpdated(self) -> int:
        return self._call("domain_is_updated")

    def maxVcpus(self) -> int:
        return self._call("domain_get_max_vcpus")

    def securityLabel(self) -> list[Any]:
        label, enforcing = self._call("domain_get_security_label")
        return [label, bool(enforcing)]

    def schedulerType(self) -> list[Any]:
        kind, nparams = self._call("domain_get_scheduler_type")
        return [kind, nparams]

    def _sched_params(self, flags: int | None) -> list[tuple[str, int, Any]]:
        _kind, nparams = self._call("domain_get_scheduler_type")
        if nparams == 0:
            return []
        if flags is None:
            return self._call("domain_get_scheduler_parameters", nparams)
        # libvirt's virDomainGetSchedulerParametersFlags adds STRING_OKAY for drivers that take it
        return self._call("domain_get_scheduler_parameters_flags", nparams, string_okay(self._conn, flags))

    def schedulerParameters(self) -> dict[str, Any]:
        return {name: value for name, _type, value in self._sched_params(None)}

    def schedulerParametersFlags(self, flags: int = 0) -> dict[str, Any]:
        return {name: value for name, _type, value in self._sched_params(flags)}

    def _typed(self, params: dict[str, Any], flags: int | None) -> list[tuple[str, int, Any]]:
        types = {name: ptype for name, ptype, _value in self._sched_params(flags)}
        out = []
        for name, value in params.items():
            if name not in types:      # libvirt-python refuses it itself, before any call
                raise LookupError(f'Attribute name "{name}" could not be recognized')
            out.append((name, types[name], value))
        return out

    def setSchedulerParameters(self, params: dict[str, Any]) -> int:
        self._call("domain_set_scheduler_parameters", self._typed(params, None))
        return 0

    def setSchedulerParametersFlags(self, params: dict[str, Any], flags: int = 0) -> int:
        self._call("domain_set_scheduler_parameters_flags", self._typed(params, flags), flags)
        return 0


class ConnectSchedAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]

    def getSecurityModel(self) -> list[str]:
        model, doi = self._call("node_get_security_model")
        return [model, doi]
