"""The QEMU driver's baselineCPU against libvirtd 9.0's QEMU driver on the same machine.

libvirt's QEMU driver runs the same generic baseline as its test driver (no QEMU is
asked), takes VIR_CONNECT_BASELINE_CPU_MIGRATABLE too, and leaves out the features
it never gives QEMU.  Each case is answered by libvirtd over TCP (stock python3-libvirt)
and by pyvirt's QEMU driver in process; the answers must be the same.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from daemons import running_libvirtd

import pyvirt

LIBVIRT_PYTHON = "/usr/bin/python3"
EXPAND, MIGRATABLE = 1, 2


def _cpu(arch: str, model: str, vendor: str | None = None, features: tuple[str, ...] = ()) -> str:
    return (f"<cpu><arch>{arch}</arch><model>{model}</model>" + (f"<vendor>{vendor}</vendor>" if vendor else "")
            + "".join(f"<feature name='{f}'/>" for f in features) + "</cpu>")


HASWELL = _cpu("x86_64", "Haswell", "Intel", ("vmx", "invtsc", "cmt", "osxsave"))
CASES = [
    ([HASWELL], 0),
    ([HASWELL], MIGRATABLE),                     # invtsc does not migrate
    ([HASWELL], EXPAND | MIGRATABLE),
    ([HASWELL, _cpu("x86_64", "Broadwell", "Intel", ("vmx", "mbm_total"))], EXPAND),
    ([_cpu("x86_64", "EPYC-Rome", "AMD", ("ospke",)), _cpu("x86_64", "Opteron_G5")], 0),
    ([_cpu("i686", "pentium3")], MIGRATABLE),
    ([_cpu("aarch64", "cortex-a72")], EXPAND | MIGRATABLE),
    ([_cpu("ppc64le", "POWER9", "IBM")], MIGRATABLE),
    ([_cpu("s390x", "z14")], 0),
    ([HASWELL, _cpu("x86_64", "EPYC")], 0),    # vendors differ
    ([HASWELL], 1 << 2),                         # not a flag of this call
    (["<cpu><arch>x86_64</arch>"], 0),
]

LIBVIRT_SIDE = r"""
import json, sys
import libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
conn = libvirt.open(sys.argv[1])
out = []
for cpus, flags in json.loads(sys.stdin.read()):
    try:
        out.append(conn.baselineCPU(cpus, flags))
    except libvirt.libvirtError as exc:
        out.append(["ERR", exc.get_error_code(), exc.get_error_domain(), exc.get_error_message()])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory):
    with running_libvirtd(tmp_path_factory.mktemp("baseline-libvirtd")) as host:
        yield host


def _ours(root: Path) -> list:
    conn = pyvirt.open(f"qemu:///embed?root={root}")
    out = []
    try:
        for cpus, flags in CASES:
            try:
                out.append(conn.baselineCPU(cpus, flags))
            except pyvirt.libvirtError as exc:
                out.append(["ERR", exc.get_error_code(), exc.get_error_domain(), exc.get_error_message()])
    finally:
        conn.close()
    return out


@pytest.mark.libvirtd
def test_baseline_cpu_answers_as_libvirtds_qemu_driver(libvirtd, tmp_path):
    run = subprocess.run([LIBVIRT_PYTHON, "-c", LIBVIRT_SIDE, libvirtd.uri], input=json.dumps(CASES),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = json.loads(run.stdout)
    # the cases show what they are meant to: migratable drops invtsc, the filter cmt and osxsave
    assert "invtsc" in theirs[0] and "invtsc" not in theirs[1] and "cmt" not in theirs[0]
    ours = _ours(tmp_path)
    assert [(c, o) for c, o, t in zip(CASES, ours, theirs) if o != t] == []
