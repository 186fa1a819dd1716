"""DICOM JSON rendered as the PS3.19 Native DICOM Model (application/dicom+xml), the form a
WADO-RS metadata request with `multipart/related; type="application/dicom+xml"` receives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xml.etree import ElementTree as ET


NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_PN_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


def _attribute(parent: ET.Element, key: str, node: dict[str, Any]) -> None:
    from xml.etree import ElementTree as ET

    from pydicom.datadict import keyword_for_tag

    tag = int(key, 16)
    attrs = {"tag": key, "vr": node.get("vr", "UN")}
    keyword = keyword_for_tag(tag) if not (tag >> 16) & 1 else ""
    if keyword:
        attrs["keyword"] = keyword
    elem = ET.SubElement(parent, "DicomAttribute", attrs)
    if "BulkDataURI" in node:
        ET.SubElement(elem, "BulkData", {"uri": node["BulkDataURI"]})
    elif "InlineBinary" in node:
        ET.SubElement(elem, "InlineBinary").text = node["InlineBinary"]
    for number, value in enumerate(node.get("Value", []), 1):
        if attrs["vr"] == "SQ":
            _dataset(ET.SubElement(elem, "Item", {"number": str(number)}), value)
        elif attrs["vr"] == "PN":
            person = ET.SubElement(elem, "PersonName", {"number": str(number)})
            for group, text in (value or {}).items():
                holder = ET.SubElement(person, group)
                for part, component in zip(_PN_PARTS, str(text).split("^"), strict=False):
                    if component:
                        ET.SubElement(holder, part).text = component
        else:  # a null value (an empty component) is an empty <Value>, as Orthanc's FormatXml writes it
            ET.SubElement(elem, "Value", {"number": str(number)}).text = None if value is None else str(value)


def _dataset(parent: ET.Element, dataset: dict[str, Any]) -> None:
    for key in sorted(dataset):
        _attribute(parent, key, dataset[key])


def to_xml(dataset: dict[str, Any]) -> bytes:
    """One dataset in DICOM JSON as a NativeDicomModel document (UTF-8)."""
    from xml.etree import ElementTree as ET

    root = ET.Element("NativeDicomModel", {"xmlns": NAMESPACE})
    _dataset(root, dataset)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8", xml_declaration=False)
