"""The third differential walk of a test-driver host: the CPU baseline and compare calls,
launch security, the starts that pass file descriptors, isEncrypted
(see tests/test_test_driver_host_diff.py).

Run as ``PYTHON walk_host.py MODULE URI [nofds]``: MODULE is ``libvirt`` (python3-libvirt)
or ``pyvirt``.  It prints one JSON list of ``[step, value]``; a failed call's value is
``["ERR", code, domain, message]``.  With ``nofds`` (a connection that cannot pass
descriptors: TCP) the starts pass none, and one last step tries to pass one, which
libvirt's client answers by dropping the connection.  Each section leaves the host
as it found it.
"""

import json
import os
import sys

from walkbase import URI, libvirt, out, step, M

NOFDS = sys.argv[3:4] == ["nofds"]      # over TCP: the starts pass no files; one step more shows the refusal


def cpu(arch=None, model=None, vendor=None, features=(), extra=""):
    parts = [f"<arch>{arch}</arch>" if arch else "", f"<model>{model}</model>" if model else "",
             f"<vendor>{vendor}</vendor>" if vendor else ""]
    parts += [f"<feature name='{f}'/>" for f in features]
    return f"<cpu{extra}>{''.join(parts)}</cpu>"


conn = libvirt.open(URI)
dom = conn.lookupByName("test")

