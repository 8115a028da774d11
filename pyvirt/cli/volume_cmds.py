"""Storage volume commands: vol-* with virsh 9.0's options, messages and layouts.

The lookups, sizes and constants are the pool commands' (:mod:`.storage_cmds`).
vol-upload and vol-download stream through libvirt-python's stream calls
(``--sparse``: holes travel as holes, found in the file with SEEK_DATA/SEEK_HOLE
and made again with a seek and a truncate) and show a transfer bar on a
terminal (virsh prints nothing there).
"""

from __future__ import annotations

import argparse
import os
import sys

from .output import print_table
from .registry import CommandError, Handler, command
from .storage_cmds import (
    RESIZE_ALLOCATE, RESIZE_DELTA, RESIZE_SHRINK, SPARSE_STREAM, VOL_DELETE_WITH_SNAPSHOTS, VOL_GET_PHYSICAL,
    VOL_PREALLOC_METADATA, VOL_REFLINK, VOL_TYPES, VOL_VALIDATE, WIPE_ALGORITHMS, _add_vol_args,
    _add_xpath_options, _data, _data_arg, _esc, _failed, _print_xml, _size, _ull, lookup_vol, pool_arg,
    pretty_capacity, read_file, vol_arg,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


# -- vol-list, vol-info, vol-dumpxml, vol-path, vol-key, vol-name, vol-pool ------------------

def vol_type_word(kind: int) -> str:
    return VOL_TYPES[kind] if 0 <= kind < len(VOL_TYPES) else "unknown"


def collect_vols(pool: Any) -> list[Any]:
    """The volumes vol-list shows, sorted by name ignoring case as virsh sorts them."""
    from pyvirt.errors import libvirtError
    try:
        vols = pool.listAllVolumes(0)
    except libvirtError as exc:
        raise _failed("Failed to list volumes", exc)
    return sorted(vols, key=lambda v: v.name().lower())


def vol_rows(vols: list[Any], details: bool) -> list[list[str]]:
    from pyvirt.errors import libvirtError
    rows = []
    for vol in vols:
        try:
            path = vol.path()
        except libvirtError:
            path = "unknown"
        row = [vol.name(), path]
        if details:
            try:
                kind, capacity, allocation = vol.info()
                row += [vol_type_word(kind), pretty_capacity(capacity), pretty_capacity(allocation)]
            except libvirtError:
                row += ["unknown"] * 3
        rows.append(row)
    return rows


@command("vol-list", "list vols")
def _vol_list(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name or uuid")
    p.add_argument("--details", action="store_true", help="display extended details for volumes")

    def run(conn: Any, args: argparse.Namespace) -> None:
        vols = collect_vols(pool_arg(conn, args))
        if args.details:
            print_table(["Name", "Path", "Type", "Capacity", "Allocation"], vol_rows(vols, True))
        else:
            print_table(["Name", "Path"], vol_rows(vols, False))
    return run


@command("vol-info", "storage vol information")
def _vol_info(p: argparse.ArgumentParser) -> Handler:
    _add_vol_args(p)
    p.add_argument("--bytes", action="store_true", help="sizes are represented in bytes rather than pretty units")
    p.add_argument("--physical", action="store_true",
                   help="return the physical size of the volume in allocation field")

    def run(conn: Any, args: argparse.Namespace) -> None:
        vol = vol_arg(conn, args)
        print(f"{'Name:':<15} {vol.name()}")
        kind, capacity, allocation = vol.infoFlags(VOL_GET_PHYSICAL) if args.physical else vol.info()
        print(f"{'Type:':<15} {vol_type_word(kind)}")
        second = "Physical:" if args.physical else "Allocation:"
        for label, value in (("Capacity:", capacity), (second, allocation)):
            print(f"{label:<15} {value} bytes" if args.bytes else f"{label:<15} {pretty_capacity(value)}")
        print()
    return run


@command("vol-dumpxml", "vol information in XML")
def _vol_dumpxml(p: argparse.ArgumentParser) -> Handler:
    _add_vol_args(p)
    _add_xpath_options(p)

    def run(conn: Any, args: argparse.Namespace) -> None:
        _print_xml(vol_arg(conn, args).XMLDesc(0), args.xpath, args.wrap)
    return run


@command("vol-path", "returns the volume path for a given volume name or key")
def _vol_path(p: argparse.ArgumentParser) -> Handler:
    _add_vol_args(p, "volume name or key")

    def run(conn: Any, args: argparse.Namespace) -> None:
        print(vol_arg(conn, args).path())
        print()
    return run


@command("vol-key", "returns the volume key for a given volume name or path")
def _vol_key(p: argparse.ArgumentParser) -> Handler:
    _add_vol_args(p, "volume name or path")

    def run(conn: Any, args: argparse.Namespace) -> None:
        print(vol_arg(conn, args).key())
        print()
    return run


@command("vol-name", "returns the volume name for a given volume key or path")
def _vol_name(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "vol", "volume key or path")

    def run(conn: Any, args: argparse.Namespace) -> None:
        print(lookup_vol(conn, _data(args, "vol"), None, None, by_name=False).name())   # type: ignore[arg-type]
        print()
    return run


@command("vol-pool", "returns the storage pool for a given volume key or path")
def _vol_pool(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "vol", "volume key or path")
    p.add_argument("--uuid", action="store_true", help="return the pool uuid rather than pool name")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        vol = lookup_vol(conn, _data(args, "vol"), None, None, by_name=False)   # type: ignore[arg-type]
        try:
            pool = vol.storagePoolLookupByVolume()
        except libvirtError as exc:
            raise _failed("failed to get parent pool", exc)
        print(pool.UUIDString() if args.uuid else pool.name())
        print()
    return run


# -- vol-create-as, vol-create, vol-create-from, vol-clone ---------------------------------

def build_vol_xml(conn: Any, pool: Any, args: argparse.Namespace) -> tuple[str, str]:
    """virsh's vol-create-as XML: (name, XML); the backing volume is looked up by name in
    the pool, then by key, then by path, and named by its path."""
    from pyvirt.errors import libvirtError
    name = _data(args, "name")
    capacity = _size(_data(args, "capacity"))     # type: ignore[arg-type]
    lines = ["<volume>", f"  <name>{_esc(name)}</name>", f"  <capacity>{capacity}</capacity>"]  # type: ignore[arg-type]
    if args.allocation is not None:
        lines.append(f"  <allocation>{_size(args.allocation)}</allocation>")
    if args.format:
        lines += ["  <target>", f"    <format type='{_esc(args.format)}'/>", "  </target>"]
    if args.backing_vol:
        backing = None
        for attempt in (lambda: pool.storageVolLookupByName(args.backing_vol),
                        lambda: conn.storageVolLookupByKey(args.backing_vol),
                        lambda: conn.storageVolLookupByPath(args.backing_vol)):
            try:
                backing = attempt()
                break
            except libvirtError as exc:
                last = exc
        if backing is None:
            raise _failed(f"failed to get vol '{args.backing_vol}'", last)
        lines += ["  <backingStore>", f"    <path>{_esc(backing.path())}</path>"]
        if args.backing_vol_format:
            lines.append(f"    <format type='{_esc(args.backing_vol_format)}'/>")
        lines.append("  </backingStore>")
    lines.append("</volume>")
    return name, "\n".join(lines) + "\n"   # type: ignore[return-value]


@command("vol-create-as", "create a volume from a set of args")
def _vol_create_as(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name")
    _data_arg(p, "name", "name of the volume")
    _data_arg(p, "capacity", "size of the vol, as scaled integer (default bytes)")
    p.set_defaults(command_name="vol-create-as")
    p.add_argument("--allocation", metavar="STRING", help="initial allocation size, as scaled integer (default bytes)")
    p.add_argument("--format", metavar="STRING", help="file format type raw,bochs,qcow,qcow2,qed,vmdk")
    p.add_argument("--backing-vol", metavar="STRING", help="the backing volume if taking a snapshot")
    p.add_argument("--backing-vol-format", metavar="STRING", help="format of backing volume if taking a snapshot")
    p.add_argument("--prealloc-metadata", action="store_true",
                   help="preallocate metadata (for qcow2 instead of full allocation)")
    p.add_argument("--print-xml", action="store_true", help="print XML document, but don't define/create")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        for name in ("pool", "name", "capacity"):
            _data(args, name)
        pool = pool_arg(conn, args)
        name, xml = build_vol_xml(conn, pool, args)
        if args.print_xml:
            sys.stdout.write(xml)
            print()
            return
        try:
            pool.createXML(xml, VOL_PREALLOC_METADATA if args.prealloc_metadata else 0)
        except libvirtError as exc:
            raise _failed(f"Failed to create vol {name}", exc)
        print(f"Vol {name} created\n")
    return run


def _add_create_flags(p: argparse.ArgumentParser, reflink: bool, validate: bool) -> None:
    p.add_argument("--prealloc-metadata", action="store_true",
                   help="preallocate metadata (for qcow2 instead of full allocation)")
    if reflink:
        p.add_argument("--reflink", action="store_true", help="use btrfs COW lightweight copy")
    if validate:
        p.add_argument("--validate", action="store_true", help="validate the XML against the schema")


def _vol_create_flags(args: argparse.Namespace) -> int:
    return ((VOL_PREALLOC_METADATA if args.prealloc_metadata else 0)
            | (VOL_REFLINK if getattr(args, "reflink", False) else 0)
            | (VOL_VALIDATE if getattr(args, "validate", False) else 0))


@command("vol-create", "create a vol from an XML file")
def _vol_create(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name")
    _data_arg(p, "file", "file containing an XML vol description")
    p.set_defaults(command_name="vol-create")
    _add_create_flags(p, reflink=False, validate=True)

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        _data(args, "pool")
        path = _data(args, "file")
        pool = pool_arg(conn, args)
        xml = read_file(path)    # type: ignore[arg-type]
        try:
            vol = pool.createXML(xml, _vol_create_flags(args))
        except libvirtError as exc:
            raise _failed(f"Failed to create vol from {path}", exc)
        print(f"Vol {vol.name()} created from {path}\n")
    return run


@command("vol-create-from", "create a vol, using another volume as input")
def _vol_create_from(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "pool", "pool name or uuid")
    _data_arg(p, "file", "file containing an XML vol description")
    _data_arg(p, "vol", "vol name, key or path")
    p.set_defaults(command_name="vol-create-from")
    p.add_argument("--inputpool", metavar="STRING", help="pool name or uuid of the input volume's pool")
    _add_create_flags(p, reflink=True, validate=True)

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        for name in ("pool", "file", "vol"):
            _data(args, name)
        pool = pool_arg(conn, args)
        path = _data(args, "file")
        source = lookup_vol(conn, _data(args, "vol"), args.inputpool, "inputpool")   # type: ignore[arg-type]
        xml = read_file(path)    # type: ignore[arg-type]
        try:
            vol = pool.createXMLFrom(xml, source, _vol_create_flags(args))
        except libvirtError as exc:
            raise _failed(f"Failed to create vol from {path}", exc)
        print(f"Vol {vol.name()} created from input vol {source.name()}\n")
    return run


def clone_xml(xml: str, name: str) -> str:
    """virsh's virshMakeCloneXML: the volume's XML with its name replaced, as libxml2 dumps it."""
    from lxml import etree
    doc = etree.fromstring(xml.encode())
    node = doc.find("name")
    if node is None:
        raise CommandError("Failed to allocate XML buffer")
    node.text = name
    return '<?xml version="1.0"?>\n' + etree.tostring(doc, encoding="unicode") + "\n"


@command("vol-clone", "clone a volume.")
def _vol_clone(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "vol", "vol name, key or path")
    _data_arg(p, "newname", "clone name")
    p.set_defaults(command_name="vol-clone")
    p.add_argument("--pool", metavar="STRING", help="pool name or uuid")
    _add_create_flags(p, reflink=True, validate=False)
    p.add_argument("--print-xml", action="store_true", help="print XML document rather than clone the volume")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        _data(args, "vol")
        newname = _data(args, "newname")
        source = vol_arg(conn, args)
        try:
            pool = source.storagePoolLookupByVolume()
        except libvirtError as exc:
            raise _failed("failed to get parent pool", exc)
        xml = clone_xml(source.XMLDesc(0), newname)   # type: ignore[arg-type]
        if args.print_xml:
            sys.stdout.write(xml)
            print()
            return
        try:
            pool.createXMLFrom(xml, source, _vol_create_flags(args))
        except libvirtError as exc:
            raise _failed(f"Failed to clone vol from {source.name()}", exc)
        print(f"Vol {newname} cloned from {source.name()}\n")
    return run


# -- vol-delete, vol-wipe, vol-resize --------------------------------------------------------

@command("vol-delete", "delete a vol")
def _vol_delete(p: argparse.ArgumentParser) -> Handler:
    _add_vol_args(p)
    p.add_argument("--delete-snapshots", action="store_true",
                   help="delete snapshots associated with volume (must be supported by storage driver)")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        vol = vol_arg(conn, args)
        text = _data(args, "vol")
        try:
            vol.delete(VOL_DELETE_WITH_SNAPSHOTS if args.delete_snapshots else 0)
        except libvirtError as exc:
            raise _failed(f"Failed to delete vol {text}", exc)
        print(f"Vol {text} deleted\n")
    return run


@command("vol-wipe", "wipe a vol")
def _vol_wipe(p: argparse.ArgumentParser) -> Handler:
    _add_vol_args(p)
    p.add_argument("--algorithm", metavar="STRING", help="perform selected wiping algorithm")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        vol = vol_arg(conn, args)
        text = _data(args, "vol")
        algorithm = 0
        if args.algorithm is not None:
            if args.algorithm not in WIPE_ALGORITHMS:
                raise CommandError(f"Unsupported algorithm '{args.algorithm}'")
            algorithm = WIPE_ALGORITHMS.index(args.algorithm)
        try:
            if algorithm:
                vol.wipePattern(algorithm, 0)
            else:
                vol.wipe(0)
        except libvirtError as exc:
            raise _failed(f"Failed to wipe vol {text}", exc)
        print(f"Vol {text} wiped\n")
    return run


@command("vol-resize", "resize a vol")
def _vol_resize(p: argparse.ArgumentParser) -> Handler:
    _data_arg(p, "vol", "vol name, key or path")
    _data_arg(p, "capacity", "new capacity for the vol, as scaled integer (default bytes)")
    p.set_defaults(command_name="vol-resize")
    p.add_argument("--pool", metavar="STRING", help="pool name or uuid")
    p.add_argument("--allocate", action="store_true", help="allocate the new capacity, rather than leaving it sparse")
    p.add_argument("--delta", action="store_true", help="use capacity as a delta to current size, rather than the new size")
    p.add_argument("--shrink", action="store_true", help="allow the resize to shrink the volume")
    import re
    p._negative_number_matcher = re.compile(r"^-\d")    # a size such as -5M is data, as virsh reads it

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt.errors import libvirtError
        _data(args, "vol")
        text = _data(args, "capacity").lstrip()     # type: ignore[union-attr]
        flags = ((RESIZE_ALLOCATE if args.allocate else 0) | (RESIZE_DELTA if args.delta else 0)
                 | (RESIZE_SHRINK if args.shrink else 0))
        vol = vol_arg(conn, args)
        if text.startswith("-"):
            # the API takes no negative size; virsh allows one with --shrink, for convenience
            if not args.shrink:
                raise CommandError("negative size requires --shrink")
            text = text[1:]
        capacity = _size(text)
        how = "by" if args.delta else "to"
        try:
            vol.resize(capacity, flags)
        except libvirtError as exc:
            raise _failed(f"Failed to change size of volume '{vol.name()}' {how} {text}", exc)
        print(f"Size of volume '{vol.name()}' successfully changed {how} {text}\n")
    return run


# -- vol-upload, vol-download ------------------------------------------------------------------

class Transfer:
    """A rich transfer bar on stderr while a volume streams, only on a terminal."""

    def __init__(self, label: str, total: int) -> None:
        self.bar: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)
            self.bar = Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                TimeRemainingColumn(), console=Console(file=sys.stderr), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task(label, total=total or None)

    def advance(self, nbytes: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, nbytes)

    def close(self, ok: bool) -> None:
        if self.bar is not None:
            if ok:
                task = self.bar.tasks[0]
                self.bar.update(self.task, completed=task.total if task.total is not None else task.completed)
            self.bar.__exit__(None, None, None)


def _add_transfer_args(p: argparse.ArgumentParser, direction: str) -> None:
    _data_arg(p, "vol", "vol name, key or path")
    _data_arg(p, "file", "file")
    p.set_defaults(command_name=p.prog.split()[-1])
    p.add_argument("--pool", metavar="STRING", help="pool name or uuid")
    p.add_argument("--offset", metavar="NUMBER", help=f"volume offset to {direction}")
    p.add_argument("--length", metavar="NUMBER", help=f"amount of data to {direction.split()[0]}")
    p.add_argument("--sparse", action="store_true", help="preserve sparseness of volume")


def _total(vol: Any, offset: int, length: int) -> int:
    """How many bytes the stream will carry (for the bar), 0 if unknown."""
    from pyvirt.errors import libvirtError
    try:
        capacity = vol.info()[1]
    except libvirtError:
        return length
    left = max(0, capacity - offset)
    return min(length, left) if length else left


@command("vol-upload", "upload file contents to a volume")
def _vol_upload(p: argparse.ArgumentParser) -> Handler:
    _add_transfer_args(p, "upload to")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from pyvirt import sparsefile
        from pyvirt.errors import libvirtError
        offset, length = _ull(args.offset, "offset"), _ull(args.length, "length")
        vol = vol_arg(conn, args)
        name, path = _data(args, "vol"), _data(args, "file")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)      # type: ignore[arg-type]
        except OSError:
            raise CommandError(f"cannot read {path}") from None
        stream = None
        bar = None
        ok = False
        try:
            stream = conn.newStream(0)
            try:
                vol.upload(stream, offset, length, SPARSE_STREAM if args.sparse else 0)
            except libvirtError as exc:
                stream = None
                raise _failed(f"cannot upload to volume {name}", exc)
            bar = Transfer(f"Uploading {name}", os.fstat(fd).st_size)
            end = sparsefile.end_of(fd)

            def source(_st: Any, nbytes: int, _opaque: Any) -> bytes:
                data = os.read(fd, nbytes)
                bar.advance(len(data))
                return data

            def in_data(_st: Any, _opaque: Any) -> list[Any]:
                here = os.lseek(fd, 0, os.SEEK_CUR)
                data, size = sparsefile.section(fd, here, end)
                return [data, size]

            def skip(_st: Any, nbytes: int, _opaque: Any) -> int:
                bar.advance(nbytes)
                return os.lseek(fd, nbytes, os.SEEK_CUR)

            try:
                if args.sparse:
                    stream.sparseSendAll(source, in_data, skip, None)
                else:
                    stream.sendAll(source, None)
            except (libvirtError, OSError) as exc:
                raise _failed(f"cannot send data to volume {name}", exc if isinstance(exc, libvirtError) else None)
            os.close(fd)
            fd = -1
            try:
                stream.finish()
            except libvirtError as exc:
                raise _failed(f"cannot close volume {name}", exc)
            ok = True
        finally:
            if bar is not None:
                bar.close(ok)
            if fd >= 0:
                os.close(fd)
            if not ok and stream is not None:
                try:
                    stream.abort()
                except libvirtError:
                    pass
        print()
    return run


@command("vol-download", "download volume contents to a file")
def _vol_download(p: argparse.ArgumentParser) -> Handler:
    _add_transfer_args(p, "download from")

    def run(conn: Any, args: argparse.Namespace) -> None:
        import stat
        from pyvirt.errors import libvirtError
        offset, length = _ull(args.offset, "offset"), _ull(args.length, "length")
        vol = vol_arg(conn, args)
        name, path = _data(args, "vol"), _data(args, "file")
        created = False
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)   # type: ignore[arg-type]
            created = True
        except FileExistsError:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)              # type: ignore[arg-type]
            except OSError:
                raise CommandError(f"cannot create {path}") from None
        except OSError:
            raise CommandError(f"cannot create {path}") from None
        block = stat.S_ISBLK(os.fstat(fd).st_mode)
        stream = None
        bar = None
        ok = False
        try:
            total = _total(vol, offset, length) if sys.stderr.isatty() else 0   # asked before the data flows
            stream = conn.newStream(0)
            try:
                vol.download(stream, offset, length, SPARSE_STREAM if args.sparse else 0)
            except libvirtError as exc:
                stream = None
                raise _failed(f"cannot download from volume {name}", exc)
            bar = Transfer(f"Downloading {name}", total)

            def sink(_st: Any, data: bytes, _opaque: Any) -> int:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                bar.advance(len(data))
                return len(data)

            def hole(_st: Any, nbytes: int, _opaque: Any) -> int:
                # a file gets a hole (seek, then truncate to extend); a block device needs zeros
                if block:
                    sink(None, bytes(nbytes), None)
                    return 0
                here = os.lseek(fd, nbytes, os.SEEK_CUR)
                os.ftruncate(fd, here)
                bar.advance(nbytes)
                return 0

            try:
                stream.sparseRecvAll(sink, hole, None)
            except (libvirtError, OSError) as exc:
                raise _failed(f"cannot receive data from volume {name}",
                              exc if isinstance(exc, libvirtError) else None)
            try:
                os.close(fd)
            finally:
                fd = -1
            try:
                stream.finish()
            except libvirtError as exc:
                raise _failed(f"cannot close volume {name}", exc)
            ok = True
        finally:
            if bar is not None:
                bar.close(ok)
            if fd >= 0:
                os.close(fd)
            if not ok:
                if stream is not None:
                    try:
                        stream.abort()
                    except libvirtError:
                        pass
                if created:
                    try:
                        os.unlink(path)     # type: ignore[arg-type]
                    except OSError:
                        pass
        print()
    return run
