"""XDR (RFC 4506) as libvirt's RPC uses it, compiled into fast codecs.

A *type object* describes one XDR type (``Int``, ``String(max)``,
``Array(elem, max)``, ``Struct(name, fields)`` ...).  Every type object has

* ``encode(value) -> bytes``
* ``decode(buf) -> value``                 (trailing bytes are ignored, as libvirtd does)
* ``unpack_from(buf, off=0) -> (value, end)``

``buf`` may be ``bytes``, ``bytearray`` or ``memoryview``.

Why compiled: the daemon answers small calls (``GET_INFO``, ``GET_STATE``) at
thousands per second on one core, so an interpretive walk over field lists
costs too much.  On first use each type generates Python source for one
function that unpacks runs of fixed-size fields with a single precomputed
:class:`struct.Struct`, reads strings by slicing, and builds the result
directly; encoding is the mirror image.  The source is ``exec``'d once and
cached on the type object.

Decoded representations (callers rely on these):

=========================  ====================================================
type                       Python value
=========================  ====================================================
Int, UInt, Hyper, UHyper   int
Char/UChar/Short/UShort    int (4 bytes on the wire each, range-checked)
Bool                       bool (encodes any truthy value as 1)
Double                     float
String, OptString          str / None (UTF-8; lengths count bytes)
Opaque, FixedOpaque        bytes
CharString                 str, for ``char x[N]``/``char x<N>`` holding a C string
CharArray                  bytes, for ``char x<N>`` holding binary data (SASL)
Array, FixedArray          list (encode accepts any sequence)
Optional(T)                None or T's value
Union                      ``(discriminant, value)``
Struct                     tuple in field order (encode accepts any sequence),
                           or an instance of ``cls`` when the struct has one
NonnullDomain              :class:`pyvirt.refs.DomainRef`
TypedParam                 ``(field, type, value)``
=========================  ====================================================

Limits are enforced in both directions: a string, opaque or array longer
than its maximum raises :class:`XDRLimitError` on encode and on decode.
Short input raises :class:`XDRTruncatedError`; no ``IndexError`` or
``struct.error`` escapes.
"""

from __future__ import annotations

import struct
from contextlib import contextmanager
from collections.abc import Callable, Iterator, Sequence

from ..refs import (DomainCheckpointRef, DomainRef, DomainSnapshotRef, InterfaceRef, NetworkRef, NodeDeviceRef,
                    StoragePoolRef, StorageVolRef)
from ..errors import ErrorLevel, libvirtError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

# --- limits (remote_protocol.x; numbers are ABI) -----------------------------

STRING_MAX = 4194304
"""REMOTE_STRING_MAX: longest ``remote_nonnull_string``, in bytes."""
DOMAIN_LIST_MAX = 16384
MIGRATE_COOKIE_MAX = 4194304
MIGRATE_PARAM_LIST_MAX = 64
JOB_STATS_MAX = 64
AUTH_TYPE_LIST_MAX = 20
AUTH_SASL_DATA_MAX = 65536
SECURITY_MODEL_MAX = 257  # VIR_SECURITY_MODEL_BUFLEN (256 + NUL)
SECURITY_DOI_MAX = 257  # VIR_SECURITY_DOI_BUFLEN
SECURITY_LABEL_MAX = 4097  # VIR_SECURITY_LABEL_BUFLEN (4096 + NUL)
DOMAIN_MESSAGES_MAX = 2048
DOMAIN_SAVE_PARAMS_MAX = 64
DOMAIN_EVENT_TUNABLE_MAX = 2048
DOMAIN_EVENT_GRAPHICS_IDENTITY_MAX = 20
UUID_BUFLEN = 16
TYPED_PARAM_FIELD_LENGTH = 80
"""C buffer for a typed-parameter name, NUL included: names are at most 79 bytes."""


# --- errors ------------------------------------------------------------------


class XDRError(ValueError):
    """Bytes that cannot be decoded, or a value that cannot be encoded."""


class XDRLimitError(XDRError):
    """A string, opaque or array is longer than its declared maximum."""


class XDRTruncatedError(XDRError):
    """The input ends before the value does."""


def _limit(what: str, n: int, maximum: int) -> XDRLimitError:
    return XDRLimitError(f"{what}: length {n} exceeds maximum {maximum}")


def _trunc(what: str, need: int, have: int) -> XDRTruncatedError:
    return XDRTruncatedError(f"{what}: truncated input (need {need} bytes, have {have})")


def _bad(what: str, detail: str) -> XDRError:
    return XDRError(f"{what}: {detail}")


# --- code generation -----------------------------------------------------------

_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by len & 3
_BASE_NS: dict[str, Any] = {
    "_limit": _limit,
    "_trunc": _trunc,
    "_bad": _bad,
    "_PAD": _PAD,
    "_str": str,
    "_bytes": bytes,
    "_len": len,
    "_spack": struct.pack,
    "_sunpack_from": struct.unpack_from,
    "_struct_error": struct.error,
    "XDRError": XDRError,
    "XDRTruncatedError": XDRTruncatedError,
}


