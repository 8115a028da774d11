"""pyvirt's pool-* and vol-* commands print what virsh 9.0 prints, on the same pyvirtd.

Each scenario runs twice on one daemon, once through stock virsh and once
through pyvirt's command line, each on its own pool (names and UUIDs
normalised), and the two transcripts — stdout and stderr on one pipe, exit
statuses included — must be identical.  Volume transfers go both ways
between the two clients, with --sparse keeping holes (checked in allocated
blocks); --json is checked against its documented keys; unit checks for the
size parser and the pool XML builder.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyvirt.cli import storage_cmds
from pyvirt.cli.json_out import KEYS
from pyvirt.errors import libvirtError

VIRSH = shutil.which("virsh")
needs_virsh = pytest.mark.skipif(VIRSH is None, reason="stock virsh (libvirt-clients) is not installed")
REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def pyvirt_cmd(uri: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "pyvirt.cli", "-c", uri, *args]


def run(argv: list[str]) -> tuple[int, str]:
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    return out.returncode, out.stdout


def transcript(uri: str, tool: str, lines: list[str], name: str, workdir: Path) -> str:
    """Each command line with NAME (the pool) and DIR filled in, run one by one; the output
    with both put back and UUIDs blanked."""
    out = []
    for line in lines:
        words = [w.replace("NAME", name).replace("DIR", str(workdir)) for w in line.split()]
        argv = [VIRSH, "-c", uri, *words] if tool == "virsh" else pyvirt_cmd(uri, *words)
        status, text = run(argv)
        text = text.replace(str(workdir), "DIR").replace(name, "NAME")
        text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
        if words[0].startswith("pool-"):
            # a dir pool's sizes are its file system's, which other processes change between the runs
            text = re.sub(r"\d+\.\d\d [KMGTPE]?i?B", lambda m: "S" * len(m.group()), text)
            text = re.sub(r"(?m)^((?:Allocation|Available):\s+)\d+$", r"\1N", text)
        out.append(f"$ {line}\n{text}[{status}]\n")
    return "".join(out)


def same_transcripts(daemon, tmp_path: Path, lines: list[str]) -> str:
    virsh_dir, pyvirt_dir = tmp_path / "v", tmp_path / "p"
    virsh_dir.mkdir()
    pyvirt_dir.mkdir()
    expected = transcript(daemon.uri, "virsh", lines, "poolv", virsh_dir)
    got = transcript(daemon.uri, "pyvirt", lines, "poolp", pyvirt_dir)
    assert got == expected, "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True),
                                                         "virsh", "pyvirt"))
    return got


POOL_LIFECYCLE = """
pool-capabilities
pool-define-as NAME dir --target DIR/NAME
pool-define-as NAME dir --target DIR/NAME --source-name foo --source-format auto --print-xml
pool-list --all
pool-list --all --details
pool-info NAME
pool-build NAME --overwrite --no-overwrite
pool-build NAME
pool-start NAME
pool-start NAME
pool-autostart NAME
pool-list --all --autostart --name
pool-list --persistent --uuid --name
pool-list --details --uuid
pool-list --type dir,logical --details
pool-list --type bogus
pool-list --all --inactive
pool-autostart NAME --disable
pool-refresh NAME
pool-info NAME --bytes
pool-dumpxml NAME --xpath /pool/target/path
pool-uuid NAME
pool-name NAME
pool-info nosuch
pool-start
pool-destroy NAME
pool-info NAME
pool-list --inactive --details
pool-delete NAME
pool-undefine NAME
pool-undefine NAME
pool-create-as NAME dir --target DIR/NAME --build
pool-list
pool-destroy NAME
pool-list --all
find-storage-pool-sources dir
find-storage-pool-sources bogus
find-storage-pool-sources-as netfs --host 127.0.0.1 --port 1
find-storage-pool-sources dir --srcSpec DIR/missing.xml
""".strip().splitlines()

VOLUMES = """
pool-create-as NAME dir --target DIR/NAME --build
vol-create-as NAME base 10M --format qcow2
vol-create-as NAME top 10M --format qcow2 --backing-vol base --backing-vol-format qcow2
vol-create-as NAME raw 4M --allocation 1M
vol-create-as NAME bad 5Q
vol-create-as NAME huge 100E
vol-create-as NAME a/b 1M
vol-create-as NAME x 1M --print-xml
vol-create-as NAME base 1M
vol-list NAME
vol-list NAME --details
vol-info raw --pool NAME
vol-info --bytes raw --pool NAME
vol-info raw --pool NAME --physical --bytes
vol-info DIR/NAME/raw
vol-info raw
vol-info nope --pool NAME
vol-dumpxml top --pool NAME --xpath /volume/backingStore/path
vol-path raw --pool NAME
vol-key DIR/NAME/raw
vol-name DIR/NAME/raw
vol-pool DIR/NAME/raw
vol-pool --uuid DIR/NAME/raw
vol-pool nope
vol-clone raw raw2 --pool NAME
vol-clone raw raw2 --pool NAME
vol-info raw2 --pool NAME
vol-resize raw 8M --pool NAME
vol-resize raw 1M --pool NAME --delta
vol-resize raw -5M --pool NAME
vol-resize raw 2M --pool NAME
vol-resize raw 2M --pool NAME --shrink
vol-info --bytes raw --pool NAME
vol-wipe raw2 --pool NAME
vol-wipe raw2 --pool NAME --algorithm zero
vol-wipe raw2 --pool NAME --algorithm bogus
vol-delete raw2 --pool NAME
vol-delete raw2 --pool NAME
vol-delete top --pool NAME
vol-delete base --pool NAME
vol-list NAME
pool-destroy NAME
vol-list NAME
vol-info raw --pool NAME
""".strip().splitlines()


@needs_virsh
def test_pool_commands_print_what_virsh_prints(pyvirtd, tmp_path):
    text = same_transcripts(pyvirtd, tmp_path, POOL_LIFECYCLE)
    assert "Pool NAME started" in text and "has been undefined" in text      # the scenario ran


@needs_virsh
def test_volume_commands_print_what_virsh_prints(pyvirtd, tmp_path):
    text = same_transcripts(pyvirtd, tmp_path, VOLUMES)
    assert "Vol raw2 cloned from raw" in text and "successfully changed" in text


@needs_virsh
def test_create_from_and_files_print_what_virsh_prints(pyvirtd, tmp_path):
    files = tmp_path / "files"      # not under either run's directory, which the transcripts rename
    files.mkdir()
    (files / "vol.xml").write_text("<volume><name>copy</name><capacity unit='M'>4</capacity></volume>")
    (files / "pool.xml").write_text("<pool type='dir'><name>filepool</name>"
                                    f"<target><path>{files}/filepool</path></target></pool>")
    lines = f"""
