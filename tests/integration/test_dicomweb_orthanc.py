"""DICOMweb under /dicom-web answers as Orthanc's DICOMweb plugin (1.19) does: STOW-RS statuses
and sequences, SpecificCharacterSet, metadata and QIDO-RS details, checked with real requests."""

from __future__ import annotations

import io
import uuid

import dicomgen
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian


def _stow(client, path: str, *parts: bytes):
    boundary = uuid.uuid4().hex
    body = b""
    for p in parts:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
    body += f"--{boundary}--".encode()
    headers = {"Content-Type": f"multipart/related; type=application/dicom; boundary={boundary}"}
    return client.post(path, body, headers={**headers, "Accept": "application/json"})


def _file(**tags: object) -> bytes:
    ds = Dataset()
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.3"
    ds.file_meta.MediaStorageSOPInstanceUID = str(tags.get("SOPInstanceUID", "1.2.3"))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_stow_answers_as_orthanc(client):
    data = dicomgen.make(patient=1, rows=8, columns=8)
    ds = pydicom.dcmread(io.BytesIO(data))
    r = _stow(client, "/dicom-web/studies", data)
    a = r.json()
    assert r.status == 200
    # no failure: no FailedSOPSequence (plugin 1.19+; an empty one before)
    assert list(a) == ["00080005", "00081190", "00081199"]
    assert a["00080005"] == {"vr": "CS", "Value": ["ISO_IR 192"]}
    assert a["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{ds.StudyInstanceUID}")
    # a duplicate is stored again (Orthanc: AlreadyStored is a success)
    assert _stow(client, "/dicom-web/studies", data).status == 200
    # another study than the URL's: 409, processing failure 0x0110
    r = _stow(client, "/dicom-web/studies/1.2.3", data)
    assert r.status == 409
    failed = r.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0x0110] and failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert r.json()["00081199"] == {"vr": "SQ"} and "00081190" not in r.json()
    # not DICOM: 400, nothing listed
    r = _stow(client, "/dicom-web/studies", b"not dicom at all")
    assert r.status == 400 and "00081198" not in r.json()
    # no SOP class UID: 400 and nothing stored (while POST /instances would take it)
    no_class = _file(SOPInstanceUID="1.2.3.4", StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.5", PatientID="X")
    r = _stow(client, "/dicom-web/studies", no_class)
    assert r.status == 400 and "00081198" not in r.json()
    assert len(client.get("/instances").json()) == 1
    # only the SOP UIDs: 400, listed with 0xC000 (cannot understand)
    only_sop = _file(SOPClassUID="1.2.840.10008.5.1.4.1.1.4", SOPInstanceUID="1.2.3.9")
    r = _stow(client, "/dicom-web/studies", only_sop)
    assert r.status == 400
    failed = r.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0xC000] and failed["00081150"]["Value"] == ["1.2.840.10008.5.1.4.1.1.4"]
    # parts with a transfer-syntax parameter (as dcm4chee sends them) are taken
    boundary = uuid.uuid4().hex
    part_type = "application/dicom;transfer-syntax=1.2.840.10008.1.2.1"
    body = f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + dicomgen.make(patient=3) + b"\r\n"
    body += f"--{boundary}--".encode()
    headers = {"Content-Type": f"multipart/related; type=application/dicom; boundary={boundary}"}
    r = client.post("/dicom-web/studies", body, headers=headers)
    assert r.status == 200 and "00081198" not in r.json() and len(r.json()["00081199"]["Value"]) == 1


def test_metadata_bulk_uris_as_orthanc(client):
    from pydicom.sequence import Sequence

    ds = dicomgen.make_dataset(dicomgen.Spec(patient=2, rows=4, columns=4))
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.add_new(0x00281201, "OW", b"\x01\x02" * 3)
    ds.ReferencedImageSequence = Sequence([item])
    ds.ReferencedStudySequence = Sequence([])
    ds.add_new(0x00084567, "UN", b"B\x00")
    ds.SliceThickness = "2.0"
    client.upload(dicomgen.to_bytes(ds))
    path = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    # the Host header as it is: no port added when it has none
    meta = client.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata", headers={"Host": "my-domain"}).json()[0]
    base = f"http://my-domain{path}/bulk/"
    assert meta["7FE00010"]["BulkDataURI"] == base + "7fe00010"
    assert meta["00084567"] == {"vr": "UN", "BulkDataURI": base + "00084567"}  # even 2 bytes go by URI
    nested = meta["00081140"]["Value"][0]["00281201"]
    assert nested == {"vr": "OW", "BulkDataURI": base + "00081140/1/00281201"}
    assert meta["00081110"] == {"vr": "SQ"}  # empty sequence: no Value
    assert meta["00180050"]["Value"] == ["2.0"]  # DS: the file's text, a string (Orthanc >= 1.12.5)
    # the nested bulk URI answers the value
    r = client.get(path + "/bulk/00081140/1/00281201")
    assert r.status == 200 and b"\x01\x02\x01\x02\x01\x02" in r.body
    assert client.get(path + "/bulk/0008,4567").status == 200
    assert client.get(path + "/bulk/00081140/2/00281201").status == 404
    assert client.get(path + "/bulk/00081140/1").status == 400