class _Gen:
    """Accumulates the source of one generated function.

    Fixed-size scalars are not emitted at once: they queue in ``pending`` so
    that a run of them becomes one ``struct`` call when something needs the
    buffer offset (``flush``).
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 2
        self.ns: dict[str, Any] = dict(_BASE_NS)
        self.pending: list[tuple[str, str | None]] = []
        self._n = 0

    def tmp(self, hint: str = "v") -> str:
        self._n += 1
        return f"{hint}{self._n}"

    def const(self, obj: Any, hint: str = "k") -> str:
        name = self.tmp("_" + hint)
        self.ns[name] = obj
        return name

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def flush(self) -> None:
        raise NotImplementedError

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        self.flush()
        self.emit(header)
        self.depth += 1
        mark = len(self.lines)
        yield
        self.flush()
        if len(self.lines) == mark:
            self.emit("pass")
        self.depth -= 1

    def source(self, head: str, tail: list[str]) -> str:
        return "\n".join([head, *self.lines, *tail]) + "\n"


class _UnpackGen(_Gen):
    def __init__(self) -> None:
        super().__init__()
        self.deferred: list[str] = []

    def fixed(self, fmt: str) -> str:
        var = self.tmp()
        self.pending.append((fmt, var))
        return var

    def skip(self, nbytes: int) -> None:
        self.pending.append((f"{nbytes}x", None))

    def defer(self, line: str) -> None:
        """Emit ``line`` once the pending fixed run has been unpacked."""
        self.deferred.append(line)

    def flush(self) -> None:
        if self.pending:
            s = struct.Struct(">" + "".join(f for f, _ in self.pending))
            names = [v for _, v in self.pending if v is not None]
            fn = self.const(s.unpack_from, "u")
            self.emit(f"{', '.join(names)}, = {fn}(buf, off)")
            self.emit(f"off += {s.size}")
            self.pending.clear()
        for line in self.deferred:
            self.emit(line)
        self.deferred.clear()


class _PackGen(_Gen):
    def __init__(self) -> None:
        super().__init__()
        self.appends = 0

    def fixed(self, fmt: str, expr: str | None) -> None:
        self.pending.append((fmt, expr))

    def bind(self, expr: str, hint: str = "x") -> str:
        if expr.isidentifier():
            return expr
        var = self.tmp(hint)
        self.emit(f"{var} = {expr}")
        return var

    def append(self, expr: str) -> None:
        self.flush()
        self.emit(f"_a({expr})")
        self.appends += 1

    def flush(self) -> None:
        if self.pending:
            s = struct.Struct(">" + "".join(f for f, _ in self.pending))
            exprs = [e for _, e in self.pending if e is not None]
            fn = self.const(s.pack, "p")
            self.pending.clear()
            self.append(f"{fn}({', '.join(exprs)})")


def _exec(src: str, ns: dict[str, Any], fname: str) -> Callable[..., Any]:
    code = compile(src, f"<xdr {fname}>", "exec")
    exec(code, ns)  # noqa: S102 - source generated above from type objects only
    fn = ns[fname]
    fn.__source__ = src  # for debugging: print(T.decode.__source__)
    return fn


def _compile_unpack(t: "Type", mode: str) -> Callable[..., Any]:
    """mode: 'from' -> unpack_from(buf, off) -> (v, off); 'decode' -> decode(buf) -> v;
    'value' -> decode(buf) with a Struct's driver-convention value."""
    g = _UnpackGen()
    if mode == "value":
        assert isinstance(t, Struct)
        v = t.gen_unpack_value(g, t.name)
    else:
        v = t.gen_unpack(g, t.name)
    g.flush()
    ret = f"return {v}, off" if mode == "from" else f"return {v}"
    g.emit(ret)
    name = g.const(t.name, "name")
    head = (
        "def _unpack(buf, off=0):\n"
        "    blen = _len(buf)\n"
        "    try:"
    )
    tail = [
        "    except _struct_error as exc:",
        f"        raise XDRTruncatedError(f'{{{name}}}: truncated input ({{exc}})') from exc",
        "    except UnicodeDecodeError as exc:",
        f"        raise XDRError(f'{{{name}}}: invalid UTF-8 ({{exc}})') from exc",
    ]
    return _exec(g.source(head, tail), g.ns, "_unpack")


