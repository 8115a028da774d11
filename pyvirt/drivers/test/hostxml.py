"""A custom test host from a file in libvirt's format (``test:///PATH``).

The document is libvirt's test-driver ``<node>``: ``<domain>``, ``<network>``,
``<pool>`` (with ``<volume>`` children), ``<interface>`` and ``<device>``
elements, each inline or as ``file='...'`` relative to the document's
directory, and the node's ``<cpu>`` figures and ``<memory>``.  Domains may
carry libvirt's test namespace (``<test:runstate>``, ``<test:transient/>``,
``<test:hasmanagedsave/>``).  As in libvirt, an included file replaces its
element, so a ``<pool file=...>`` loses the ``<volume>`` children written
under it; every domain not said otherwise runs, with ids in document order.
"""

from __future__ import annotations

import copy
import os

from lxml import etree

from ...conf import storage_vol as volxml
from ...enums import DomainState, RunningReason
from ...errors import ErrorDomain, ErrorNumber, error
from ..domainlist import DomainObj
from . import tuning

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
_T = ErrorDomain.TEST


def _xml_error(detail: str) -> Exception:
    return error(ErrorNumber.XML_ERROR, _T, detail)


def _read(path: str, root: str) -> etree._Element:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        # libvirt hands the path to libxml2, which fails to load it with a warning only:
        # what is reported is libvirt's generic parse failure, from the test driver
        raise _xml_error(f"failed to parse xml document '{path}'") from None
    try:
        doc = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.NONE, f"{path}: {exc}") from None
    if doc.tag != root:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.XML,
                    f"expecting root element of '{root}', not '{etree.QName(doc).localname}'")
    return doc


def _element(node: etree._Element, base: str) -> etree._Element:
    """The element itself, or the root of the file it names (libvirt's testParseXMLDocFromFile)."""
    rel = node.get("file")
    if rel is None:
        return node
    # the file's root is named as the element, without its namespace (test:domainsnapshot files hold a
    # <domainsnapshot>)
    return _read(rel if os.path.isabs(rel) else os.path.join(base, rel), etree.QName(node).localname)


def _text(node: etree._Element, path: str) -> str | None:
    found = node.find(path)
    return found.text.strip() if found is not None and found.text else None


def _uint(node: etree._Element, path: str, what: str) -> int | None:
    raw = _text(node, path)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise _xml_error(f"invalid node {what} value") from None


def _node_info(root: etree._Element, defaults: tuple) -> tuple:
    model, memory, cpus, mhz, nodes, sockets, cores, threads = defaults
    nodes = _uint(root, "cpu/nodes", "cpu nodes") or nodes
    sockets = _uint(root, "cpu/sockets", "cpu sockets") or sockets
    cores = _uint(root, "cpu/cores", "cpu cores") or cores
    threads = _uint(root, "cpu/threads", "cpu threads") or threads
    cpus = nodes * sockets * cores * threads
    active = _uint(root, "cpu/active", "active cpu")
    if active is not None:
        cpus = min(active, cpus)
    mhz = _uint(root, "cpu/mhz", "cpu mhz") or mhz
    model = (_text(root, "cpu/model") or model)[:31]
    memory = _uint(root, "memory", "memory") or memory
    return model, memory, cpus, mhz, nodes, sockets, cores, threads


def _domain_state(node: etree._Element) -> tuple[int, bool, bool]:
    """(runstate, transient, hasmanagedsave) from the test namespace."""
    raw = node.findtext(f"{{{TEST_NS}}}runstate")
    state = int(DomainState.RUNNING)
    if raw is not None:
        try:
            state = int(raw.strip())
        except ValueError:
            raise _xml_error(f"invalid runstate '{raw.strip()}'") from None
        if state not in tuple(int(s) for s in DomainState):
            raise _xml_error(f"runstate '{state}' out of range'")
    transient = node.find(f"{{{TEST_NS}}}transient") is not None
    managed = node.find(f"{{{TEST_NS}}}hasmanagedsave") is not None
    if transient and state == DomainState.SHUTOFF:
        raise _xml_error("transient domain cannot have runstate 'shutoff'")
    if managed and state != DomainState.SHUTOFF:
        raise _xml_error("domain with managedsave data can only have runstate 'shutoff'")
    return state, transient, managed


