"""Tag names and values as Orthanc reports them: DCMTK's dictionary, the `Dictionary` and
`DefaultPrivateCreator` keys, UN elements, `?whole`, `?ignore-length`, `DefaultEncoding`."""

from __future__ import annotations

import dicomgen
import pydicom.config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

CONFIG = {
    "DefaultPrivateCreator": "Lunit",
    "Dictionary": {
        "00e1,10c2": ["UI", "PET-CT Multi Modality Name", 1, 1, "ELSCINT1"],
        "0011,1001": ["DS", "Abnormality score", 1, 1],  # creator: DefaultPrivateCreator
        "0407,10a1": ["SQ", "OCTCubeSequence", 1, 1, "99CZM_CapeCod_OctGeneral"],
    },
}


def _instance(extra: list[DataElement], instance: int = 0, charset: bool = True) -> bytes:
    ds: Dataset = dicomgen.make_dataset(dicomgen.Spec(rows=4, columns=4, instance=instance))
    if not charset and "SpecificCharacterSet" in ds:
        del ds.SpecificCharacterSet
    for elem in extra:
        ds.add(elem)
    keep = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False  # write UN elements as UN
    try:
        return dicomgen.to_bytes(ds)
    finally:
        pydicom.config.replace_un_with_known_vr = keep


def test_private_and_user_dictionary_names(make_server):
    client = make_server(CONFIG).client()
    data = _instance(
        [
            DataElement(0x00090010, "LO", "GEMS_IDEN_01"),
            DataElement(0x00091001, "LO", "fidelity"),  # DCMTK: FullFidelity (pydicom: Fullfidelity)
            DataElement(0x00091077, "LO", "what"),  # not in any dictionary
            DataElement(0x00E10010, "LO", "ELSCINT1"),
            DataElement(0x00E110C2, "UI", "1.2.3"),
            DataElement(0x00110010, "LO", "Lunit"),
            DataElement(0x00111001, "DS", "0.5"),
        ]
    )
    iid = client.upload(data)["ID"]
    full = client.get(f"/instances/{iid}/tags").json()
    assert full["0009,1001"] == {
        "Name": "FullFidelity",
        "PrivateCreator": "GEMS_IDEN_01",
        "Type": "String",
        "Value": "fidelity",
    }
    assert full["0009,1077"]["Name"] == "Unknown Tag & Data"
    assert full["0009,1077"]["PrivateCreator"] == "GEMS_IDEN_01"
    assert full["0009,0010"]["Name"] == "PrivateCreator"
    simple = client.get(f"/instances/{iid}/tags?simplify").json()
    assert simple["PET-CT Multi Modality Name"] == "1.2.3"
    assert simple["Abnormality score"] == "0.5"
    assert simple["FullFidelity"] == "fidelity"
    # requested tags by the names of the dictionary in force
    series = client.get("/series?expand&requested-tags=PET-CT%20Multi%20Modality%20Name;0009,1001").json()
    assert series[0]["RequestedTags"] == {"PET-CT Multi Modality Name": "1.2.3", "FullFidelity": "fidelity"}
    # Orthanc keeps its own names for a few main tags (DCMTK 3.6.7 calls 0010,1000 RETIRED_OtherPatientIDs)
    assert "OtherPatientIDs" not in simple
    iid2 = client.upload(_instance([DataElement(0x00101000, "LO", "X")], instance=1))["ID"]
    assert client.get(f"/instances/{iid2}/tags").json()["0010,1000"]["Name"] == "OtherPatientIDs"


def test_without_user_dictionary_the_tag_is_unknown(client):
    data = _instance([DataElement(0x00E10010, "LO", "ELSCINT1"), DataElement(0x00E110C2, "UI", "1.2.3")])
    iid = client.upload(data)["ID"]
    assert client.get(f"/instances/{iid}/tags").json()["00e1,10c2"]["Name"] == "Unknown Tag & Data"


def test_un_elements(client):
    """UN elements whose dictionary VR is a string are shown with their padding; others are null."""
    keep = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False
    try:
        un = [
            DataElement(0x00081030, "UN", b"Study X\x00"),  # StudyDescription (LO)
            DataElement(0x00080030, "UN", b"100851.98 "),  # StudyTime (TM), padding kept
            DataElement(0x00540081, "UN", b"\xe3\x00"),  # NumberOfSlices (US): null
        ]
    finally:
        pydicom.config.replace_un_with_known_vr = keep
    data = _instance(un)
    answer = client.upload(data)
    short = client.get(f"/instances/{answer['ID']}/tags?short").json()
    assert short["0008,1030"] == "Study X"
    assert short["0008,0030"] == "100851.98 "
    assert short["0054,0081"] is None
    # main DICOM tags alike: padding kept, no value for a UN number
    study = client.get(f"/studies/{answer['ParentStudy']}").json()["MainDicomTags"]
    assert study["StudyDescription"] == "Study X"
    assert study["StudyTime"] == "100851.98 "
    assert "NumberOfSlices" not in client.get(f"/series/{answer['ParentSeries']}").json()["MainDicomTags"]