def _compile_pack(t: "Type", mode: str) -> Callable[[Any], bytes]:
    g = _PackGen()
    if mode == "value":
        assert isinstance(t, Struct)
        t.gen_pack_value(g, "x", t.name)
    else:
        t.gen_pack(g, "x", t.name)
    g.flush()
    name = g.const(t.name, "name")
    body = g.lines
    if g.appends == 1 and body and body[-1].lstrip().startswith("_a(") and not any(
        ln.startswith("    " * 3) for ln in body
    ):
        # One struct call and no branches: return its bytes directly.
        last = body.pop()
        body.append(last.replace("_a(", "return (", 1))
        prologue: list[str] = []
        epilogue: list[str] = []
    else:
        prologue = ["        parts = []", "        _a = parts.append"]
        epilogue = ["        return b''.join(parts)"]
    g.lines = prologue + body + epilogue
    head = "def _pack(x):\n    try:"
    tail = [
        "    except XDRError:",
        "        raise",
        "    except (_struct_error, TypeError, AttributeError, ValueError, OverflowError) as exc:",
        f"        raise XDRError(f'{{{name}}}: cannot encode: {{exc}}') from exc",
    ]
    return _exec(g.source(head, tail), g.ns, "_pack")


# --- type objects ----------------------------------------------------------------


class Type:
    """Base of all XDR type objects.

    Subclasses implement ``gen_pack``/``gen_unpack`` (code generation);
    ``encode``/``decode``/``unpack_from`` are compiled lazily on first call.
    """

    name = "?"
    min_size = 4
    """Smallest encoded size in bytes, used to reject absurd array counts early."""
    scalar_fmt: str | None = None
    """struct format char when the type is one unchecked fixed-size scalar."""

    def __init__(self) -> None:
        self._compiled: dict[str, Callable[..., Any]] = {}
        self.encode: Callable[[Any], bytes] = self._first_encode
        self.decode: Callable[[Any], Any] = self._first_decode
        self.unpack_from: Callable[..., tuple[Any, int]] = self._first_unpack_from

    _BUILDERS: dict[str, Callable[["Type"], Callable[..., Any]]] = {
        "encode": lambda t: _compile_pack(t, "plain"),
        "decode": lambda t: _compile_unpack(t, "decode"),
        "unpack_from": lambda t: _compile_unpack(t, "from"),
        "encode_value": lambda t: _compile_pack(t, "value"),
        "decode_value": lambda t: _compile_unpack(t, "value"),
    }

    def compiled(self, kind: str) -> Callable[..., Any]:
        """The compiled function for ``kind`` ('encode', 'decode', 'unpack_from',
        and for structs 'encode_value'/'decode_value'), built once.

        Hold on to this rather than to ``t.encode`` taken before first use,
        which is only the compiling stub.
        """
        fn = self._compiled.get(kind)
        if fn is None:
            fn = self._compiled[kind] = self._BUILDERS[kind](self)
            setattr(self, kind, fn)
        return fn

    def _first_encode(self, value: Any) -> bytes:
        return self.compiled("encode")(value)

    def _first_decode(self, buf: Any) -> Any:
        return self.compiled("decode")(buf)

    def _first_unpack_from(self, buf: Any, off: int = 0) -> tuple[Any, int]:
        return self.compiled("unpack_from")(buf, off)

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        raise NotImplementedError

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<xdr {self.name}>"


class Scalar(Type):
    """A 4- or 8-byte number.  ``lo``/``hi`` are checked when narrower than the wire."""

    def __init__(self, name: str, fmt: str, size: int, lo: int | None = None, hi: int | None = None) -> None:
        super().__init__()
        self.name = name
        self.fmt = fmt
        self.min_size = size
        self.lo = lo
        self.hi = hi
        self.scalar_fmt = fmt if lo is None else None

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        if self.lo is not None:
            var = g.bind(expr)
            g.emit(f"if not {self.lo} <= {var} <= {self.hi}: "
                   f"raise _bad({path!r}, f'{{{var}}} out of range for {self.name}')")
            expr = var
        g.fixed(self.fmt, expr)

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        var = g.fixed(self.fmt)
        if self.lo is not None:
            g.defer(f"if not {self.lo} <= {var} <= {self.hi}: "
                    f"raise _bad({path!r}, f'{{{var}}} out of range for {self.name}')")
        return var


class _Bool(Scalar):
    def __init__(self) -> None:
        super().__init__("bool", "i", 4)
        self.scalar_fmt = None

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        g.fixed("i", f"(1 if {expr} else 0)")

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        var = g.fixed("i")
        g.defer(f"{var} = {var} != 0")
        return var


Int = Scalar("int", "i", 4)
UInt = Scalar("unsigned int", "I", 4)
Hyper = Scalar("hyper", "q", 8)
UHyper = Scalar("unsigned hyper", "Q", 8)
Double = Scalar("double", "d", 8)
Bool = _Bool()
Char = Scalar("char", "i", 4, -128, 127)
UChar = Scalar("unsigned char", "I", 4, 0, 255)
Short = Scalar("short", "i", 4, -32768, 32767)
UShort = Scalar("unsigned short", "I", 4, 0, 65535)


