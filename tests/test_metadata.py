"""Title, description and applications' metadata elements (virDomainSetMetadata /
virDomainGetMetadata, virsh desc and metadata) against a real pyvirtd.

The values live in the definition (etc/qemu/NAME.xml) and, while the guest
runs, in the live XML and its status file (run/qemu/NAME.xml): a restarted
daemon still has them.  AFFECT_LIVE and AFFECT_CONFIG choose which; the
errors are libvirt's.  pyvirt's CLI prints what stock virsh prints.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import pyvirt
from pyvirt.conf import metadata as metadata_xml
from pyvirt.conf import parse, parse_status

from guests import READY, tiny_xml, wait_for_text

pytestmark = [pytest.mark.virsh,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

NS = "http://pyvirt.test/app"
LIVE, CONFIG = pyvirt.VIR_DOMAIN_AFFECT_LIVE, pyvirt.VIR_DOMAIN_AFFECT_CONFIG
TITLE, DESC, ELEMENT = (pyvirt.VIR_DOMAIN_METADATA_TITLE, pyvirt.VIR_DOMAIN_METADATA_DESCRIPTION,
                        pyvirt.VIR_DOMAIN_METADATA_ELEMENT)


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return run(["virsh", "-c", uri, *args])


def ours(uri: str, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "pyvirt.cli", "-c", uri, *args])


@pytest.fixture
def running(pyvirtd, guests_built):
    """A persistent tiny guest, running."""
    w = pyvirtd.workdir
    (w / "md.xml").write_text(tiny_xml("md", w / "md.log"))
    assert virsh(pyvirtd.uri, "define", str(w / "md.xml")).returncode == 0
    assert virsh(pyvirtd.uri, "start", "md").returncode == 0
    wait_for_text(w / "md.log", READY)
    return pyvirtd


def config_def(daemon):
    return parse((daemon.state_dir / "etc" / "qemu" / "md.xml").read_text())


def status_def(daemon):
    return parse_status((daemon.state_dir / "run" / "qemu" / "md.xml").read_text()).domain


def test_set_and_get_through_the_library_live_and_config(running):
    conn = pyvirt.open(running.uri)
    dom = conn.lookupByName("md")
    dom.setMetadata(TITLE, "Live title", None, None, LIVE)
    dom.setMetadata(DESC, "config\ndescription", None, None, CONFIG)
    dom.setMetadata(ELEMENT, "<app><item n='1'>x</item></app>", "app", NS, LIVE | CONFIG)

    assert dom.metadata(TITLE, None, 0) == "Live title"               # current = live: running
    assert dom.metadata(DESC, None, CONFIG) == "config\ndescription"
    with pytest.raises(pyvirt.libvirtError) as err:
        dom.metadata(DESC, None, LIVE)
    assert err.value.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN_METADATA
    assert str(err.value) == "metadata not found: Requested metadata element is not present"
    element = dom.metadata(ELEMENT, NS, CONFIG)
    # handed back outside its namespace, as libvirtd 9.0 does; the domain XML keeps the prefix
    assert element == dom.metadata(ELEMENT, NS, LIVE) == '<app>\n  <item n="1">x</item>\n</app>'

    # where they are kept: the definition on disk, the status file of the running guest
    persistent, live = config_def(running), status_def(running)
    assert (persistent.title, persistent.description) == (None, "config\ndescription")
    assert (live.title, live.description) == ("Live title", None)
    for d in (persistent, live):
        assert metadata_xml.get_metadata(d, ELEMENT, NS) == element
    assert f'<app:app xmlns:app="{NS}">' in dom.XMLDesc(0)
    assert "<description>config\ndescription</description>" in dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_INACTIVE)

    # a new element in the same namespace replaces the old one; none removes it
    dom.setMetadata(ELEMENT, "<other/>", "k2", NS, LIVE)
    assert dom.metadata(ELEMENT, NS, LIVE) == '<other/>'
    assert f'<k2:other xmlns:k2="{NS}"/>' in dom.XMLDesc(0)
    dom.setMetadata(ELEMENT, None, None, NS, LIVE)
    with pytest.raises(pyvirt.libvirtError):
        dom.metadata(ELEMENT, NS, LIVE)
    assert dom.metadata(ELEMENT, NS, CONFIG) == element
    # an empty title removes it
    dom.setMetadata(TITLE, "", None, None, LIVE)
    assert "<title>" not in dom.XMLDesc(0)


def test_metadata_survives_a_daemon_restart_and_shows_after_stop(running):
    conn = pyvirt.open(running.uri)
    dom = conn.lookupByName("md")
    dom.setMetadata(ELEMENT, "<keep/>", "k", NS, LIVE)
    dom.setMetadata(TITLE, "persistent title", None, None, CONFIG)
    running.stop()
    running.start()
    conn = pyvirt.open(running.uri)
    dom = conn.lookupByName("md")
    assert dom.metadata(ELEMENT, NS, LIVE) == '<keep/>'
    assert dom.metadata(TITLE, None, CONFIG) == "persistent title"
    dom.destroy()
    assert dom.metadata(TITLE, None, 0) == "persistent title"         # current = config: shut off
    with pytest.raises(pyvirt.libvirtError):
        dom.metadata(ELEMENT, NS, 0)                                    # the live-only element went with the guest


def test_errors_are_libvirt_s(running):
    conn = pyvirt.open(running.uri)
    dom = conn.lookupByName("md")

    def error_of(call, *args):
        with pytest.raises(pyvirt.libvirtError) as err:
            call(*args)
        return err.value.get_error_code(), str(err.value)

    # libvirt's argument checks give their words without the "invalid argument: " prefix
    assert error_of(dom.setMetadata, TITLE, "two\nlines", None, None, 0) == (
        pyvirt.VIR_ERR_INVALID_ARG, "metadata title can't contain newlines")
    assert error_of(dom.setMetadata, ELEMENT, "<x/>", None, NS, 0) == (
        pyvirt.VIR_ERR_INVALID_ARG, "key in virDomainSetMetadata must not be NULL")
    assert error_of(dom.setMetadata, DESC, "d", None, NS, 0) == (
        pyvirt.VIR_ERR_INVALID_ARG, "uri in virDomainSetMetadata must be NULL")
    code, text = error_of(dom.setMetadata, ELEMENT, "<unclosed>", "k", NS, 0)
    assert code == pyvirt.VIR_ERR_XML_DETAIL and text.startswith("XML error: (metadata_xml):1:")
    assert error_of(dom.setMetadata, 7, "x", None, None, 0)[1] == "invalid argument: unknown metadata type '7'"
    assert error_of(dom.metadata, TITLE, None, LIVE | CONFIG)[0] == pyvirt.VIR_ERR_INVALID_ARG
    assert error_of(dom.setMetadata, TITLE, "t", None, None, 4)[0] == pyvirt.VIR_ERR_INVALID_ARG
    transient = conn.createXML(tiny_xml("tr", running.workdir / "tr.log"), 0)
    assert error_of(transient.setMetadata, TITLE, "t", None, None, CONFIG) == (
        pyvirt.VIR_ERR_OPERATION_INVALID,
        "Requested operation is not valid: transient domains do not have any persistent config")
    transient.destroy()
    dom.destroy()
    assert error_of(dom.setMetadata, TITLE, "t", None, None, LIVE) == (
        pyvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running")
    # nothing was changed by the failed calls
    assert "<title>" not in dom.XMLDesc(0) and "<metadata>" not in dom.XMLDesc(0)


def test_python3_libvirt_reads_what_virsh_wrote(running):
    if run(["/usr/bin/python3", "-c", "import libvirt"]).returncode:
        pytest.skip("python3-libvirt is not installed")
    assert virsh(running.uri, "metadata", "md", NS, "--key", "ns", "--set", "<v a='1'/>").returncode == 0
    assert virsh(running.uri, "desc", "--config", "md", "text", "with", "words").returncode == 0
    code = f"""