def test_long_values_and_ignore_length(client):
    long_text = "Lorem ipsum dolor sit amet " * 20
    iid = client.upload(_instance([DataElement(0x00181020, "LO", long_text[:64] * 5)]))["ID"]
    tags = client.get(f"/instances/{iid}/tags").json()
    assert tags["0018,1020"] == {"Name": "SoftwareVersions", "Type": "TooLong", "Value": None}
    tags = client.get(f"/instances/{iid}/tags?ignore-length=0018-1020").json()
    assert tags["0018,1020"]["Type"] == "String"
    assert tags["0018,1020"]["Value"].startswith("Lorem ipsum")
    tags = client.get(f"/instances/{iid}/tags?ignore-length=SoftwareVersions&short").json()
    assert tags["0018,1020"].startswith("Lorem ipsum")
    assert client.get(f"/instances/{iid}/tags?ignore-length=NoSuchTag").status == 500


def test_whole_shows_tags_after_pixel_data(client):
    data = _instance([DataElement(0x8E050010, "LO", "XEOS_Attributes"), DataElement(0x8E051000, "LO", "acquisition")])
    iid = client.upload(data)["ID"]
    assert "8e05,1000" not in client.get(f"/instances/{iid}/tags").json()
    assert "8e05,1000" not in client.get(f"/instances/{iid}/tags?short").json()
    whole = client.get(f"/instances/{iid}/tags?whole").json()
    assert whole["8e05,1000"]["Value"] == "acquisition"
    assert client.get(f"/instances/{iid}/tags?short&whole").json()["8e05,0010"] == "XEOS_Attributes"


def test_default_encoding_decodes_files_without_charset(client):
    """Values of a file without SpecificCharacterSet are decoded with DefaultEncoding, changed at run time."""
    data = _instance([DataElement(0x00081030, "LO", "Stra\u00dfe".encode("latin-1"))], charset=False)
    iid = client.upload(data)["ID"]
    assert client.get(f"/instances/{iid}/tags?simplify").json()["StudyDescription"] == "Stra\u00dfe"
    assert client.put("/tools/default-encoding", "Utf8").status == 200
    value = client.get(f"/instances/{iid}/tags?simplify").json()["StudyDescription"]
    assert value != "Stra\u00dfe"  # 0xdf alone is not UTF-8
    assert client.put("/tools/default-encoding", "Latin1").status == 200


def test_requested_tags_in_lists(client):
    """`requested-tags` (or `requestedTags`) on lists: main tags of ancestors, computed tags, file
    tags, sequences simplified in the answer's format."""
    seq = Dataset()
    seq.RequestedProcedureID = "RP1"
    data = _instance([DataElement(0x00400275, "SQ", [seq]), DataElement(0x00180023, "CS", "2D")])
    answer = client.upload(data)
    study = answer["ParentStudy"]
    tags = "PatientName;Modality;MRAcquisitionType;RequestAttributesSequence;NumberOfSeriesRelatedInstances"
    series = client.get(f"/studies/{study}/series?expand&requestedTags={tags}").json()
    requested = series[0]["RequestedTags"]
    assert requested["PatientName"] == "Patient^00000"
    assert requested["Modality"] == "CT"
    assert requested["MRAcquisitionType"] == "2D"
    assert requested["NumberOfSeriesRelatedInstances"] == "1"
    assert requested["RequestAttributesSequence"] == [{"RequestedProcedureID": "RP1"}]
    short = client.get(f"/studies/{study}/series?expand&short&requested-tags={tags}").json()[0]["RequestedTags"]
    assert short["0040,0275"] == [{"0040,1001": "RP1"}]
    studies = client.get("/studies?expand&requested-tags=ModalitiesInStudy;SOPClassesInStudy").json()
    assert studies[0]["RequestedTags"] == {"ModalitiesInStudy": "CT", "SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.2"}
    instances = client.get(f"/studies/{study}/instances?expand&requestedTags=InstanceAvailability;Rows").json()
    assert instances[0]["RequestedTags"] == {"InstanceAvailability": "ONLINE", "Rows": "4"}