class _Counted(Type):
    """Shared code for variable-length byte strings (string<N>, opaque<N>)."""

    def __init__(self, name: str, maximum: int) -> None:
        super().__init__()
        self.name = f"{name}<{maximum}>"
        self.max = maximum

    def _gen_body(self, g: _UnpackGen, path: str) -> tuple[str, str]:
        n = g.fixed("I")
        g.flush()
        end, nxt = g.tmp("e"), g.tmp("p")
        g.emit(f"if {n} > {self.max}: raise _limit({path!r}, {n}, {self.max})")
        g.emit(f"{end} = off + {n}")
        g.emit(f"{nxt} = {end} + (-{n} & 3)")
        g.emit(f"if {nxt} > blen: raise _trunc({path!r}, {nxt}, blen)")
        return end, nxt

    def _gen_pack_bytes(self, g: _PackGen, data: str, path: str) -> None:
        n = g.tmp("n")
        g.emit(f"{n} = _len({data})")
        g.emit(f"if {n} > {self.max}: raise _limit({path!r}, {n}, {self.max})")
        g.fixed("I", n)
        g.append(data)
        g.emit(f"if {n} & 3: _a(_PAD[{n} & 3])")


class String(_Counted):
    """``remote_nonnull_string``: u32 byte length, UTF-8 bytes, zero pad."""

    def __init__(self, maximum: int = STRING_MAX) -> None:
        super().__init__("string", maximum)

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        data = g.tmp("b")
        g.emit(f"{data} = {expr}.encode('utf-8')")
        self._gen_pack_bytes(g, data, path)

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        end, nxt = self._gen_body(g, path)
        var = g.tmp()
        g.emit(f"{var} = _str(buf[off:{end}], 'utf-8')")
        g.emit(f"off = {nxt}")
        return var


class Opaque(_Counted):
    """``opaque x<N>``: u32 length, raw bytes, zero pad."""

    def __init__(self, maximum: int) -> None:
        super().__init__("opaque", maximum)

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        self._gen_pack_bytes(g, g.bind(expr, "o"), path)

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        end, nxt = self._gen_body(g, path)
        var = g.tmp()
        g.emit(f"{var} = _bytes(buf[off:{end}])")
        g.emit(f"off = {nxt}")
        return var


