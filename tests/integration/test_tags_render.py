"""The tag routes answer what `orthancjson.orthanc_tags` renders from pydicom's reading of the
stored file, whether the server rendered it from the bytes (model.fasttags) or through pydicom
(a file fasttags leaves to pydicom: big endian); misses answer as before."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import dicomgen
import pydicom
import pydicom.data
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from orthanc_py.model import fasttags, orthancjson
from orthanc_py.model.dcmtkvalues import TagsOptions


def _expected(data: bytes, fmt: str, options: TagsOptions | None = None, with_pixels: bool = True) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not with_pixels, force=True)
        return orthancjson.orthanc_tags(ds, fmt, options or TagsOptions())


def _with_sequences(instance: int) -> bytes:
    ds = dicomgen.make_dataset(
        dicomgen.Spec(rows=4, columns=4, instance=instance, patient_name="J\u00fcrgen^Stra\u00dfe")
    )
    code = Dataset()
    code.CodeValue = "121"
    code.CodeMeaning = "m" * 300  # TooLong unless ?ignore-length
    ds.ReferencedImageSequence = Sequence([Dataset(), Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = f"1.2.3.{instance}"
    ds.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence = Sequence([code])
    ds.add(DataElement(0x00090010, "LO", "GEMS_IDEN_01"))
    ds.add(DataElement(0x00091001, "LO", "fidelity"))
    ds.add(DataElement(0x8E050010, "LO", "XEOS_Attributes"))  # after the pixel data: ?whole
    ds.add(DataElement(0x8E051000, "LO", "after pixels"))
    ds.SmallestImagePixelValue = 0
    return dicomgen.to_bytes(ds)


def _implicit_signed() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_with_sequences(7)))
    ds.PixelRepresentation = 1
    ds.SmallestImagePixelValue = 0xFFFE  # -2 when read as SS
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _big_endian() -> bytes:
    return Path(pydicom.data.get_testdata_file("MR_small_bigendian.dcm")).read_bytes()  # type: ignore[arg-type]


def test_tag_routes_render_as_pydicom_reads_the_file(client: Any) -> None:
    files = {"explicit": _with_sequences(1), "implicit": _implicit_signed(), "big-endian": _big_endian()}
    assert fasttags.tags_fast(files["explicit"], "full", TagsOptions()) is not None
    assert fasttags.tags_fast(files["implicit"], "full", TagsOptions()) is not None
    assert fasttags.tags_fast(files["big-endian"], "full", TagsOptions()) is None  # the pydicom path
    for name, data in files.items():
        iid = client.upload(data)["ID"]
        stored = client.get(f"/instances/{iid}/file").body
        for path, fmt, options in [
            ("tags", "full", None),
            ("tags?simplify", "simplify", None),
            ("tags?short", "short", None),
            ("simplified-tags", "simplify", None),
            ("tags?whole", "full", TagsOptions(whole=True)),
            ("tags?short&ignore-length=CodeMeaning", "short", TagsOptions(ignore_length=frozenset({0x00080104}))),
        ]:
            r = client.get(f"/instances/{iid}/{path}")
            assert r.status == 200, (name, path)
            assert r.headers["content-type"] == "application/json; charset=utf-8"
            assert r.json() == _expected(stored, fmt, options), (name, path)
    tags = client.get(f"/instances/{client.upload(files['implicit'])['ID']}/tags").json()
    assert tags["0028,0106"] == {"Name": "SmallestImagePixelValue", "Type": "String", "Value": "-2"}
    whole = client.get(f"/instances/{client.upload(files['explicit'])['ID']}/tags?short&whole").json()
    assert whole["8e05,1000"] == "after pixels"


def test_shared_and_instances_tags_of_a_series(client: Any) -> None:
    files = [_with_sequences(i) for i in range(3)]
    answers = [client.upload(f) for f in files]
    series = answers[0]["ParentSeries"]
    stored = {a["ID"]: client.get(f"/instances/{a['ID']}/file").body for a in answers}
    every = client.get(f"/series/{series}/instances-tags?short").json()
    assert every == {iid: _expected(data, "short") for iid, data in stored.items()}
    shared = client.get(f"/series/{series}/shared-tags?simplify").json()
    full = [_expected(data, "full", with_pixels=False) for data in stored.values()]
    common = {k: v for k, v in full[0].items() if v["Type"] == "String" and all(f.get(k) == v for f in full)}
    assert shared == orthancjson.simplify_full(common, "simplify")
    assert "SOPInstanceUID" not in shared and shared["PatientName"] == "J\u00fcrgen^Stra\u00dfe"
    module = client.get(f"/instances/{answers[0]['ID']}/module-patient?simplify").json()
    assert module["PatientName"] == "J\u00fcrgen^Stra\u00dfe"


def test_tags_of_an_unknown_instance_is_404(client: Any) -> None:
    for path in ("tags", "tags?simplify", "simplified-tags", "tags?ignore-length=NoSuchTag"):
        r = client.get(f"/instances/nope/{path}")
        assert r.status == 404, path
        body = json.loads(r.body)
        assert body["HttpStatus"] == 404 and body["OrthancStatus"] == 17, body  # UnknownResource
    iid = client.upload(_with_sequences(9))["ID"]
    assert client.get(f"/instances/{iid}/tags?ignore-length=NoSuchTag").status == 500


def test_a_file_with_many_elements_is_rendered_in_a_worker_the_same(client: Any) -> None:
    """More elements than the event loop renders itself (TAGS_ON_LOOP_ELEMENTS): same answer."""
    ds = dicomgen.make_dataset(dicomgen.Spec(rows=4, columns=4))
    items = []
    for i in range(120):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = f"1.2.3.{i}"
        items.append(item)
    ds.ReferencedImageSequence = Sequence(items)
    data = dicomgen.to_bytes(ds)
    assert fasttags.tags_fast(data, "full", TagsOptions(), max_elements=150) is None
    assert fasttags.tags_fast(data, "full", TagsOptions()) is not None
    iid = client.upload(data)["ID"]
    for path, fmt in (("tags", "full"), ("simplified-tags", "simplify")):
        assert client.get(f"/instances/{iid}/{path}").json() == _expected(data, fmt)
