"""pyvirt's checkpoint-* commands print what virsh 9.0 prints.

One session of commands runs, one command per process, through stock virsh and then
through pyvirt's command line against the same pyvirtd test host (which keeps its
state between connections; the session leaves no checkpoint behind, so both start
alike); stdout, stderr and exit status must be virsh's, the clock's times masked.
tests/test_test_driver_checkpoints_diff.py shows virsh through pyvirtd prints what it
prints on libvirt's own test driver.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from daemons import Pyvirtd

_TIMES = [re.compile(r"<creationTime>\d+</creationTime>"), re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")]


def _session(xmlfile: str) -> list[str]:
    return [
        "checkpoint-create-as test k1", "checkpoint-create-as test k2 second",
        "checkpoint-create-as test --name k3 --diskspec vda,checkpoint=bitmap,bitmap=bm3",
        "checkpoint-create-as test --print-xml --name 'a<b' --description \"it's\" --diskspec vda,checkpoint=no",
        "checkpoint-create-as test k9 --diskspec vda,size=1", "checkpoint-create-as test k9 --diskspec vdz",
        f"checkpoint-create test {xmlfile}", "checkpoint-create test --redefine-validate",
        "EDITOR=true checkpoint-edit test kf",
        "EDITOR='sed -i s/from.a.file/edited/' checkpoint-edit test kf", "checkpoint-dumpxml test kf --no-domain",
        "EDITOR=\"sed -i 's/>kf</>kg</'\" checkpoint-edit test kf", "checkpoint-list test --name",
        "checkpoint-edit test nope",
        "checkpoint-list test", "checkpoint-list test --name", "checkpoint-list test --parent",
        "checkpoint-list test --roots --name", "checkpoint-list test --leaves --name",
        "checkpoint-list test --no-leaves --name", "checkpoint-list test --tree", "checkpoint-list test --topological",
        "checkpoint-list test --from k1 --name", "checkpoint-list test --from k1 --descendants --name",
        "checkpoint-list test --from k1 --tree", "checkpoint-list test --descendants",
        "checkpoint-list test --tree --name", "checkpoint-list test --tree --leaves",
        "checkpoint-list test --from nope",
        "checkpoint-dumpxml test k2 --no-domain", "checkpoint-dumpxml test k3", "checkpoint-dumpxml test k3 --size",
        "checkpoint-dumpxml test --checkpointname k1 --no-domain --xpath //disk",
        "checkpoint-dumpxml test", "checkpoint-parent test k2", "checkpoint-parent test k1",
        "checkpoint-info test k2", "checkpoint-info test k1",
        "checkpoint-delete test k2", "checkpoint-parent test k3", "checkpoint-delete test kf --children-only",
        "checkpoint-delete test k1 --children", "checkpoint-delete test k3 --children --children-only",
        "checkpoint-list test --name", "checkpoint-dumpxml test nope", "checkpoint-delete test nope",
        "checkpoint-create-as test k4 --quiesce", "checkpoint-delete test k4 --metadata",
        "checkpoint-delete test kf", "checkpoint-list test",
    ]


def _run(argv: list[str], command: str) -> tuple[str, str, int]:
    """One command of the session; ``EDITOR=... command`` runs it with that editor."""
    words = shlex.split(command)
    env = dict(os.environ)
    if words[0].startswith("EDITOR="):
        env.pop("VISUAL", None)
        env["EDITOR"] = words.pop(0)[len("EDITOR="):]
    out = subprocess.run(argv + words, capture_output=True, text=True, timeout=60, env=env)
    text = out.stdout
    for pattern in _TIMES:
        text = pattern.sub("TIME", text)
    return text, out.stderr, out.returncode


def test_checkpoint_commands_print_what_virsh_prints(tmp_path):
    if shutil.which("virsh") is None:
        pytest.skip("stock virsh is not installed")
    xmlfile = tmp_path / "kf.xml"
    xmlfile.write_text("<domaincheckpoint><name>kf</name><description>from a file</description>"
                       "</domaincheckpoint>\n")
    session = _session(str(xmlfile))
    daemon = Pyvirtd(tmp_path / "daemon")
    daemon.start()
    try:
        uri = daemon.test_uri
        virsh = [_run(["virsh", "-c", uri], c) for c in session]
        ours = [_run([sys.executable, "-m", "pyvirt.cli", "-c", uri], c) for c in session]
    finally:
        daemon.stop()
    said = dict(zip(session, virsh))      # the session did its work
    assert "Domain checkpoint kf created from" in virsh[6][0]
    assert "bitmap='bm3'" in said["checkpoint-dumpxml test k3"][0]
    assert "<description>edited</description>" in said["checkpoint-dumpxml test kf --no-domain"][0]
    differ = [(c, w, h) for c, w, h in zip(session, virsh, ours) if w != h]
    assert not differ, "\n".join(f"$ {c}\n  virsh:  {w!r}\n  pyvirt: {h!r}" for c, w, h in differ)