class FixedOpaque(Type):
    """``opaque x[N]``: exactly N raw bytes plus pad, no length word (e.g. uuid)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.name = f"opaque[{size}]"
        self.size = size
        self.min_size = (size + 3) & ~3

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        var = g.bind(expr, "o")
        g.emit(f"if _len({var}) != {self.size}: "
               f"raise _bad({path!r}, f'need exactly {self.size} bytes, got {{_len({var})}}')")
        g.fixed(f"{self.size}s", var)
        if self.size & 3:
            g.fixed(f"{-self.size & 3}x", None)

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        var = g.fixed(f"{self.size}s")
        if self.size & 3:
            g.skip(-self.size & 3)
        return var


# Sign table for chars: bytes 0x80..0xff are negative C chars, sign-extended on the wire.
_SIGN = bytes(0xFF if b & 0x80 else 0 for b in range(256))


def _chars_to_wire(data: bytes) -> bytes:
    """Each byte becomes a 4-byte big-endian signed int (XDR ``char``)."""
    out = bytearray(4 * len(data))
    sign = data.translate(_SIGN)
    out[0::4] = sign
    out[1::4] = sign
    out[2::4] = sign
    out[3::4] = data
    return bytes(out)


class CharArray(Type):
    """``char x<N>`` or ``char x[N]`` carrying binary data, as ``bytes``.

    Every char is 4 bytes on the wire; decoding keeps the low byte of each
    word, as C's xdr_char does.
    """

    def __init__(self, maximum: int, fixed: bool = False) -> None:
        super().__init__()
        self.max = maximum
        self.fixed = fixed
        self.name = f"char[{maximum}]" if fixed else f"char<{maximum}>"
        self.min_size = 4 * maximum if fixed else 4

    def _gen_unpack_bytes(self, g: _UnpackGen, path: str) -> str:
        if self.fixed:
            g.flush()
            n = str(self.max)
        else:
            n = g.fixed("I")
            g.flush()
            g.emit(f"if {n} > {self.max}: raise _limit({path!r}, {n}, {self.max})")
        end = g.tmp("e")
        var = g.tmp("c")
        g.emit(f"{end} = off + 4 * {n}")
        g.emit(f"if {end} > blen: raise _trunc({path!r}, {end}, blen)")
        g.emit(f"{var} = _bytes(buf[off + 3:{end}:4])")
        g.emit(f"off = {end}")
        return var

    def _gen_pack_bytes(self, g: _PackGen, data: str, path: str) -> None:
        helper = g.const(_chars_to_wire, "chars")
        n = g.tmp("n")
        g.emit(f"{n} = _len({data})")
        if self.fixed:
            g.emit(f"if {n} != {self.max}: "
                   f"raise _bad({path!r}, f'need exactly {self.max} chars, got {{{n}}}')")
        else:
            g.emit(f"if {n} > {self.max}: raise _limit({path!r}, {n}, {self.max})")
            g.fixed("I", n)
        g.append(f"{helper}({data})")

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        self._gen_pack_bytes(g, g.bind(expr, "o"), path)

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        return self._gen_unpack_bytes(g, path)


class CharString(CharArray):
    """A C string carried as chars, as ``str``.

    Fixed (``char model[32]``): NUL-padded to N, so at most N-1 bytes of text.
    Variable (``char label<N>``): the terminating NUL is sent and counted,
    as libvirtd does.  Decoding stops at the first NUL.
    """

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        data = g.tmp("b")
        if self.fixed:
            g.emit(f"{data} = {expr}.encode('utf-8')")
            g.emit(f"if _len({data}) >= {self.max}: "
                   f"raise _limit({path!r}, _len({data}) + 1, {self.max})")
            g.emit(f"{data} = {data}.ljust({self.max}, b'\\0')")
        else:
            g.emit(f"{data} = {expr}.encode('utf-8') + b'\\0'")
        self._gen_pack_bytes(g, data, path)

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        raw = self._gen_unpack_bytes(g, path)
        var = g.tmp()
        g.emit(f"{var} = _str({raw}.split(b'\\0', 1)[0], 'utf-8')")
        return var


class Array(Type):
    """``T x<N>``: u32 count then the elements; decodes to a list."""

    def __init__(self, elem: Type, maximum: int) -> None:
        super().__init__()
        self.elem = elem
        self.max = maximum
        self.name = f"{elem.name}<{maximum}>"

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        seq = g.bind(expr, "s")
        n = g.tmp("n")
        g.emit(f"{n} = _len({seq})")
        g.emit(f"if {n} > {self.max}: raise _limit({path!r}, {n}, {self.max})")
        g.fixed("I", n)
        fmt = self.elem.scalar_fmt
        if fmt is not None:
            g.append(f"_spack('>%d{fmt}' % {n}, *{seq})")
            return
        item = g.tmp("i")
        with g.block(f"for {item} in {seq}:"):
            self.elem.gen_pack(g, item, path + "[]")

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        n = g.fixed("I")
        g.flush()
        g.emit(f"if {n} > {self.max}: raise _limit({path!r}, {n}, {self.max})")
        var = g.tmp("l")
        fmt = self.elem.scalar_fmt
        if fmt is not None:
            size = struct.calcsize(">" + fmt)
            g.emit(f"{var} = list(_sunpack_from('>%d{fmt}' % {n}, buf, off))")
            g.emit(f"off += {size} * {n}")
            return var
        need = self.elem.min_size
        g.emit(f"if off + {need} * {n} > blen: raise _trunc({path!r}, off + {need} * {n}, blen)")
        g.emit(f"{var} = []")
        with g.block(f"for _ in range({n}):"):
            item = self.elem.gen_unpack(g, path + "[]")
            g.defer(f"{var}.append({item})")
        return var


class FixedArray(Type):
    """``T x[N]``: exactly N elements, no count; decodes to a list."""

    def __init__(self, elem: Type, size: int) -> None:
        super().__init__()
        self.elem = elem
        self.size = size
        self.name = f"{elem.name}[{size}]"
        self.min_size = elem.min_size * size

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        seq = g.bind(expr, "s")
        g.emit(f"if _len({seq}) != {self.size}: "
               f"raise _bad({path!r}, f'need exactly {self.size} elements, got {{_len({seq})}}')")
        item = g.tmp("i")
        with g.block(f"for {item} in {seq}:"):
            self.elem.gen_pack(g, item, path + "[]")

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        g.flush()
        var = g.tmp("l")
        g.emit(f"{var} = []")
        with g.block(f"for _ in range({self.size}):"):
            item = self.elem.gen_unpack(g, path + "[]")
            g.defer(f"{var}.append({item})")
        return var


class Optional(Type):
    """``T *x``: u32 0 (NULL, decoded as None) or 1 followed by T."""

    def __init__(self, elem: Type) -> None:
        super().__init__()
        self.elem = elem
        self.name = f"{elem.name}*"

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        var = g.bind(expr)
        with g.block(f"if {var} is None:"):
            g.fixed("I", "0")
        with g.block("else:"):
            g.fixed("I", "1")
            self.elem.gen_pack(g, var, path)

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        flag = g.fixed("I")
        g.flush()
        var = g.tmp()
        with g.block(f"if {flag} == 0:"):
            g.emit(f"{var} = None")
        with g.block(f"elif {flag} == 1:"):
            inner = self.elem.gen_unpack(g, path)
            g.defer(f"{var} = {inner}")
        with g.block("else:"):
            g.emit(f"raise _bad({path!r}, f'optional flag must be 0 or 1, got {{{flag}}}')")
        return var


class Union(Type):
    """``union switch (int d) { case K: T; ... }`` decoded as ``(d, value)``.

    ``arms`` maps each discriminant to its type, or to None for a void arm.
    """

    def __init__(self, name: str, arms: dict[int, Type | None]) -> None:
        super().__init__()
        self.name = name
        self.arms = dict(arms)

    def _gen_pack_arms(self, g: _PackGen, disc: str, val: str, path: str) -> None:
        kw = "if"
        for key, arm in self.arms.items():
            with g.block(f"{kw} {disc} == {key}:"):
                g.fixed("i", disc)
                if arm is not None:
                    arm.gen_pack(g, val, path)
            kw = "elif"
        with g.block("else:"):
            g.emit(f"raise _bad({path!r}, f'unknown discriminant {{{disc}}}')")

    def _gen_unpack_arms(self, g: _UnpackGen, path: str, build: Callable[[str, str], str]) -> str:
        disc = g.fixed("i")
        g.flush()
        var = g.tmp("u")
        kw = "if"
        for key, arm in self.arms.items():
            with g.block(f"{kw} {disc} == {key}:"):
                inner = arm.gen_unpack(g, path) if arm is not None else "None"
                g.defer(f"{var} = {build(disc, inner)}")
            kw = "elif"
        with g.block("else:"):
            g.emit(f"raise _bad({path!r}, f'unknown discriminant {{{disc}}}')")
        return var

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        disc, val = g.tmp("d"), g.tmp("x")
        g.emit(f"{disc}, {val} = {expr}")
        self._gen_pack_arms(g, disc, val, path)

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        return self._gen_unpack_arms(g, path, lambda d, v: f"({d}, {v})")


class Struct(Type):
    """An XDR struct: ``fields`` is a sequence of ``(name, type)`` in wire order.

    Decodes to a plain tuple (fastest to build, and ``method(*args)`` is the
    driver calling convention); with ``cls`` it decodes to ``cls(*fields)``
    and encodes from the attributes named like the fields.

    ``encode_value``/``decode_value`` follow the driver return convention:
    no fields -> None, one field -> the bare value, several -> a tuple.
    """

    def __init__(self, name: str, fields: Sequence[tuple[str, Type]], cls: type | None = None) -> None:
        super().__init__()
        self.name = name
        self.fields = tuple(fields)
        self.names = tuple(n for n, _ in self.fields)
        self.cls = cls
        self.min_size = sum(t.min_size for _, t in self.fields)
        self.encode_value: Callable[[Any], bytes] = self._first_encode_value
        self.decode_value: Callable[[Any], Any] = self._first_decode_value

    def _first_encode_value(self, value: Any) -> bytes:
        return self.compiled("encode_value")(value)

    def _first_decode_value(self, buf: Any) -> Any:
        return self.compiled("decode_value")(buf)

    def as_dict(self, value: Any) -> dict[str, Any]:
        """Field name -> value, for logs and debugging."""
        if self.cls is not None:
            return {n: getattr(value, n) for n in self.names}
        return dict(zip(self.names, value))

    # -- generation
    def _gen_pack_fields(self, g: _PackGen, values: list[str], path: str) -> None:
        for (fname, ftype), val in zip(self.fields, values):
            ftype.gen_pack(g, val, f"{path}.{fname}")

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        if not self.fields:
            return
        if self.cls is not None:
            obj = g.bind(expr)
            values = [f"{obj}.{n}" for n in self.names]
        else:
            values = [g.tmp("f") for _ in self.fields]
            g.emit(f"{', '.join(values)}, = {expr}")
        self._gen_pack_fields(g, values, path)

    def gen_pack_value(self, g: _PackGen, expr: str, path: str) -> None:
        if len(self.fields) == 1 and self.cls is None:
            self._gen_pack_fields(g, [expr], path)
        else:
            self.gen_pack(g, expr, path)

    def _gen_unpack_fields(self, g: _UnpackGen, path: str) -> list[str]:
        return [ftype.gen_unpack(g, f"{path}.{fname}") for fname, ftype in self.fields]

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        values = self._gen_unpack_fields(g, path)
        var = g.tmp("t")
        if self.cls is None:
            g.defer(f"{var} = ({', '.join(values)}{',' if values else ''})")
        else:
            cls = g.const(self.cls, "cls")
            g.defer(f"{var} = {cls}({', '.join(values)})")
        return var

    def gen_unpack_value(self, g: _UnpackGen, path: str) -> str:
        if self.cls is None and len(self.fields) <= 1:
            values = self._gen_unpack_fields(g, path)
            return values[0] if values else "None"
        return self.gen_unpack(g, path)


class _TypedParam(Type):
    """``remote_typed_param`` = field name + union of 7 value types, as (field, type, value)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "remote_typed_param"
        self.field_type = String(TYPED_PARAM_FIELD_LENGTH - 1)
        self.value_type = Union("remote_typed_param_value", {
            1: Int, 2: UInt, 3: Hyper, 4: UHyper, 5: Double, 6: Bool, 7: String(STRING_MAX),
        })
        self.min_size = 12

    def gen_pack(self, g: _PackGen, expr: str, path: str) -> None:
        field, disc, val = g.tmp("f"), g.tmp("d"), g.tmp("x")
        g.emit(f"{field}, {disc}, {val} = {expr}")
        self.field_type.gen_pack(g, field, path + ".field")
        self.value_type._gen_pack_arms(g, disc, val, path + ".value")

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        field = self.field_type.gen_unpack(g, path + ".field")
        return self.value_type._gen_unpack_arms(
            g, path + ".value", lambda d, v: f"({field}, {d}, {v})")