def _load_snapshots(host: object, obj: DomainObj, nodes: list, parse_domain: object) -> None:
    """A domain's ``<test:domainsnapshot>`` elements: snapshots redefined with their metadata,
    ``<active>1</active>`` naming the current one, as libvirt's test driver reads them."""
    from ...conf import snapshot as snapconf
    from .snapshots import TestSnapshot, snapshot_tree
    tree = snapshot_tree(host, obj)
    for node in nodes:
        node.tag = "domainsnapshot"          # the element itself is the snapshot's definition
        node.tail = None
        etree.cleanup_namespaces(node)
        sdef = snapconf.parse(etree.tostring(node, encoding="unicode"), redefine=True)
        definition = parse_domain(sdef.domain_xml) if sdef.domain_xml else obj.definition.copy()
        if not sdef.domain_xml:          # libvirt then keeps (and writes) the domain's UUID alone
            sdef.domain_xml = f"<domain>\n  <uuid>{obj.uuid}</uuid>\n</domain>"
        state = DomainState[sdef.state.upper()] if sdef.state and sdef.state.upper() in DomainState.__members__ \
            else DomainState.SHUTOFF
        tree["snaps"][sdef.name] = TestSnapshot(sdef, definition, state, copy.deepcopy(tuning.config_tune(obj)))
        if sdef.current:
            if tree["current"] is not None:
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.TEST, "more than one snapshot claims to be active")
            tree["current"] = sdef.name
        sdef.current = False                 # the tree says which is current
    if any(s.sdef.parent is not None and s.sdef.parent not in tree["snaps"] for s in tree["snaps"].values()):
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.TEST,
                    f"Snapshots have inconsistent relations for domain {obj.name}")


def load(path: str, host: object, domain_types: tuple[str, ...], parse_domain: object) -> None:
    """Fill ``host`` (a TestHost made empty) from the node document at ``path``."""
    from .content import NODE_INFO
    root = _read(path, "node")
    base = os.path.dirname(os.path.abspath(path))
    host.node_info = _node_info(root, NODE_INFO)
    host.cells = ()     # a custom host has no NUMA cells (libvirt's <cells num='0'>)
    for node in root.findall("domain"):
        el = _element(node, base)
        state, transient, managed = _domain_state(el)
        snapshots = [_element(s, base) for s in el.findall(f"{{{TEST_NS}}}domainsnapshot")]
        for child in el.findall(f"{{{TEST_NS}}}*"):
            el.remove(child)
        text = etree.tostring(el, encoding="unicode")
        obj = DomainObj(parse_domain(text), persistent=not transient)
        host.domains.add(obj)
        tune = tuning.parse_tune(text, obj.definition)
        tuning.set_config(obj, tune)
        tuning.generate_iothread_params(obj, tune)
        if state != DomainState.SHUTOFF:
            host.start(obj, RunningReason.UNKNOWN, emit=False, paused=state == DomainState.PAUSED)
            obj.set_state(DomainState(state), 0)
        else:
            obj.has_managed_save = managed
        _load_snapshots(host, obj, snapshots, parse_domain)
    for node in root.findall("network"):
        host.networks.add(etree.tostring(_element(node, base), encoding="unicode"))
    for node in root.findall("pool"):
        el = _element(node, base)
        pool = host.pools.add(etree.tostring(el, encoding="unicode"))
        for vnode in el.findall("volume"):
            vol = _element(vnode, base)
            pool.add_volume(volxml.parse(etree.tostring(vol, encoding="unicode")))
    host.interfaces = [etree.tostring(_element(n, base), encoding="unicode") for n in root.findall("interface")]
    host.node_devices = [etree.tostring(_element(n, base), encoding="unicode") for n in root.findall("device")]
