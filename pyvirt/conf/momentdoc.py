"""Reading a snapshot's or a checkpoint's document as libvirt's virXMLParse does.

libvirt parses ``<domainsnapshot>`` and ``<domaincheckpoint>`` alike: a syntax
error is libxml2's message as libvirt's error callback words it (the document
named as libvirt names it, then the line and a caret under the column), from
the document's own error domain; a wrong root element is VIR_FROM_XML's; and a
document asked to be validated is checked against libvirt's schema (when
libvirt's schemas are installed), failing with libvirt's schema message.
"""

from __future__ import annotations

import os
from lxml import etree

from ..errors import ErrorDomain, ErrorNumber, error
from .xmlutil import parse_document

SCHEMAS = "/usr/share/libvirt/schemas"     # the libvirt-daemon package's data
_schemas: dict[str, etree.RelaxNG | None] = {}


def schema_path(root: str) -> str:
    return f"{SCHEMAS}/{root}.rng"


def _validator(path: str) -> etree.RelaxNG | None:
    if path not in _schemas:     # compiled once: each schema includes the whole domain schema
        _schemas[path] = etree.RelaxNG(etree.parse(path)) if os.path.exists(path) else None
    return _schemas[path]


def validate(doc: etree._Element, root: str) -> None:
    path = schema_path(root)
    schema = _validator(path)
    if schema is None or schema.validate(doc):
        return
    detail = "".join(f"{e.message}\n" for e in schema.error_log)
    raise error(ErrorNumber.XML_INVALID_SCHEMA, ErrorDomain.XML, f"Unable to validate doc against {path}\n{detail}")


def document(xml: str, root: str, source: str, domain: ErrorDomain, *, check_schema: bool) -> etree._Element:
    """``xml``'s root element ``<root>``; ``source`` names the document in syntax errors."""
    doc = parse_document(xml, root, f"({source})", domain)
    if check_schema:
        validate(doc, root)
    return doc
