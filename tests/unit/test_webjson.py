"""The fast DICOM JSON rendering equals pydicom's on pydicom's test files and ours, but for DS
values: strings, the file's text of each value without its padding (Orthanc >= 1.12.5), which
must be the number pydicom reads."""

from __future__ import annotations

import io
import os

import dicomgen
import pydicom
import pydicom.data
import pytest

from orthanc_py.model.webjson import to_json_dict

FILES = sorted(
    os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", f)
    for f in os.listdir(os.path.join(os.path.dirname(pydicom.data.__file__), "test_files"))
    if f.endswith(".dcm")
)


def _handler(elem, path=""):
    return f"bulk/{elem.tag:08X}"


def _as_orthanc(node):
    """pydicom's rendering with Orthanc's differences: an empty sequence has no "Value", empty
    items are left out, empty components are null, SpecificCharacterSet lists no empty value."""
    if isinstance(node, dict):
        out = {k: _as_orthanc(v) for k, v in node.items()}
        if "00080005" in out and "Value" in out["00080005"]:
            out["00080005"]["Value"] = [v for v in out["00080005"]["Value"] if v]
        if out.get("vr") == "SQ" and "Value" in out:
            out["Value"] = [i for i in out["Value"] if i]
            if not out["Value"]:
                del out["Value"]
        return out
    if isinstance(node, list):
        return [None if v == "" else _as_orthanc(v) for v in node]  # an empty component is null
    return node


def _file_text(ds, tag):
    """The text of a DS element as the file has it (pydicom converts it to numbers)."""
    raw = ds.get_item(tag).value
    if isinstance(raw, bytes):
        return raw.decode("latin-1")
    return "\\".join(
        "" if v is None else str(v) for v in (raw if isinstance(raw, list | pydicom.multival.MultiValue) else [raw])
    )


def _with_ds_strings(node, ds):
    """pydicom's rendering `node` of `ds` with each DS value the text of the file: components
    without leading/trailing spaces, an empty one null; each one is pydicom's number."""
    for elem in ds:
        key = f"{elem.tag:08X}"
        if key not in node:
            continue
        if elem.VR == "SQ" and "Value" in node[key]:
            for item_node, item in zip(node[key]["Value"], elem.value, strict=True):
                _with_ds_strings(item_node, item)
        elif elem.VR == "DS":
            text = _file_text(ds, elem.tag).split("\x00")[0].rstrip(" ")
            if not text:
                node[key] = {"vr": "DS"}
                continue
            strings = [p.strip() or None for p in text.split("\\")]
            numbers = node[key].get("Value", [])
            assert [float(s) if s is not None else None for s in strings] == [
                float(n) if n not in (None, "") else None for n in numbers
            ]
            node[key] = {"vr": "DS", "Value": strings}
    return node


def _reference(data_or_path):
    ds = pydicom.dcmread(data_or_path, force=True)
    return _as_orthanc(_with_ds_strings(ds.to_json_dict(1024, _handler), ds))


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_equal_to_pydicom_on_its_test_files(path):
    try:
        reference = _reference(path)
    except Exception as exc:  # a file pydicom cannot render: neither do we
        with pytest.raises(type(exc)):
            to_json_dict(pydicom.dcmread(path, force=True), _handler, 1024)
        return
    ours = to_json_dict(pydicom.dcmread(path, force=True), _handler, 1024)
    assert ours == reference


def test_equal_to_pydicom_on_generated_files_and_edge_values():
    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=3, rows=8, columns=8)))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jörg"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]  # empty component: pydicom's way
    ds.SliceThickness = " 2.50"  # leading space: pydicom's way
    ds.ImagePositionPatient = [-1.5, 2, 1e3]
    ds.InstanceNumber = "007"
    ds.WindowCenter = ["40", "400"]
    ds.PixelSpacing = [0.5, 0.5]
    ds.add_new(0x00091010, "LO", "private")
    ds.add_new(0x00189305, "FD", 1.25)
    ds.add_new(0x00280106, "US", 0)
    ds.add_new(0x00281201, "OW", b"\x00\x01" * 600)
    ds.add_new(0x00281202, "OW", b"\x00\x01" * 10)
    for implicit in (False, True):
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"
        out = io.BytesIO()
        ds.save_as(out, implicit_vr=implicit, little_endian=True)
        data = out.getvalue()
        reference = _reference(io.BytesIO(data))
        assert reference["00180050"] == {"vr": "DS", "Value": ["2.50"]}  # the file's text
        assert to_json_dict(pydicom.dcmread(io.BytesIO(data), force=True), _handler, 1024) == reference