pool-create-as NAME dir --target DIR/NAME --build
vol-create-as NAME orig 4M
vol-create NAME {files}/vol.xml
vol-create NAME {files}/vol.xml
vol-create NAME {files}/missing.xml
vol-create-from NAME {files}/vol.xml orig
vol-create-from NAME {files}/vol.xml orig --inputpool NAME
vol-list NAME
pool-destroy NAME
""".strip().splitlines()
    same_transcripts(pyvirtd, tmp_path, lines)
    for tool in ("virsh", "pyvirt"):
        argv = [VIRSH, "-c", pyvirtd.uri] if tool == "virsh" else pyvirt_cmd(pyvirtd.uri)
        first = run(argv + ["pool-define", f"{files}/pool.xml"])
        second = run(argv + ["pool-undefine", "filepool"])
        if tool == "virsh":
            expected = (first, second)
        else:
            assert (first, second) == expected
    assert expected[0] == (0, f"Pool filepool defined from {files}/pool.xml\n\n")


def sparse_source(path: Path) -> bytes:
    """A 64 MiB file with three islands of data, the rest holes."""
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
        for offset, data in ((0, os.urandom(MiB)), (30 * MiB, os.urandom(4096)), (60 * MiB, b"end" * 1000)):
            f.seek(offset)
            f.write(data)
    return path.read_bytes()


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


@needs_virsh
@pytest.mark.parametrize("uploader,downloader", [("virsh", "pyvirt"), ("pyvirt", "virsh"), ("pyvirt", "pyvirt")])
def test_sparse_upload_and_download_between_clients(pyvirtd, tmp_path, uploader, downloader):
    content = sparse_source(tmp_path / "src.img")
    tools = {"virsh": [VIRSH, "-c", pyvirtd.uri], "pyvirt": pyvirt_cmd(pyvirtd.uri)}
    assert run(tools["virsh"] + ["pool-create-as", "up", "dir", "--target", str(tmp_path / "pool"), "--build"])[0] == 0
    try:
        assert run(tools["virsh"] + ["vol-create-as", "up", "v", "64M"])[0] == 0
        assert run(tools[uploader] + ["vol-upload", "v", str(tmp_path / "src.img"), "--pool", "up", "--sparse"]) \
            == (0, "\n")
        volume = tmp_path / "pool" / "v"
        assert volume.read_bytes() == content
        assert allocated(volume) < 2 * MiB                     # the holes were never written
        out = tmp_path / "out.img"
        assert run(tools[downloader] + ["vol-download", "v", str(out), "--pool", "up", "--sparse"]) == (0, "\n")
        assert out.read_bytes() == content and allocated(out) < 2 * MiB
        # without --sparse the holes arrive as zeros and are written
        plain = tmp_path / "plain.img"
        assert run(tools[downloader] + ["vol-download", "v", str(plain), "--pool", "up"]) == (0, "\n")
        assert plain.read_bytes() == content and allocated(plain) >= 60 * MiB
        # a window of it
        part = tmp_path / "part.img"
        assert run(tools[downloader] + ["vol-download", "v", str(part), "--pool", "up", "--offset", "1000",
                                        "--length", "2000000", "--sparse"]) == (0, "\n")
        assert part.read_bytes() == content[1000:2001000]
    finally:
        run(tools["virsh"] + ["pool-destroy", "up"])


@needs_virsh
def test_transfer_errors_print_what_virsh_prints(pyvirtd, tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "small").write_bytes(b"x" * 5000)
    lines = f"""