import libvirt
d = libvirt.open({running.uri!r}).lookupByName('md')
print(d.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, {NS!r}, 0))
print(d.metadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
try:
    d.metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None, 0)
except libvirt.libvirtError as e:
    print(e.get_error_code(), e.get_error_domain())
d.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, 'from python', None, None, libvirt.VIR_DOMAIN_AFFECT_LIVE)
"""
    out = run(["/usr/bin/python3", "-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['<v a="1"/>', "text with words",
                                       f"{pyvirt.VIR_ERR_NO_DOMAIN_METADATA} {pyvirt.VIR_FROM_DOMAIN}"]
    assert status_def(running).title == "from python"


CLI_STEPS = [
    "desc md", "desc --title md", "desc md a  description", "desc md", "desc --config md",
    "desc --live --title md A title", "desc --title md", "desc --current --title md",
    "metadata md " + NS + " --key app --set <app><x/></app>", "metadata md " + NS,
    "metadata --config md " + NS, "metadata md " + NS + " --remove", "metadata md " + NS,
    "metadata md " + NS + " --set <app/>", "desc --live --config md x",
]


def test_cli_prints_what_virsh_prints(running):
    """Each step runs through stock virsh and then pyvirt on the same domain (the second
    run sets the same values again), and both must print the same."""
    for step in CLI_STEPS:
        args = step.split()
        theirs = virsh(running.uri, *args)
        mine = ours(running.uri, *args)
        assert mine.returncode == theirs.returncode, (step, mine.stderr, theirs.stderr)
        if theirs.returncode == 0:
            assert mine.stdout == theirs.stdout, step
        else:
            assert mine.stderr.strip() == theirs.stderr.strip(), step
