"""A domain's ``<metadata>``: applications' own elements, one per XML namespace.

libvirt keeps the element as XML, not as a model: each child is an
application's element in its own namespace (children without a namespace,
and any but the first of a namespace, are dropped when parsed, as libvirt's
namespace sanitizer does).  It is printed by libxml2 (double-quoted
attributes), so :func:`element_text` gives what ``virDomainGetMetadata``
returns and :func:`to_node` what the domain XML shows.

:func:`set_metadata` / :func:`get_metadata` are the per-definition halves of
``virDomainSetMetadata`` / ``virDomainGetMetadata`` for the three types
(title, description, element), with libvirt's errors.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lxml import etree

from ..errors import ErrorDomain, ErrorNumber, bare_invalid_arg, error
from .xmlutil import Node, el

if TYPE_CHECKING:
    from .domain import DomainDef

# VIR_DOMAIN_METADATA_*
DESCRIPTION, TITLE, ELEMENT = 0, 1, 2

_PREFIX_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

_PARSER = etree.XMLParser(remove_blank_text=True, remove_comments=True, remove_pis=True,
                          resolve_entities=False, no_network=True, huge_tree=False)


def from_xml(node: etree._Element | None) -> list[etree._Element]:
    """The namespaced children of a parsed ``<metadata>``, first of each namespace only."""
    if node is None:
        return []
    kept: list[etree._Element] = []
    seen: set[str] = set()
    for item in node:
        if not isinstance(item.tag, str):
            continue
        uri = etree.QName(item).namespace
        if not uri or uri in seen:
            continue
        seen.add(uri)
        kept.append(_standalone(item))
    return kept


def _standalone(item: etree._Element) -> etree._Element:
    """A copy of ``item`` as its own document, blanks dropped, so it prints the same
    whatever document it came from."""
    return etree.fromstring(etree.tostring(item), _PARSER)


def element_text(item: etree._Element) -> str:
    """The element as libvirt's virXMLNodeToString prints it (libxml2, indented)."""
    return etree.tostring(item, encoding="unicode", pretty_print=True).rstrip("\n")


def to_node(items: list[etree._Element], kept: bool = False) -> Node | None:
    """``<metadata>`` with ``items``; an empty one when ``kept`` (libvirt keeps the element it
    parsed or made, whatever is removed from it later)."""
    if not items and not kept:
        return None
    return el("metadata", (), [Node(tag="", raw=element_text(item)) for item in items])


def find(items: list[etree._Element], uri: str) -> etree._Element | None:
    for item in items:
        if etree.QName(item).namespace == uri:
            return item
    return None


def _outside_namespace(item: etree._Element, uri: str) -> etree._Element:
    """A copy of ``item`` with namespace ``uri`` taken off its elements and attributes
    and its declaration dropped, as virDomainGetMetadata hands the element back
    (``<cfg a="1"><v/></cfg>``, not ``<app:cfg xmlns:app=...>``); other namespaces stay."""
    def local(name: str) -> str:
        q = etree.QName(name)
        return q.localname if q.namespace == uri else name

    def copy(node: etree._Element, parent: etree._Element | None) -> etree._Element:
        attrib = {local(k): v for k, v in node.attrib.items()}
        if parent is None:
            nsmap = {p: ns for p, ns in node.nsmap.items() if ns != uri}
            new = etree.Element(local(node.tag), attrib, nsmap=nsmap)
        else:
            new = etree.SubElement(parent, local(node.tag), attrib)
        new.text, new.tail = node.text, node.tail if parent is not None else None
        for child in node:
            if isinstance(child.tag, str):
                copy(child, new)
        return new
    return copy(item, None)


def no_metadata() -> Exception:
    return error(ErrorNumber.NO_DOMAIN_METADATA, ErrorDomain.DOMAIN,
                 "Requested metadata element is not present")


def get_metadata(d: "DomainDef", kind: int, uri: str | None) -> str:
    """What virDomainGetMetadata returns for one definition."""
    if kind == TITLE:
        value = d.title
    elif kind == DESCRIPTION:
        value = d.description
    elif kind == ELEMENT:
        if uri is None:
            raise bare_invalid_arg("uri in virDomainGetMetadata must not be NULL", ErrorDomain.DOMAIN)
        item = find(d.metadata, uri)
        value = element_text(_outside_namespace(item, uri)) if item is not None else None
    else:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, f"unknown metadata type '{kind}'")
    if value is None:
        raise no_metadata()
    return value


def check_arguments(kind: int, metadata: str | None, key: str | None, uri: str | None) -> None:
    """The checks virDomainSetMetadata makes before calling a driver (a stock client
    makes them itself; pyvirt's own clients reach the daemon with anything)."""
    api = "virDomainSetMetadata"
    if kind in (TITLE, DESCRIPTION):
        if kind == TITLE and metadata and "\n" in metadata:
            raise bare_invalid_arg("metadata title can't contain newlines", ErrorDomain.DOMAIN)
        for name, value in (("uri", uri), ("key", key)):
            if value is not None:
                raise bare_invalid_arg(f"{name} in {api} must be NULL", ErrorDomain.DOMAIN)
    elif kind == ELEMENT:
        if uri is None:
            raise bare_invalid_arg(f"uri in {api} must not be NULL", ErrorDomain.DOMAIN)
        if metadata and key is None:
            raise bare_invalid_arg(f"key in {api} must not be NULL", ErrorDomain.DOMAIN)
    else:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, f"unknown metadata type '{kind}'")


def parse_element(metadata: str, key: str, uri: str) -> etree._Element:
    """The application's element with namespace ``uri`` declared on it under prefix
    ``key``, as libvirt does: every element of it that has no namespace (the root
    included) moves into ``uri``; elements already in a namespace keep theirs (an
    element whose root is in another namespace is then not found under ``uri``,
    as with libvirtd)."""
    try:
        root = etree.fromstring(metadata.encode(), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise error(ErrorNumber.XML_DETAIL, ErrorDomain.DOMAIN, f"(metadata_xml):{exc.lineno}: {exc.msg}") from exc
    if not _PREFIX_RE.fullmatch(key):     # a namespace prefix: an XML name without ':'
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                    f"metadata namespace key '{key}' is not a valid XML name")
    declared = {prefix: ns for prefix, ns in root.nsmap.items() if prefix != key}
    tag = root.tag if etree.QName(root).namespace else f"{{{uri}}}{root.tag}"
    moved = etree.Element(tag, nsmap={**declared, key: uri})      # the declaration on the root
    moved.text = root.text
    for name, value in root.attrib.items():
        moved.set(name, value)
    for item in root:
        moved.append(item)
    for item in moved.iter():
        if isinstance(item.tag, str) and etree.QName(item).namespace is None:
            item.tag = f"{{{uri}}}{item.tag}"
    return _standalone(moved)


def set_metadata(d: "DomainDef", kind: int, metadata: str | None, key: str | None, uri: str | None) -> None:
    """virDomainSetMetadata on one definition: empty or None removes."""
    if kind == TITLE:
        d.title = metadata or None
    elif kind == DESCRIPTION:
        d.description = metadata or None
    elif kind == ELEMENT:
        assert uri is not None
        new = parse_element(metadata, key or "", uri) if metadata else None
        kept = [item for item in d.metadata if etree.QName(item).namespace != uri]
        d.metadata = kept + ([new] if new is not None else [])
        d.metadata_kept = d.metadata_kept or new is not None