# --- common libvirt types --------------------------------------------------------

NonnullString = String(STRING_MAX)
OptString = Optional(NonnullString)
"""``remote_string``: None or a string."""
UUID = FixedOpaque(UUID_BUFLEN)

class _NonnullDomain(Struct):
    """``remote_nonnull_domain`` decoding to :class:`DomainRef`, with a decode cache.

    Nearly every call names a domain, and a client names the same few over
    and over; building a DomainRef (str decode plus a frozen dataclass) is
    most of a small call's decode time.  DomainRefs are immutable, so the
    decoder keeps the last few thousand keyed by their exact wire bytes.
    Only short names are cached: any client may send 4 MiB names, and
    thousands of those kept as keys would be gigabytes.
    """

    CACHE_SIZE = 4096
    CACHED_NAME_MAX = 232
    """Longest name, in bytes, cached: a wire form (length, name, padding, uuid, id) of 256 bytes at most."""

    def __init__(self) -> None:
        super().__init__("remote_nonnull_domain",
                         [("name", NonnullString), ("uuid", UUID), ("id", Int)],
                         cls=DomainRef)
        self.cache: dict[bytes, DomainRef] = {}

    def gen_unpack(self, g: _UnpackGen, path: str) -> str:
        n = g.fixed("I")
        g.flush()
        name_path = path + ".name"
        end, var, key = g.tmp("e"), g.tmp("t"), g.tmp("key")
        cache = g.const(self.cache, "cache")
        g.emit(f"if {n} > {STRING_MAX}: raise _limit({name_path!r}, {n}, {STRING_MAX})")
        g.emit(f"{end} = off + {n} + (-{n} & 3) + 20")
        g.emit(f"if {end} > blen: raise _trunc({path!r}, {end}, blen)")
        with g.block(f"if {n} <= {self.CACHED_NAME_MAX}:"):
            g.emit(f"{key} = _bytes(buf[off - 4:{end}])")
            g.emit(f"{var} = {cache}.get({key})")
            with g.block(f"if {var} is None:"):
                g.emit(f"{var} = {self._build(g, n, end)}")
                with g.block(f"if _len({cache}) >= {self.CACHE_SIZE}:"):
                    g.emit(f"{cache}.clear()")
                g.emit(f"{cache}[{key}] = {var}")
        with g.block("else:"):
            g.emit(f"{var} = {self._build(g, n, end)}")
        g.emit(f"off = {end}")
        return var

    def _build(self, g: _UnpackGen, n: str, end: str) -> str:
        """Source of a helper call building the DomainRef from the buffer."""
        make = g.const(_make_domain, "mkdom")
        return f"{make}(_str(buf[off:off + {n}], 'utf-8'), buf, {end} - 20)"


