"""conf.metadata: the <metadata> element as libvirt keeps and prints it (unit tests)."""

from __future__ import annotations

import pytest

from pyvirt import conf
from pyvirt.conf import metadata as md
from pyvirt.errors import ErrorNumber, libvirtError

BASE = """<domain type='qemu'>
  <name>m</name>
  <uuid>0f0f0f0f-1111-2222-3333-444444444444</uuid>
  <description>d</description>{}
  <memory unit='KiB'>1024</memory>
  <os><type>hvm</type></os>
</domain>"""


def test_parse_keeps_one_element_per_namespace_and_prints_them_after_description():
    d = conf.parse(BASE.format("""
  <metadata>
    <nons/>
    <a:first xmlns:a="urn:a" x='1'><a:inner>t</a:inner></a:first>
    <b:dup xmlns:b="urn:a"/>
    <c:other xmlns:c="urn:c"/>
  </metadata>"""))
    assert [md.element_text(e) for e in d.metadata] == [
        '<a:first xmlns:a="urn:a" x="1">\n  <a:inner>t</a:inner>\n</a:first>', '<c:other xmlns:c="urn:c"/>']
    text = d.format()
    assert ("  <description>d</description>\n  <metadata>\n"
            '    <a:first xmlns:a="urn:a" x="1">\n      <a:inner>t</a:inner>\n    </a:first>\n'
            '    <c:other xmlns:c="urn:c"/>\n  </metadata>\n  <memory') in text
    assert conf.parse(text).format() == text                       # stable round trip
    assert conf.parse(text, inactive=True).format(inactive=True) == text
    # libvirt keeps the element even when nothing in it is kept, and writes none where there was none
    for kept in ("<metadata><nons/></metadata>", "<metadata/>"):
        assert "\n  <metadata/>\n" in conf.parse(BASE.format("\n  " + kept)).format()
    assert "metadata" not in conf.parse(BASE.format("")).format()


def test_set_get_replace_remove():
    d = conf.parse(BASE.format(""))
    md.set_metadata(d, md.ELEMENT, "<cfg a='1'><v>1</v></cfg>", "app", "urn:app")
    # kept in its namespace (the domain XML shows it so), handed back outside it, as libvirtd 9.0 does
    assert md.element_text(d.metadata[0]) == '<app:cfg xmlns:app="urn:app" a="1">\n  <app:v>1</app:v>\n</app:cfg>'
    assert md.get_metadata(d, md.ELEMENT, "urn:app") == '<cfg a="1">\n  <v>1</v>\n</cfg>'
    md.set_metadata(d, md.ELEMENT, "<new/>", "k", "urn:app")          # replaces the element of urn:app
    assert md.get_metadata(d, md.ELEMENT, "urn:app") == '<new/>'
    assert len(d.metadata) == 1
    # elements in a namespace of their own keep it (libvirtd's quirk: not found under the uri)
    md.set_metadata(d, md.ELEMENT, "<a:foo xmlns:a='urn:other'><a:b/><c/></a:foo>", "y", "http://y/")
    assert md.element_text(d.metadata[-1]) == (
        '<a:foo xmlns:a="urn:other" xmlns:y="http://y/">\n  <a:b/>\n  <y:c/>\n</a:foo>')
    with pytest.raises(libvirtError):
        md.get_metadata(d, md.ELEMENT, "http://y/")
    # found under its own namespace, which is taken off; the other declaration stays
    assert md.get_metadata(d, md.ELEMENT, "urn:other") == '<foo xmlns:y="http://y/">\n  <b/>\n  <y:c/>\n</foo>'
    d.metadata.pop()
    md.set_metadata(d, md.ELEMENT, None, None, "urn:app")
    assert d.metadata == []
    md.set_metadata(d, md.ELEMENT, None, None, "urn:absent")          # removing nothing is no error
    assert "\n  <metadata/>\n" in d.format()          # emptied, still written (libvirt's)
    fresh = conf.parse(BASE.format(""))
    md.set_metadata(fresh, md.ELEMENT, None, None, "urn:absent")      # removing makes none
    assert "metadata" not in fresh.format()
    md.set_metadata(d, md.TITLE, "T", None, None)
    md.set_metadata(d, md.DESCRIPTION, "", None, None)
    assert (d.title, d.description) == ("T", None)
    assert md.get_metadata(d, md.TITLE, None) == "T"
    with pytest.raises(libvirtError) as err:
        md.get_metadata(d, md.DESCRIPTION, None)
    assert err.value.get_error_code() == ErrorNumber.NO_DOMAIN_METADATA


@pytest.mark.parametrize("kind, metadata, key, uri, message", [
    (md.TITLE, "a\nb", None, None, "metadata title can't contain newlines"),
    (md.TITLE, "a", "k", None, "key in virDomainSetMetadata must be NULL"),
    (md.ELEMENT, "<a/>", "k", None, "uri in virDomainSetMetadata must not be NULL"),
    (md.ELEMENT, "<a/>", None, "urn:x", "key in virDomainSetMetadata must not be NULL"),
    (3, "x", None, None, "unknown metadata type '3'"),
])
def test_argument_checks(kind, metadata, key, uri, message):
    with pytest.raises(libvirtError, match=message):
        md.check_arguments(kind, metadata, key, uri)


def test_bad_element_and_key():
    d = conf.parse(BASE.format(""))
    with pytest.raises(libvirtError) as err:
        md.set_metadata(d, md.ELEMENT, "<a>", "k", "urn:x")
    assert err.value.get_error_code() == ErrorNumber.XML_DETAIL
    with pytest.raises(libvirtError, match="is not a valid XML name"):
        md.set_metadata(d, md.ELEMENT, "<a/>", "no:colons", "urn:x")
    assert d.metadata == []
