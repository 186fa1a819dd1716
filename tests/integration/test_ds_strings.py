"""DS (Decimal String) values are JSON strings in every DICOM JSON we write, as Orthanc >= 1.12.5
(ApiVersion 26; we report 29) writes them: each value is the file's text without its leading and
trailing spaces ("1.0" stays "1.0", "+5" and "1e3" are kept as written), an empty value is null,
a value that is not a number is kept. IS and binary numbers stay JSON numbers. Checked on QIDO-RS
(includefield), WADO-RS metadata (Full, MainDicomTags, Extrapolate), GET /instances/{id}/file
as application/dicom+json, and the DICOM XML made from that JSON."""

from __future__ import annotations

from xml.dom import minidom

import dicomgen
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

# tag -> (the file's bytes, the expected "Value")
DS_TEXTS = {
    0x00180050: (b" 1.0 ", ["1.0"]),  # SliceThickness: padding on both sides
    0x00180088: (b"+5", ["+5"]),  # SpacingBetweenSlices: leading "+"
    0x00180087: (b"1e3 ", ["1e3"]),  # MagneticFieldStrength: exponent
    0x00200032: (b"-0.50\\\\2 ", ["-0.50", None, "2"]),  # ImagePositionPatient: an empty value
    0x00181316: (b"abc ", ["abc"]),  # SAR: not a number, kept
}


def _instance(**spec: object) -> bytes:
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=11, rows=4, columns=4, **spec))  # type: ignore[arg-type]
    for tag, (raw, _) in DS_TEXTS.items():
        ds[tag] = RawDataElement(Tag(tag), "DS", len(raw), raw, 0, False, True)
    ds.InstanceNumber = "7"  # IS: a number
    return dicomgen.to_bytes(ds)


def _check(node: dict, keys=DS_TEXTS) -> None:
    for tag in keys:
        assert node[f"{tag:08X}"] == {"vr": "DS", "Value": DS_TEXTS[tag][1]}, f"{tag:08X}"


def test_file_metadata_qido_and_xml_write_ds_as_strings(client):
    iid = client.upload(_instance())["ID"]
    tags = client.get(f"/instances/{iid}/simplified-tags").json()
    study, series, sop = tags["StudyInstanceUID"], tags["SeriesInstanceUID"], tags["SOPInstanceUID"]

    body = client.get(f"/instances/{iid}/file", headers={"Accept": "application/dicom+json"}).json()
    _check(body)
    assert body["00200013"] == {"vr": "IS", "Value": [7]}
    assert body["00280010"] == {"vr": "US", "Value": [4]}

    for path in (
        f"/dicom-web/studies/{study}/metadata",
        f"/dicom-web/studies/{study}/series/{series}/metadata",
        f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata",
    ):
        (meta,) = client.get(path).json()
        _check(meta)
        assert meta["00200013"] == {"vr": "IS", "Value": [7]}

    includes = "&".join(f"includefield={t:08X}" for t in DS_TEXTS)
    (item,) = client.get(f"/dicom-web/instances?{includes}&includefield=00200013").json()
    _check(item)
    assert item["00200013"] == {"vr": "IS", "Value": [7]}

    # DICOM XML is made from that JSON: the same text, an empty <Value> for no value
    r = client.get(
        f"/dicom-web/studies/{study}/metadata", headers={"Accept": 'multipart/related; type="application/dicom+xml"'}
    )
    assert r.status == 200
    xml = r.body[r.body.index(b"<?xml") : r.body.rindex(b"</NativeDicomModel>") + len(b"</NativeDicomModel>")]
    attrs = {a.getAttribute("tag"): a for a in minidom.parseString(xml).getElementsByTagName("DicomAttribute")}
    values = [v.firstChild.data for v in attrs["00180050"].getElementsByTagName("Value")]
    assert values == ["1.0"]
    values = [v.firstChild.data if v.firstChild else None for v in attrs["00200032"].getElementsByTagName("Value")]
    assert values == ["-0.50", None, "2"]


@pytest.mark.parametrize("mode", ["MainDicomTags", "Extrapolate"])
def test_metadata_from_the_index_writes_ds_as_strings(make_server, mode):
    srv = make_server(
        {
            "DicomWeb": {
                "StudiesMetadata": mode,
                "StudiesMetadataExtrapolatedTags": ["SliceThickness", "0018,0088"],
            },
            "ExtraMainDicomTags": {"Instance": ["SAR"]},
        }
    )
    c = srv.client()
    iid = c.upload(_instance())["ID"]
    study = c.get(f"/instances/{iid}/simplified-tags").json()["StudyInstanceUID"]
    (meta,) = c.get(f"/dicom-web/studies/{study}/metadata").json()
    _check(meta, [0x00200032, 0x00181316] + ([0x00180050, 0x00180088] if mode == "Extrapolate" else []))
    assert meta["00200013"] == {"vr": "IS", "Value": [7]}