pool-create-as NAME dir --target DIR/NAME --build
vol-create-as NAME v 1M
vol-upload v /nonexistent/file --pool NAME
vol-download v /nonexistent/dir/file --pool NAME
vol-upload v {tmp_path}/files/small --pool NAME --offset abc
vol-upload v {tmp_path}/files/small --pool NAME --length 1000
vol-upload nope {tmp_path}/files/small --pool NAME
vol-download v DIR/got --pool NAME --offset 100 --length 50
pool-destroy NAME
""".strip().splitlines()
    same_transcripts(pyvirtd, tmp_path, lines)
    assert not Path("/nonexistent/dir/file").exists()


def test_json_pool_list_and_vol_list_have_the_documented_keys(pyvirtd, tmp_path):
    uri = pyvirtd.uri
    assert run(pyvirt_cmd(uri, "pool-create-as", "j", "dir", "--target", str(tmp_path / "j"), "--build"))[0] == 0
    try:
        assert run(pyvirt_cmd(uri, "vol-create-as", "j", "v", "3M"))[0] == 0
        status, text = run(pyvirt_cmd(uri, "pool-list", "--all", "--json"))
        pools = json.loads(text)
        assert status == 0 and [p["name"] for p in pools] == ["j"]
        assert set(pools[0]) == set(KEYS["pool-list"][1])
        assert pools[0]["state"] == "running" and pools[0]["active"] is True and pools[0]["capacity"] > 0
        status, text = run(pyvirt_cmd(uri, "vol-list", "j", "--json"))
        vols = json.loads(text)
        assert status == 0 and set(vols[0]) == set(KEYS["vol-list"][1])
        assert vols[0] | {"allocation": 0} == {"name": "v", "path": str(tmp_path / "j" / "v"),
                                              "key": str(tmp_path / "j" / "v"), "type": "file", "type_code": 0,
                                              "capacity": 3 * MiB, "allocation": 0}
    finally:
        run(pyvirt_cmd(uri, "pool-destroy", "j"))


def test_completion_lists_pools_and_volumes(pyvirtd, tmp_path):
    uri = pyvirtd.uri
    assert run(pyvirt_cmd(uri, "pool-create-as", "cpool", "dir", "--target", str(tmp_path / "c"), "--build"))[0] == 0
    try:
        assert run(pyvirt_cmd(uri, "vol-create-as", "cpool", "disk1", "1M"))[0] == 0
        assert run(pyvirt_cmd(uri, "complete", "--", "pool-info", "c")) == (0, "cpool\n")
        assert run(pyvirt_cmd(uri, "complete", "--", "vol-info", "--pool", "")) == (0, "cpool\n")
        assert run(pyvirt_cmd(uri, "complete", "--", "vol-info", "di")) == (0, "disk1\n")
    finally:
        run(pyvirt_cmd(uri, "pool-destroy", "cpool"))


# -- units ---------------------------------------------------------------------------------

def test_sizes_as_virsh_scales_them():
    assert storage_cmds.parse_size("10") == 10
    assert storage_cmds.parse_size("10M") == 10 * MiB
    assert storage_cmds.parse_size("10MiB") == 10 * MiB
    assert storage_cmds.parse_size("10MB") == 10_000_000
    assert storage_cmds.parse_size("3k") == 3072
    assert storage_cmds.parse_size("2G") == 2 << 30
    assert storage_cmds.parse_size("7bytes") == 7
    with pytest.raises(libvirtError, match="unknown suffix 'Q'"):
        storage_cmds.parse_size("5Q")
    with pytest.raises(libvirtError, match="numerical overflow"):
        storage_cmds.parse_size("100E")
    with pytest.raises(ValueError):
        storage_cmds.parse_size("M")


def test_pretty_capacity_as_virsh():
    assert storage_cmds.pretty_capacity(0) == "0.00 B"
    assert storage_cmds.pretty_capacity(1023) == "1023.00 B"
    assert storage_cmds.pretty_capacity(1024) == "1.00 KiB"
    assert storage_cmds.pretty_capacity(200704) == "196.00 KiB"
    assert storage_cmds.pretty_capacity(107374182400) == "100.00 GiB"


@needs_virsh
def test_pool_xml_builder_matches_virsh_print_xml():
    """pool-define-as --print-xml with every source option, against virsh on libvirt's own test driver."""
    words = ["pool-define-as", "p", "netfs", "--print-xml", "--source-host", "h", "--source-path", "/exp",
             "--source-dev", "/dev/x", "--source-name", "n", "--target", "/t", "--source-format", "nfs",
             "--auth-type", "chap", "--auth-username", "u", "--secret-usage", "s", "--adapter-name", "host0",
             "--source-protocol-ver", "3", "--source-initiator", "iqn.x"]
    expected = subprocess.run([VIRSH, "-c", "test:///default", *words], capture_output=True, text=True).stdout
    status, got = run([sys.executable, "-m", "pyvirt.cli", "-c", "test:///default", *words])
    assert status == 0 and got == expected


