"""The dependency direction of architecture.md, checked on every import.

Each rule names a group of modules and the modules (or stdlib I/O packages)
they must never import.  A reverse edge fails with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "pyvirt"
IO_MODULES = ("asyncio", "socket", "ssl", "selectors", "subprocess", "threading")
# the protocol core knows nothing of drivers, the daemon or configuration
NOT_BELOW_RPC = ("pyvirt.driver", "pyvirt.driver_storage", "pyvirt.driver_network", "pyvirt.driver_nodedev",
                 "pyvirt.drivers", "pyvirt.daemon", "pyvirt.conf")

# pyvirt.enums is one leaf in two files (pyvirt.enums_more: the classes made on
# first access): each half may import the other and nothing else of pyvirt
_ENUMS = ("pyvirt.enums", "pyvirt.enums_more")
NOT_ENUMS = tuple(sorted(f"pyvirt.{p.stem}" for p in ROOT.iterdir()
                         if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
                         if f"pyvirt.{p.stem}" not in _ENUMS))

# (module prefix, forbidden prefixes).  Prefixes match whole dotted components.
RULES: list[tuple[str, tuple[str, ...]]] = [
    # sans-I/O protocol core: no sockets, no event loop, no drivers
    ("pyvirt.rpc.xdr", IO_MODULES + NOT_BELOW_RPC),
    ("pyvirt.rpc.wire", IO_MODULES + NOT_BELOW_RPC),
    ("pyvirt.rpc.protocol", IO_MODULES + NOT_BELOW_RPC),
    # x509 facts and libvirt's certificate checks: bytes in, verdicts out (rpc.tlsconfig does the ssl)
    ("pyvirt.rpc.tls", IO_MODULES + NOT_BELOW_RPC),
    # every stream module is sans-I/O (the package, its state) but the three that move bytes
    ("pyvirt.rpc.stream", IO_MODULES + NOT_BELOW_RPC + ("pyvirt.rpc.server", "pyvirt.rpc.client")),
    ("pyvirt.rpc.stream.pump", NOT_BELOW_RPC + ("pyvirt.rpc.server", "pyvirt.rpc.client")),
    ("pyvirt.rpc.stream.incoming", NOT_BELOW_RPC + ("pyvirt.rpc.client",)),
    ("pyvirt.rpc.stream.outgoing", NOT_BELOW_RPC + ("pyvirt.rpc.server",)),
    ("pyvirt.rpc", NOT_BELOW_RPC + ("pyvirt.cli", "pyvirt.connection", "pyvirt.domain")),
    # leaves
    ("pyvirt.errors", ("pyvirt.",)),
    ("pyvirt.refs", ("pyvirt.",)),
    ("pyvirt.enums", NOT_ENUMS),
    ("pyvirt.enums_more", NOT_ENUMS),
    # the keycode tables: data over enums, shared by the driver and the command line
    ("pyvirt.keycodes", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf",
                         "pyvirt.driver", "pyvirt.connection", "pyvirt.domain", "pyvirt.api")),
    ("pyvirt.testhooks", ("pyvirt.",)),     # test-only fault-injection points
    ("pyvirt.roff", ("pyvirt.",)),          # man page text helpers
    # holes in files (volume streams): os only, shared by the daemon's streams and the client's local end
    ("pyvirt.sparsefile", ("pyvirt.",) + IO_MODULES),
    # writes the man pages: sees the command line's and the daemon's tables, nothing below them
    ("pyvirt.manpages", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.conf", "pyvirt.driver")),
    ("pyvirt.conf", ("pyvirt.driver", "pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli",
                     "pyvirt.security", "pyvirt.locking", "pyvirt.connection", "pyvirt.domain")),
    # security is a leaf: it may use errors, enums and conf (the definitions it labels for) only
    ("pyvirt.security", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.locking",
                         "pyvirt.driver", "pyvirt.connection", "pyvirt.domain", "pyvirt.migration",
                         "pyvirt.uri", "pyvirt.typedparams", "pyvirt.aio")),
    ("pyvirt.locking", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.security")),
    # the lock daemon: a process of its own below the lock plugins (which talk to it), its protocol sans-I/O
    ("pyvirt.lockd.protocol", IO_MODULES + NOT_BELOW_RPC + ("pyvirt.locking", "pyvirt.rpc", "pyvirt.cli")),
    ("pyvirt.lockd", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf",
                      "pyvirt.locking", "pyvirt.security", "pyvirt.driver", "pyvirt.connection", "pyvirt.domain")),
    ("pyvirt.typedparams", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf",
                            "pyvirt.driver", "pyvirt.connection", "pyvirt.domain")),
    ("pyvirt.migration", ("pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.drivers")),
    # the one migration sequence: shared by the client library and peer-to-peer drivers, so it
    # may use neither of them (nor RPC)
    ("pyvirt.migration_sequence", ("pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.drivers",
                                   "pyvirt.conf", "pyvirt.connection", "pyvirt.domain", "pyvirt.migration")),
    # client credentials (auth.conf, openAuth's callback): plain data, no RPC, no drivers
    ("pyvirt.authconf", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf",
                         "pyvirt.driver", "pyvirt.connection", "pyvirt.domain")),
    ("pyvirt.uri", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf")),
    ("pyvirt.driver", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf")),
    # the storage, network and node-device contracts: siblings of pyvirt.driver, below it (it imports them)
    ("pyvirt.driver_storage", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf",
                               "pyvirt.driver")),
    ("pyvirt.driver_network", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf",
                               "pyvirt.driver")),
    ("pyvirt.driver_nodedev", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.conf",
                               "pyvirt.driver")),
    # the remote driver is the only driver that speaks RPC
    ("pyvirt.drivers.remote", ("pyvirt.daemon", "pyvirt.cli", "pyvirt.connection", "pyvirt.domain")),
    ("pyvirt.drivers", ("pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.connection", "pyvirt.domain")),
    # the save image format is pure: bytes in, values out (the save job does the I/O)
    ("pyvirt.drivers.qemu.saveimage", IO_MODULES + ("os", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli",
                                                    "pyvirt.connection", "pyvirt.domain", "pyvirt.driver",
                                                    "pyvirt.drivers", "pyvirt.conf", "pyvirt.security")),
    ("pyvirt.daemon", ("pyvirt.cli", "pyvirt.connection", "pyvirt.domain")),
    # the command line uses the public API only
    ("pyvirt.cli", ("pyvirt.drivers", "pyvirt.rpc", "pyvirt.daemon", "pyvirt.conf", "pyvirt.driver")),
    ("pyvirt.connection", ("pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli")),
    ("pyvirt.domain", ("pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.drivers")),
    # libvirt-python's methods by area: delegation only, like pyvirt.domain
    ("pyvirt.api", ("pyvirt.rpc", "pyvirt.daemon", "pyvirt.cli", "pyvirt.drivers", "pyvirt.conf")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # "from . import x" imports submodule x
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def matches(name: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return name.startswith(prefix)
    return name == prefix or name.startswith(prefix + ".")


def rule_for(mod: str) -> tuple[str, ...] | None:
    best = None
    for prefix, forbidden in RULES:
        if matches(mod, prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, forbidden)
    return best[1] if best else None


def _known_module(name: str) -> bool:
    """Only report edges to real modules or packages (not 'pkg.function')."""
    if not name.startswith("pyvirt"):
        return True
    rel = Path(*name.split("."))
    return (ROOT.parent / rel).with_suffix(".py").exists() or (ROOT.parent / rel / "__init__.py").exists()


def test_rules_cover_every_package():
    for path in ROOT.rglob("*.py"):
        mod = module_name(path)
        if mod in ("pyvirt", "pyvirt.aio", "pyvirt.demo"):
            continue
        assert rule_for(mod) is not None, f"{mod} has no layering rule"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_reverse_imports(path: Path):
    mod = module_name(path)
    forbidden = rule_for(mod)
    if not forbidden:
        return
    bad = [f"{path.relative_to(ROOT.parent)}:{line} imports {name}"
           for line, name in imports_of(path)
           if _known_module(name) and not matches(name, mod)
           and any(matches(name, f) for f in forbidden)]
    assert not bad, "\n".join(bad)


def test_checker_catches_a_reverse_edge(tmp_path):
    """The checker itself must flag an edge it is meant to flag."""
    assert any(matches(n, f) for n in ["pyvirt.daemon.main"] for f in rule_for("pyvirt.cli.main"))
    assert any(matches("asyncio", f) for f in rule_for("pyvirt.rpc.wire"))
    assert not any(matches("pyvirt.errors", f) for f in rule_for("pyvirt.rpc.wire"))


# The daemon wires RPC to drivers; moving a stream's bytes between a pipe and a
# socket is pyvirt.rpc.stream's job.  Imports cannot say that, so calls are checked.
PIPE_IO = {"read", "write", "readv", "writev", "splice", "sendfile", "pipe", "pipe2", "set_blocking"}
LOOP_FD_IO = {"add_reader", "add_writer"}


def pipe_io_of(source: str, filename: str = "<test>") -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if isinstance(func.value, ast.Name) and func.value.id == "os" and func.attr in PIPE_IO:
                found.append((node.lineno, f"os.{func.attr}()"))
            elif func.attr in LOOP_FD_IO:
                found.append((node.lineno, f"{func.attr}()"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {a.name}") for a in node.names if a.name in PIPE_IO]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, "import threading") for a in node.names if a.name == "threading"]
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "daemon").rglob("*.py")), ids=lambda p: module_name(p))
def test_daemon_does_no_pipe_io(path: Path):
    bad = [f"{path.relative_to(ROOT.parent)}:{line} {what}"
           for line, what in pipe_io_of(path.read_text(), str(path))]
    assert not bad, "the daemon moves no stream bytes itself (pyvirt.rpc.stream does):\n" + "\n".join(bad)


def test_pipe_io_checker_catches_pipe_io():
    source = ("import os, threading\nfrom os import splice\n"
              "def f(loop, fd):\n    os.write(fd, b'x')\n    loop.add_writer(fd, f)\n")
    assert [line for line, _ in pipe_io_of(source)] == [1, 2, 4, 5]
    assert not pipe_io_of("import os\nos.path.join('a', 'b')\nos.getpid()\n")