# -- baseline: arm, ppc64 and x86 (through libvirt's CPU map) computed, s390 and the rest refused ---
A53, A72 = cpu("aarch64", "cortex-a53"), cpu("aarch64", "cortex-a72", "ARM")
step("arm", M(conn, "baselineCPU"), [A53])
step("arm-two", M(conn, "baselineCPU"), [A72, A53])
step("arm-expand", M(conn, "baselineCPU"), [A53], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
step("armv7", M(conn, "baselineCPU"), [cpu("armv7l", "cortex-a15")])
step("armv6-features", M(conn, "baselineCPU"), [cpu("armv6l", "arm1176", features=("vfp",))])
P8 = cpu("ppc64", "POWER8")
step("ppc64", M(conn, "baselineCPU"), [P8])
step("ppc64-same", M(conn, "baselineCPU"), [P8, cpu("ppc64", "POWER8", "IBM")])
step("ppc64le", M(conn, "baselineCPU"), [cpu("ppc64le", "POWER9", "IBM")])
step("ppc64-e5500", M(conn, "baselineCPU"), [cpu("ppc64", "POWERPC_e5500", "Freescale")])
step("ppc64-incompatible", M(conn, "baselineCPU"), [P8, cpu("ppc64", "POWER9")])
step("ppc64-unknown-model", M(conn, "baselineCPU"), [cpu("ppc64", "POWER42")])
step("ppc64-other-vendor", M(conn, "baselineCPU"), [P8, cpu("ppc64", "POWER8", "Freescale")])
step("ppc64-unknown-vendor", M(conn, "baselineCPU"), [cpu("ppc64", "POWER8", "Acme")])
step("ppc64-expand", M(conn, "baselineCPU"), [P8], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
HASWELL = cpu("x86_64", "Haswell", "Intel", ("vmx", "pdpe1gb"))
BROADWELL = cpu("x86_64", "Broadwell", "Intel", ("vmx",))
step("x86", M(conn, "baselineCPU"), [HASWELL])
step("x86-two", M(conn, "baselineCPU"), [HASWELL, BROADWELL])
step("x86-expand", M(conn, "baselineCPU"), [HASWELL, BROADWELL], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
step("i686", M(conn, "baselineCPU"), [cpu("i686", "qemu32")])
step("x86-other-vendor-model", M(conn, "baselineCPU"), [cpu("x86_64", "Icelake-Server-noTSX", "AMD")])
step("x86-three-preferred", M(conn, "baselineCPU"),
     [cpu("x86_64", "n270"), cpu("x86_64", "Nehalem", "Intel", ("ds", "sgx")),
      cpu("x86_64", "Westmere-IBRS", None, ("osvw", "pge"))], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
step("x86-removed-features", M(conn, "baselineCPU"), [cpu("x86_64", "Cooperlake"), cpu("x86_64", "Icelake-Server")])
step("x86-unknown-feature", M(conn, "baselineCPU"), [cpu("x86_64", "Haswell", features=("nosuch",))])
step("x86-unknown-vendor", M(conn, "baselineCPU"), [cpu("x86_64", "Haswell", "Acme")])
step("x86-vendor-of-model", M(conn, "baselineCPU"), [HASWELL, cpu("x86_64", "EPYC", "Intel")])
step("x86-vendors-differ", M(conn, "baselineCPU"), [HASWELL, cpu("x86_64", "EPYC")])
step("x86-unknown-model", M(conn, "baselineCPU"), [cpu("x86_64", "Pentium9000")])
step("feature-twice", M(conn, "baselineCPU"), [cpu("x86_64", "Haswell", features=("vmx", "vmx"))])
step("feature-no-name", M(conn, "baselineCPU"), ["<cpu><arch>x86_64</arch><model>Haswell</model><feature/></cpu>"])
step("s390x", M(conn, "baselineCPU"), [cpu("s390x", "z13")])
step("sparc", M(conn, "baselineCPU"), [cpu("sparc", "x")])
step("unknown-arch", M(conn, "baselineCPU"), [cpu("foo", "x")])
step("arch-second-only", M(conn, "baselineCPU"), [A53, cpu("s390x", "z13")])
step("flag-migratable", M(conn, "baselineCPU"), [A53], libvirt.VIR_CONNECT_BASELINE_CPU_MIGRATABLE)
step("flag-unknown", M(conn, "baselineCPU"), [A53], 1 << 4)
step("empty-list", M(conn, "baselineCPU"), [])
step("malformed", M(conn, "baselineCPU"), ["<cpu>"])
step("malformed-second-line", M(conn, "baselineCPU"), [A53, "<cpu><arch>aarch64</arch>\n<model>x</model>"])
step("empty-string", M(conn, "baselineCPU"), [""])
step("no-arch", M(conn, "baselineCPU"), [cpu(model="cortex-a53")])
step("no-model", M(conn, "baselineCPU"), [cpu("aarch64")])
step("not-cpu", M(conn, "baselineCPU"), ["<domain/>"])
step("guest-mode", M(conn, "baselineCPU"), [cpu("aarch64", "cortex-a53", extra=" mode='custom'")])

# -- what libvirt's test driver does not answer ---------------------------------------------------
step("compare", M(conn, "compareCPU"), A53, 0)
step("baseline-hypervisor", M(conn, "baselineHypervisorCPU"), None, None, None, None, [A53], 0)
step("compare-hypervisor", M(conn, "compareHypervisorCPU"), None, None, None, None, A53, 0)

# -- launch security: the test driver takes no flag, and libvirt always adds STRING_OKAY ---------
step("launch-security", M(dom, "launchSecurityInfo"), 0)
step("launch-security-flag", M(dom, "launchSecurityInfo"), 1)
step("is-encrypted", M(conn, "isEncrypted"))

# -- starts that pass descriptors ----------------------------------------------------------------
FILES_XML = """<domain type='test'>
  <name>files-dom</name>
  <uuid>6f0f3f7e-43a1-4c55-9d3b-2a0c9e51b7a4</uuid>
  <memory>65536</memory>
  <os><type>hvm</type></os>
</domain>"""
r, w = os.pipe()
files = [] if NOFDS else [r, w]


def started(d):
    return [d.name(), d.isActive(), d.isPersistent(), d.state()]


step("create-xml-files", lambda: started(conn.createXMLWithFiles(FILES_XML, files)))
step("create-xml-files-again", lambda: started(conn.createXMLWithFiles(FILES_XML, files)))
step("destroy-files-dom", lambda: conn.lookupByName("files-dom").destroy())
step("files-dom-gone", lambda: conn.lookupByName("files-dom").name())
step("create-xml-files-paused", lambda: started(conn.createXMLWithFiles(FILES_XML, files,
                                                                         libvirt.VIR_DOMAIN_START_PAUSED)))
step("destroy-paused", lambda: conn.lookupByName("files-dom").destroy())
step("create-xml-files-none", lambda: started(conn.createXMLWithFiles(FILES_XML, [])))
step("destroy-none", lambda: conn.lookupByName("files-dom").destroy())
step("create-xml-files-bad-flags", lambda: started(conn.createXMLWithFiles(FILES_XML, files, 1 << 6)))
step("create-xml-files-bad-xml", lambda: started(conn.createXMLWithFiles("<domain type='test'/>", files)))
step("create-with-files-running", M(dom, "createWithFiles"), files)
step("destroy-test", M(dom, "destroy"))
step("create-with-files-bad-flags", M(dom, "createWithFiles"), files, 1)
step("create-with-files", M(dom, "createWithFiles"), files)
step("state-after", M(dom, "state"))
step("destroy-test-again", M(dom, "destroy"))
step("create-with-files-paused", M(dom, "createWithFiles"), files, libvirt.VIR_DOMAIN_START_PAUSED)
step("state-paused", M(dom, "state"))
step("resume", M(dom, "resume"))
step("start-test-again", M(dom, "create"))    # the flag refused above left it shut off
step("pipe-still-open", lambda: [os.write(w, b"x"), os.read(r, 1).decode()])   # only copies were passed
if NOFDS:   # the connection cannot pass them: libvirt's client finds out, and drops the connection
    step("files-refused", lambda: started(conn.createXMLWithFiles(FILES_XML, [r])))
os.close(r)
os.close(w)
print(json.dumps(out))