@needs_virsh
def test_pool_edit_prints_what_virsh_prints(pyvirtd, tmp_path, monkeypatch):
    """pool-edit's cycle with an editor that changes nothing, then one that moves the target."""
    lines = """
pool-define-as NAME dir --target DIR/NAME
pool-edit NAME
""".strip().splitlines()
    monkeypatch.setenv("EDITOR", "true")
    monkeypatch.delenv("VISUAL", raising=False)
    same_transcripts(pyvirtd, tmp_path, lines)
    editor = tmp_path / "edit.sh"
    editor.write_text("#!/bin/sh\nsed -i 's#</path>#.moved</path>#' \"$1\"\n")
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    (tmp_path / "v").rename(tmp_path / "v1")
    (tmp_path / "p").rename(tmp_path / "p1")
    text = same_transcripts(pyvirtd, tmp_path, ["pool-edit NAME", "pool-dumpxml NAME --xpath /pool/target/path",
                                                "pool-undefine NAME"])
    assert "XML configuration edited" in text and "NAME.moved" in text


@needs_virsh
def test_pool_event_prints_what_virsh_prints(pyvirtd, tmp_path):
    uri = pyvirtd.uri
    tools = {"virsh": [VIRSH, "-c", uri], "pyvirt": pyvirt_cmd(uri)}
    # the immediate answers: the list, a missing or unknown event type, a timeout with no event
    for words in (["pool-event", "--list"], ["pool-event"], ["pool-event", "--event", "bogus"],
                  ["pool-event", "--event", "lifecycle", "--timeout", "0"]):
        got = {tool: run(argv + words) for tool, argv in tools.items()}
        assert got["pyvirt"] == got["virsh"], words
    # persistent: the lifecycle part stops and starts it again and again
    run(tools["virsh"] + ["pool-define-as", "evp", "dir", "--target", str(tmp_path / "evp")])
    run(tools["virsh"] + ["pool-build", "evp"])
    run(tools["virsh"] + ["pool-start", "evp"])
    try:
        quiet = {tool: run(argv + ["pool-event", "--pool", "evp", "--event", "lifecycle", "--timeout", "1"])
                 for tool, argv in tools.items()}
        assert quiet["pyvirt"] == quiet["virsh"] == (1, "event loop timed out\nevents received: 0\n\n")
        # one-shot watchers of the pool's refresh events; refreshes until both have seen one
        # (nothing tells when a watcher has registered, so the refreshes repeat)
        watchers = {tool: subprocess.Popen(argv + ["pool-event", "--pool", "evp", "--event", "refresh",
                                                   *(["--timestamp"] if tool == "pyvirt" else [])],
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
                    for tool, argv in tools.items()}
        try:
            for _ in range(600):
                if all(w.poll() is not None for w in watchers.values()):
                    break
                run(tools["virsh"] + ["pool-refresh", "evp"])
            outs = {tool: (w.wait(60), w.stdout.read()) for tool, w in watchers.items()}
        finally:
            for w in watchers.values():
                if w.poll() is None:
                    w.kill()
                    w.wait()
        assert outs["virsh"] == (0, "event 'refresh' for storage pool evp\nevents received: 1\n\n")
        code, text = outs["pyvirt"]
        assert code == 0 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+0000: "
                                          r"event 'refresh' for storage pool evp\nevents received: 1\n\n", text)
        # one-shot lifecycle watchers of every pool: the first event each sees, Stopped or
        # Started (when it registered decides which), in virsh's words
        for tool, argv in tools.items():
            w = subprocess.Popen(argv + ["pool-event", "--event", "lifecycle"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))
            try:
                for _ in range(600):
                    if w.poll() is not None:
                        break
                    run(tools["virsh"] + ["pool-destroy", "evp"])
                    run(tools["virsh"] + ["pool-start", "evp"])
                code, text = w.wait(60), w.stdout.read()
            finally:
                if w.poll() is None:
                    w.kill()
                    w.wait()
            if tool == "virsh":
                # virsh's own remote driver, when the next event is in flight as it disconnects
                # (the loop goes on restarting the pool): a warning of the client's, not the daemon's
                text = text.replace("error: One or more references were leaked after disconnect from the "
                                    "hypervisor\n", "")
            assert code == 0 and re.fullmatch(r"event 'lifecycle' for storage pool evp: (Stopped|Started)\n"
                                              r"events received: 1\n\n", text), (tool, text)
    finally:
        run(tools["virsh"] + ["pool-destroy", "evp"])
        run(tools["virsh"] + ["pool-undefine", "evp"])
