"""Reading and writing XML the way libvirt does.

Writing: libvirt does not use a DOM serializer; it prints each element with
two-space indentation, single-quoted attributes in a fixed order per element,
text inline (``<name>x</name>``) and the five XML entities escaped in text and
attributes alike.  :class:`Node` plus :func:`render` reproduce that, so each
dataclass only states its element, attribute order and children.

Reading: a hardened lxml parser (no entities, no network, comments dropped),
plus small accessors that raise libvirt's XML errors naming the element and
attribute at fault.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorDomain, ErrorLevel, ErrorNumber, error, libvirtError

# libvirt escapes all five entities in text and attributes alike.  Whitespace
# controls are escaped too (libvirt does not), so that values stored in
# attributes (status XML) survive attribute-value normalisation.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;",
                               '"': "&quot;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;",
                               '"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})

INDENT = "  "

Attrs = Iterable[tuple[str, object]]


@dataclass(slots=True)
class Node:
    """One element to write: attributes in order, then children or text."""

    tag: str
    attrs: list[tuple[str, str]] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    text: str | None = None
    keep_open: bool = False   # write <tag>\n</tag> when empty, as libvirt does for <devices>
    raw: str | None = None    # already-serialized XML written as is, indented (<metadata> children)


def el(tag: str, attrs: Attrs = (), children: Iterable[Node | None] = (),
       text: str | None = None, keep_open: bool = False) -> Node:
    """Build a :class:`Node`; attributes whose value is ``None`` are left out."""
    return Node(tag,
                [(name, str(value)) for name, value in attrs if value is not None],
                [c for c in children if c is not None],
                text, keep_open)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def render(node: Node, level: int = 0) -> str:
    """The element as libvirt prints it, ending with a newline."""
    out: list[str] = []
    _render(node, level, out)
    return "".join(out)


def _render(node: Node, level: int, out: list[str]) -> None:
    pad = INDENT * level
    if node.raw is not None:
        out.extend(f"{pad}{line}\n" for line in node.raw.splitlines())
        return
    head = node.tag + "".join(f" {k}='{v.translate(_ATTR_ESCAPES)}'" for k, v in node.attrs)
    if node.children:
        out.append(f"{pad}<{head}>\n")
        for child in node.children:
            _render(child, level + 1, out)
        out.append(f"{pad}</{node.tag}>\n")
    elif node.text is not None:
        out.append(f"{pad}<{head}>{node.text.translate(_TEXT_ESCAPES)}</{node.tag}>\n")
    elif node.keep_open:
        out.append(f"{pad}<{head}>\n{pad}</{node.tag}>\n")
    else:
        out.append(f"{pad}<{head}/>\n")


# -- reading ------------------------------------------------------------------

def xml_detail(detail: str) -> libvirtError:
    return error(ErrorNumber.XML_DETAIL, ErrorDomain.DOMAIN, detail)


def unsupported(detail: str) -> libvirtError:
    return error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN, detail)


def syntax_error(data: bytes, log: etree._ListErrorLog | None, source: str,
                 domain: ErrorDomain) -> libvirtError:
    """libxml2's first fatal error worded as libvirt's parser callback words it:
    ``SOURCE:LINE: MESSAGE``, the line the parser stopped in and a pointer under the
    byte it stopped at (tabs kept, so it lines up); ``(null)`` for an empty line.

    ``source`` is the document's name exactly as libvirt gives it per API
    (``(domain_definition)``, ``network_update_xml``...).
    """
    entries = list(log) if log is not None else []
    first = next((e for e in entries if e.level == etree.ErrorLevels.FATAL), entries[0] if entries else None)
    line_no, column = (first.line, first.column) if first is not None else (1, 1)
    message = first.message if first is not None else "Document is empty"
    # libxml2 counts columns in characters, libvirt's pointer in bytes: find the byte
    lines = data.split(b"\n")
    index = min(max(line_no, 1), len(lines)) - 1
    start = sum(len(text) + 1 for text in lines[:index])
    chars = lines[index].decode("utf-8", "replace")[:max(column - 1, 0)]
    cur = min(start + len(chars.encode("utf-8")), len(data))

    def eol(at: int) -> bool:
        return at < len(data) and data[at] in b"\r\n"

    # libvirt's walk: back over line ends, back to the line's start, forward to its end;
    # the pointer stands as far from that start as the parser's own position
    begin = cur
    while begin > 0 and eol(begin):
        begin -= 1
    while begin > 0 and not eol(begin):
        begin -= 1
    if eol(begin):
        begin += 1
    stop = begin
    while stop < len(data) and not eol(stop) and data[stop] != 0:
        stop += 1
    context = data[begin:stop]
    pointer = "".join("\t" if context[n:n + 1] == b"\t" else "-" for n in range(min(cur - begin, len(context))))
    text = f"{source}:{line_no}: {message}\n{context.decode('utf-8', 'replace') or '(null)'}\n{pointer}^"
    return libvirtError(text, ErrorNumber.XML_DETAIL, domain, ErrorLevel.ERROR, "%s", text)


def parse_document(xml: str | bytes, root: str | None, source: str,
                   domain: ErrorDomain = ErrorDomain.DOMAIN) -> etree._Element:
    """Parse ``xml`` and check its root element is ``<root>`` (any element when None),
    as libvirt's virXMLParse does.

    ``source`` names the document in syntax errors exactly as libvirt does for
    the API (``(domain_definition)``); ``domain`` is the error domain of the
    calling code, as libvirt's VIR_FROM_THIS.
    """
    # A str is already decoded: tell libxml2 so, or an encoding declaration
    # inside it would make lxml refuse the string.
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    parser = etree.XMLParser(remove_comments=True, remove_pis=True, resolve_entities=False,
                             no_network=True, huge_tree=False,
                             encoding="utf-8" if isinstance(xml, str) else None)
    if not data.strip(b"\0"):      # libxml2 stops before it has a line to show
        raise syntax_error(b"", None, source, domain)
    try:
        doc = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        raise syntax_error(data, parser.error_log, source, domain) from None
    if root is not None and doc.tag != root:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.XML,
                    f"expecting root element of '{root}', not '{etree.QName(doc).localname}'")
    return doc


def child(parent: etree._Element, tag: str) -> etree._Element | None:
    """The first child ``<tag>`` (namespaced look-alikes do not match)."""
    return parent.find(tag)


def children(parent: etree._Element, tag: str) -> list[etree._Element]:
    return parent.findall(tag)


def text_of(node: etree._Element | None, strip: bool = False) -> str | None:
    """Element text; empty text reads as absent, as in libvirt's XPath helpers."""
    if node is None or not node.text:
        return None
    value = node.text.strip() if strip else node.text
    return value or None