_DOM_TAIL = struct.Struct(">16si")
_new_object = object.__new__
_set_name = DomainRef.__dict__["name"].__set__  # type: ignore[attr-defined]
_set_uuid = DomainRef.__dict__["uuid"].__set__  # type: ignore[attr-defined]
_set_id = DomainRef.__dict__["id"].__set__  # type: ignore[attr-defined]


def _make_domain(name: str, buf: Any, off: int) -> DomainRef:
    # The uuid is exactly 16 bytes by construction, so DomainRef's own check
    # (and its slow frozen __init__) can be skipped.
    uuid, ident = _DOM_TAIL.unpack_from(buf, off)
    dom = _new_object(DomainRef)
    _set_name(dom, name)
    _set_uuid(dom, uuid)
    _set_id(dom, ident)
    return dom


NonnullDomain = _NonnullDomain()
Domain = Optional(NonnullDomain)
NonnullNetwork = Struct("remote_nonnull_network", [("name", NonnullString), ("uuid", UUID)], cls=NetworkRef)
Network = Optional(NonnullNetwork)
NonnullStoragePool = Struct("remote_nonnull_storage_pool", [("name", NonnullString), ("uuid", UUID)],
                            cls=StoragePoolRef)
StoragePool = Optional(NonnullStoragePool)
NonnullStorageVol = Struct("remote_nonnull_storage_vol",
                           [("pool", NonnullString), ("name", NonnullString), ("key", NonnullString)],
                           cls=StorageVolRef)
StorageVol = Optional(NonnullStorageVol)
NonnullInterface = Struct("remote_nonnull_interface", [("name", NonnullString), ("mac", NonnullString)],
                          cls=InterfaceRef)
