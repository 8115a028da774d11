"""pyvirt.conf.cpubaseline / cpux86 beside the differential walk (tests/test_test_driver_host_diff.py):
what it answers without libvirt's CPU map, and the map as read."""

from __future__ import annotations

import pytest

from pyvirt.conf import cpubaseline, cpux86
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError

HASWELL = "<cpu><arch>x86_64</arch><model>Haswell</model><vendor>Intel</vendor></cpu>"


def test_x86_without_the_map_is_refused_as_not_supported(tmp_path):
    cpus = [cpubaseline.parse_host_cpu(HASWELL)]
    with pytest.raises(libvirtError) as info:
        cpux86.baseline(cpus, False, directory=str(tmp_path))
    assert (info.value.get_error_code(), info.value.get_error_domain()) == (ErrorNumber.NO_SUPPORT, ErrorDomain.CPU)
    assert str(tmp_path) in info.value.get_error_message()


@pytest.mark.skipif(not cpux86.available(), reason="libvirt's CPU map is not installed")
def test_the_map_reads_vendors_features_and_models():
    cpu_map = cpux86.load_map()
    assert list(cpu_map.vendors)[:2] == ["Intel", "AMD"]
    # a vendor is its CPUID leaf 0 string: ebx, edx, ecx
    assert cpu_map.vendors["Intel"] == {("cpuid", 0, 0): (0, 0x756E6547, 0x6C65746E, 0x49656E69)}
    assert cpu_map.features["fpu"] == {("cpuid", 1, 0): (0, 0, 0, 1)}
    haswell, noTSX = cpu_map.model("Haswell"), cpu_map.model("Haswell-noTSX")
    assert haswell.vendor == "Intel" and haswell.decode_guest
    assert cpux86._is_subset(haswell.data, cpu_map.features["rtm"])
    assert not cpux86._is_subset(noTSX.data, cpu_map.features["rtm"])