def child_text(parent: etree._Element, tag: str, strip: bool = False) -> str | None:
    return text_of(child(parent, tag), strip)


def int_attr(node: etree._Element, name: str, minimum: int | None = None) -> int | None:
    raw = node.get(name)
    if raw is None:
        return None
    return to_int(raw, f"attribute '{name}' of <{node.tag}>", minimum)


UINT_MAX = 2**32 - 1   # libvirt reads XML numbers into C ints: nothing larger gets through


def to_int(raw: str, what: str, minimum: int | None = None, maximum: int = UINT_MAX) -> int:
    text = raw.strip()
    body = text[1:] if text[:1] == "-" else text
    if not body.isascii() or not body.isdigit():
        raise xml_detail(f"invalid value '{raw}' for {what}: expected an integer")
    value = int(text)
    if minimum is not None and value < minimum:
        raise xml_detail(f"invalid value '{raw}' for {what}: must be at least {minimum}")
    if value > maximum:
        raise xml_detail(f"invalid value '{raw}' for {what}: must be at most {maximum}")
    return value


def bool_attr(node: etree._Element, name: str) -> bool | None:
    """A yes/no attribute; ``None`` when absent."""
    raw = node.get(name)
    if raw is None:
        return None
    if raw not in ("yes", "no"):
        raise xml_detail(f"invalid value '{raw}' for attribute '{name}' of <{node.tag}>: "
                         "expected 'yes' or 'no'")
    return raw == "yes"


def check_choice(value: str, allowed: Collection[str], what: str,
                 code: ErrorNumber = ErrorNumber.XML_DETAIL) -> str:
    """``value`` if it is one of ``allowed``; otherwise an error naming both.

    Use ``CONFIG_UNSUPPORTED`` for values libvirt knows but pyvirt does not
    model, ``XML_DETAIL`` for values that are simply wrong.
    """
    if value not in allowed:
        verb = "unsupported" if code == ErrorNumber.CONFIG_UNSUPPORTED else "invalid"
        raise error(code, ErrorDomain.DOMAIN,
                    f"{verb} {what} '{value}' (expected one of: {', '.join(allowed)})")
    return value


# -- libvirt's virXMLProp* readers: their checks, their words (errors from its XML module) -------

def _prop_error(detail: str) -> libvirtError:
    return error(ErrorNumber.XML_ERROR, ErrorDomain.XML, detail)


def prop_tristate(node: etree._Element, name: str) -> bool | None:
    """virXMLPropTristateBool: yes/no, None when absent; anything else refused."""
    raw = node.get(name)
    if raw is None:
        return None
    if raw not in ("yes", "no"):
        raise _prop_error(f"Invalid value for attribute '{name}' in element '{node.tag}': '{raw}'.")
    return raw == "yes"


def prop_enum(node: etree._Element, name: str, values: Collection[str]) -> str | None:
    """virXMLPropEnum with NONZERO: one of ``values`` (not the enum's zero name), None when absent."""
    raw = node.get(name)
    if raw is None:
        return None
    if raw not in values:
        raise _prop_error(f"Invalid value for attribute '{name}' in element '{node.tag}': '{raw}'.")
    return raw


def prop_uint(node: etree._Element, name: str, *, required: bool = False, nonzero: bool = False) -> int | None:
    """virXMLPropUInt in base 10: an unsigned 32-bit number, None when absent and not required."""
    raw = node.get(name)
    if raw is None:
        if required:
            raise _prop_error(f"Missing required attribute '{name}' in element '{node.tag}'")
        return None
    # strtoul's syntax (leading blanks, a plus sign), no minus, and it must fit 32 bits
    m = re.fullmatch(r"[ \t\n\v\f\r]*\+?([0-9]+)", raw)
    if m is None or int(m.group(1)) > 0xFFFFFFFF:
        raise _prop_error(f"Invalid value for attribute '{name}' in element '{node.tag}': '{raw}'. "
                          "Expected non-negative integer value")
    value = int(m.group(1))
    if nonzero and value == 0:
        raise _prop_error(f"Invalid value for attribute '{name}' in element '{node.tag}': Zero is not permitted")
    return value