def test_metadata_empty_components_and_character_sets(client):
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=3, rows=4, columns=4))
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 149"]
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.WindowCenter = ["40", "", "30"]
    client.upload(dicomgen.to_bytes(ds))
    meta = client.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata").json()[0]
    assert meta["00080005"]["Value"] == ["ISO 2022 IR 149"]  # the character sets only
    assert meta["00080008"]["Value"] == ["ORIGINAL", None, "AXIAL"]  # an empty component is null
    assert meta["00281050"]["Value"] == ["40", None, "30"]


def test_qido_as_orthanc(client):
    data = dicomgen.make(
        patient=4, patient_name="Wang^XiaoDong=王^小東", rows=4, columns=4, extra={"SpecificCharacterSet": "ISO_IR 192"}
    )
    ds = pydicom.dcmread(io.BytesIO(data))
    client.upload(data)
    (study,) = client.get("/dicom-web/studies").json()
    assert study["00080005"] == {"vr": "CS", "Value": ["ISO_IR 192"]}  # answers are in UTF-8
    assert study["00100010"]["Value"] == [{"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"}]
    assert "0020000E" not in study
    # series and instances carry their study's attributes unless the query names the study
    (series,) = client.get("/dicom-web/series").json()
    assert "00100010" in series and series["00080060"]["Value"] == ["CT"]
    (series,) = client.get(f"/dicom-web/series?0020000D={ds.StudyInstanceUID}").json()
    assert "00100010" not in series and series["0020000D"]["Value"] == [ds.StudyInstanceUID]
    (series,) = client.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/series").json()
    assert "00100010" in series  # a UID in the path does not count
    (inst,) = client.get(f"/dicom-web/instances?0020000E={ds.SeriesInstanceUID}").json()
    assert "00080060" not in inst and "00100010" in inst and inst["00080018"]["Value"] == [ds.SOPInstanceUID]
    (inst,) = client.get(f"/dicom-web/instances?0020000D={ds.StudyInstanceUID}&includefield=00100010").json()
    assert "00100010" in inst and inst["00080060"]["Value"] == ["CT"]


def test_metadata_accept_and_xml(client):
    from xml.dom import minidom

    data = dicomgen.make(patient=5, rows=4, columns=4)
    ds = pydicom.dcmread(io.BytesIO(data))
    client.upload(data)
    path = f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata"
    for accept in ("application/json, application/dicom+json", "toto, application/dicom+json", "application/json, x"):
        r = client.get(path, headers={"Accept": accept})
        assert r.status == 200 and len(r.json()) == 1
    for accept in ("toto", "toto, tata", "multipart/related", "multipart/related; type=application/nope"):
        assert client.get(path, headers={"Accept": accept}).status == 400
    r = client.get(path, headers={"Accept": 'multipart/related; type="application/dicom+xml"'})
    assert r.status == 200 and 'type="application/dicom+xml"' in r.headers["content-type"]
    xml = r.body[r.body.index(b"<?xml") : r.body.index(b"</NativeDicomModel>") + len(b"</NativeDicomModel>")]
    doc = minidom.parseString(xml)
    (name,) = [a for a in doc.getElementsByTagName("DicomAttribute") if a.getAttribute("tag") == "00100010"]
    assert name.getElementsByTagName("FamilyName")[0].firstChild.data == "Patient"


def test_qido_private_tag_with_the_files_vr(client):
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=6, rows=4, columns=4))
    ds.add_new(0x00090010, "LO", "Lunit")
    ds.add_new(0x00091001, "DS", "98.41")
    client.upload(dicomgen.to_bytes(ds))
    (study,) = client.get("/dicom-web/studies?includefield=00091001").json()
    assert study["00091001"] == {"vr": "DS", "Value": ["98.41"]}  # DS as a string (Orthanc >= 1.12.5)
    (study,) = client.get("/dicom-web/studies?00090010=Lunit&includefield=00091001").json()
    assert study["00090010"]["Value"] == ["Lunit"] and study["00091001"]["vr"] == "DS"
    assert client.get("/dicom-web/studies?00090010=Lunit2").json() == []
    assert "00091001" not in client.get("/dicom-web/studies").json()[0]


def test_wado_404_names_the_missing_level(client):
    r = client.get("/dicom-web/studies/1.2.3/series/4.5/metadata")
    assert r.status == 404 and r.json()["OrthancStatus"] == 7
    assert r.json()["Details"] == "Accessing an inexistent series with WADO-RS: 4.5"
    r = client.get("/dicom-web/studies/1.2.3/series/4.5/instances/6.7/frames/1")
    assert r.json()["Details"] == "Accessing an inexistent instance with WADO-RS: 6.7"
    assert (
        client.get("/dicom-web/studies/1.2.3").json()["Details"] == "Accessing an inexistent study with WADO-RS: 1.2.3"
    )


def test_study_metadata_lists_elements_after_the_pixel_data(client):
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=7, rows=4, columns=4))
    ds.add_new(0x7FE10010, "LO", "GEMS_Ultrasound_MovieGroup_001")
    ds.add_new(0x7FE11048, "FD", 1.0)
    client.upload(dicomgen.to_bytes(ds))
    (study,) = client.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata").json()
    (instance,) = client.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata").json()
    assert study == instance
    assert study["7FE10010"]["Value"] == ["GEMS_Ultrasound_MovieGroup_001"]
    assert study["7FE11048"] == {"vr": "FD", "Value": [1]}
    assert "BulkDataURI" in study["7FE00010"]