def test_file_as_dicom_json(client):
    """GET /instances/{id}/file with Accept: application/dicom+json: the DICOM JSON Orthanc's REST
    API answers (UN of a known string VR shown with that VR, unknown UN inline, no group lengths)."""
    keep = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False
    try:
        extra = [
            DataElement(0x00081030, "UN", b"Study X "),  # StudyDescription (LO)
            DataElement(0x00540081, "UN", b"\xe3\x00"),  # NumberOfSlices (US): left out
            DataElement(0x00084567, "UN", b"B\x00"),  # unknown: inline binary
            DataElement(0x00084569, "UN", b"hello"),  # odd length: completed with a NUL
            DataElement(0x00081110, "SQ", []),  # empty sequence: no "Value"
            DataElement(0x00180050, "DS", "3.0\\2.5"),
        ]
    finally:
        pydicom.config.replace_un_with_known_vr = keep
    iid = client.upload(_instance(extra))["ID"]
    r = client.get(f"/instances/{iid}/file", headers={"Accept": "application/dicom+json"})
    assert r.status == 200
    assert r.headers["content-type"] == "application/dicom+json"
    body = r.json()
    assert body["00081030"] == {"vr": "LO", "Value": ["Study X "]}
    assert "00540081" not in body
    assert body["00084567"] == {"vr": "UN", "InlineBinary": "QgA="}
    assert body["00084569"] == {"vr": "UN", "InlineBinary": "aGVsbG8A"}
    assert body["00081110"] == {"vr": "SQ"}
    assert body["00180050"] == {"vr": "DS", "Value": ["3.0", "2.5"]}  # DS: the text (Orthanc >= 1.12.5)
    assert body["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Patient^00000"}]}
    assert body["7FE00010"]["vr"] == "OW" and "InlineBinary" in body["7FE00010"]
    assert not [k for k in body if k.endswith("0000")]
    raw = client.get(f"/instances/{iid}/file")
    assert raw.headers["content-type"] == "application/dicom"


def test_pixel_data_vr_metadata(client):
    """Metadata PixelDataVR (Orthanc 1.12.1) only when the file's VR is not the one PS3.5 prescribes."""
    ds: Dataset = dicomgen.make_dataset(dicomgen.Spec(rows=4, columns=4, instance=7))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds["PixelData"] = DataElement(0x7FE00010, "OW", bytes(16))  # 8 bits: should be OB
    odd = client.upload(dicomgen.to_bytes(ds))["ID"]
    meta = client.get(f"/instances/{odd}/metadata?expand").json()
    assert meta["PixelDataVR"] == "OW"
    assert "PixelDataOffset" in meta
    body = client.get(f"/instances/{odd}/file", headers={"Accept": "application/dicom+json"}).json()
    assert body["7FE00010"]["vr"] == "OW"
    normal = client.upload(_instance([], instance=8))["ID"]  # 16 bits, OW
    assert "PixelDataVR" not in client.get(f"/instances/{normal}/metadata?expand").json()


def test_default_encoding_at_ingest(make_server):
    """Main DICOM tags of a file without SpecificCharacterSet are decoded with the DefaultEncoding
    in force when it arrives; bytes that do not decode are dropped (Orthanc: "M\xfcller" in
    Latin-1 read as UTF-8 gives "Mller")."""
    client = make_server({"DefaultEncoding": "Utf8"}).client()
    extra = [
        DataElement(0x00081030, "LO", "Stra\u00dfe".encode()),
        DataElement(0x00100010, "PN", "M\u00fcller".encode("latin-1")),
    ]
    answer = client.upload(_instance(extra, charset=False))
    study = client.get(f"/studies/{answer['ParentStudy']}").json()
    assert study["MainDicomTags"]["StudyDescription"] == "Stra\u00dfe"
    assert study["PatientMainDicomTags"]["PatientName"] == "Mller"
    tags = client.get(f"/instances/{answer['ID']}/tags?simplify").json()
    assert tags["PatientName"] == "Mller" and tags["StudyDescription"] == "Stra\u00dfe"


def test_private_sequence_known_by_user_dictionary(make_server):
    """An implicit-VR private element the `Dictionary` declares SQ is rendered as a sequence."""
    import io

    from pydicom.dataset import FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ImplicitVRLittleEndian

    client = make_server(CONFIG).client()
    ds: Dataset = dicomgen.make_dataset(dicomgen.Spec(rows=4, columns=4, instance=9))
    ds.add(DataElement(0x04070010, "LO", "99CZM_CapeCod_OctGeneral"))
    item = Dataset()
    item.PatientID = "inner"
    ds.add(DataElement(0x040710A1, "SQ", Sequence([item])))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=True, little_endian=True)
    iid = client.upload(buf.getvalue())["ID"]
    tags = client.get(f"/instances/{iid}/tags").json()
    assert tags["0407,10a1"]["Name"] == "OCTCubeSequence"
    assert tags["0407,10a1"]["Value"] == [{"0010,0020": {"Name": "PatientID", "Type": "String", "Value": "inner"}}]
    body = client.get(f"/instances/{iid}/file", headers={"Accept": "application/dicom+json"}).json()
    assert body["040710A1"] == {"vr": "SQ", "Value": [{"00100020": {"vr": "LO", "Value": ["inner"]}}]}
