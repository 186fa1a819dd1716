"""The HTTP layer's pure parts: XML rendering of JSON answers, form-data parsing, chunk store."""

from __future__ import annotations

import pytest

from orthanc_py.errors import OrthancError
from orthanc_py.web.forms import ChunkStore, form_boundary, form_parts
from orthanc_py.web.xml import json_to_xml, wants_xml


def test_json_to_xml_as_orthanc():
    xml = json_to_xml({"b": [1, "x<y", None], "a": {"t": True, "f": False, "e": []}, "z": {}})
    assert xml.decode() == (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<root>\n"
        "  <a>\n"
        "    <e />\n"
        "    <f>false</f>\n"
        "    <t>true</t>\n"
        "  </a>\n"
        "  <b>\n"
        "    <item>1</item>\n"
        "    <item>x&lt;y</item>\n"
        "    <item>null</item>\n"
        "  </b>\n"
        "  <z />\n"
        "</root>\n"
    )
    assert json_to_xml([]).decode().endswith("<root />\n")


@pytest.mark.parametrize(
    ("accept", "xml"),
    [
        ("application/xml", True),
        ("application/xml;q=0.9", True),
        ("application/json;application/xml", True),
        ("application/xml;application/json", False),
        ("text/html, application/xml", False),
        ("*/*", False),
    ],
)
def test_wants_xml(accept, xml):
    assert wants_xml(accept) is xml


def test_form_boundary_is_read_leniently():
    assert form_boundary("multipart/form-data   ;    boundary  =  abc  ") == "abc"
    assert form_boundary('Multipart/Form-Data; boundary="q"') == "q"
    assert form_boundary("multipart/related; boundary=abc") is None
    assert form_boundary("application/dicom") is None
    assert form_boundary("multipart/form-data") is None


def test_form_parts():
    body = (
        b"--B\r\nContent-Disposition : form-data; name=x\r\nContent-Type: application/dicom\r\n\r\nAB\r\nC\r\n"
        b"--B\r\nContent-Disposition: form-data\r\n\r\n\r\n--B--"
    )
    parts = form_parts(body, "B")
    assert [p[1] for p in parts] == [b"AB\r\nC", b""]
    assert parts[0][0]["content-type"] == "application/dicom"
    assert form_parts(b"--B\r\nX: y\r\n\r\nno end", "B") == []  # an unfinished part is not handed over
    assert [p[1] for p in form_parts(b"--B\r\n\r\ndata\r\n--B", "B")] == [b"data"]


def test_chunk_store_joins_and_forgets():
    store = ChunkStore(places=2)
    assert store.add("a", 4, b"ab") is None
    assert store.add("a", 4, b"cd") == b"abcd"
    assert store.add("a", 2, b"abc") is None  # more than announced: dropped, as Orthanc does
    assert store.files == {}
    store.add("x", 9, b"1")
    store.add("y", 9, b"1")
    store.add("z", 9, b"1")  # pushes "x" out
    with pytest.raises(OrthancError):
        store.add("x", 9, b"2")