NonnullNodeDevice = Struct("remote_nonnull_node_device", [("name", NonnullString)], cls=NodeDeviceRef)
NonnullDomainSnapshot = Struct("remote_nonnull_domain_snapshot", [("name", NonnullString), ("dom", NonnullDomain)],
                               cls=DomainSnapshotRef)
NonnullDomainCheckpoint = Struct("remote_nonnull_domain_checkpoint",
                                 [("name", NonnullString), ("dom", NonnullDomain)], cls=DomainCheckpointRef)
TypedParam = _TypedParam()


def TypedParams(maximum: int) -> Array:  # noqa: N802 - reads like a type
    """``remote_typed_param x<maximum>``: a list of (field, type, value)."""
    return Array(TypedParam, maximum)


RemoteError = Struct("remote_error", [
    ("code", Int),
    ("domain", Int),
    ("message", OptString),
    ("level", Int),
    ("dom", Domain),
    ("str1", OptString),
    ("str2", OptString),
    ("str3", OptString),
    ("int1", Int),
    ("int2", Int),
    ("net", Network),
])
"""libvirt's error on the wire; see :func:`error_to_wire` / :func:`error_from_wire`."""


ELLIPSIS = "..."
"""Ends a text cut to fit the wire."""
_INT_RANGE = range(-2**31, 2**31)


def _wire_text(text: Any) -> str | None:
    """``text`` as a ``remote_string`` always encodes it: valid UTF-8 (lone
    surrogates escaped), at most STRING_MAX bytes (cut, ending in ELLIPSIS)."""
    if text is None:
        return None
    if type(text) is not str:
        text = str(text)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "backslashreplace")
        text = data.decode("utf-8")
    if len(data) <= STRING_MAX:
        return text
    # an error quoting a huge argument (a 4 MiB path): its start says enough
    cut = data[:STRING_MAX - len(ELLIPSIS)].decode("utf-8", "ignore")   # never half a character
    return cut + ELLIPSIS


def _wire_int(value: Any) -> int:
    return value if type(value) is int and value in _INT_RANGE else -1


def error_to_wire(err: libvirtError) -> tuple[Any, ...]:
    """The ``remote_error`` tuple for ``err`` (dom and net are sent NULL, as libvirtd does).

    Whatever the error holds, the tuple encodes: an error reply must never
    fail (the call would go unanswered), so over-long texts are cut and
    out-of-range numbers sent as -1."""
    code, domain, message, level, str1, str2, str3, int1, int2 = err.err
    return (_wire_int(code), _wire_int(domain), _wire_text(message), _wire_int(level), None,
            _wire_text(str1), _wire_text(str2), _wire_text(str3), _wire_int(int1), _wire_int(int2), None)


def error_from_wire(value: Sequence[Any]) -> libvirtError:
    """Rebuild the libvirtError a peer sent.  A NULL message reads as libvirt's default."""
    code, domain, message, level, _dom, str1, str2, str3, int1, int2, _net = value
    if message is None:
        message = "An error occurred, but the cause is unknown"
    return libvirtError(message, code, domain, level if level is not None else ErrorLevel.ERROR,
                        str1, str2, str3, int1, int2)


def encode_error(err: libvirtError) -> bytes:
    return RemoteError.encode(error_to_wire(err))


def decode_error(buf: Any) -> libvirtError:
    return error_from_wire(RemoteError.decode(buf))


__all__ = [
    "XDRError", "XDRLimitError", "XDRTruncatedError",
    "Type", "Scalar", "Int", "UInt", "Hyper", "UHyper", "Double", "Bool",
    "Char", "UChar", "Short", "UShort",
    "String", "Opaque", "FixedOpaque", "CharArray", "CharString",
    "Array", "FixedArray", "Optional", "Union", "Struct",
    "NonnullString", "OptString", "UUID", "NonnullDomain", "Domain",
    "NonnullNetwork", "Network", "NonnullStoragePool", "StoragePool", "NonnullStorageVol", "StorageVol",
    "NonnullDomainSnapshot", "NonnullDomainCheckpoint", "NonnullInterface", "NonnullNodeDevice", "TypedParam",
    "TypedParams", "RemoteError",
    "error_to_wire", "error_from_wire", "encode_error", "decode_error",
    "STRING_MAX", "DOMAIN_LIST_MAX", "MIGRATE_COOKIE_MAX", "MIGRATE_PARAM_LIST_MAX",
    "JOB_STATS_MAX", "AUTH_TYPE_LIST_MAX", "AUTH_SASL_DATA_MAX", "SECURITY_MODEL_MAX",
    "SECURITY_DOI_MAX", "SECURITY_LABEL_MAX", "DOMAIN_MESSAGES_MAX", "DOMAIN_SAVE_PARAMS_MAX",
    "DOMAIN_EVENT_TUNABLE_MAX", "DOMAIN_EVENT_GRAPHICS_IDENTITY_MAX", "UUID_BUFLEN",
    "TYPED_PARAM_FIELD_LENGTH",
]
