"""POST /tools/create-dicom and GET /instances/{id}/pdf: instances built from JSON, read back
(tags, pixels, documents) with Orthanc's rules and errors."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import dicomgen
import numpy as np
import pydicom
from PIL import Image

PDF = b"%PDF-1.1\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF!"  # odd length


def _uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, format="PNG") if mode else Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def _png16_rgba(pixels: np.ndarray) -> bytes:
    """A 16-bit RGBA PNG written by hand (Pillow cannot), each of the five row filters used."""
    height, width, _ = pixels.shape
    raw = bytearray()
    be = np.frombuffer(pixels.astype(">u2").tobytes(), np.uint8).reshape(height, width * 8).astype(np.int32)
    for y in range(height):
        kind = y % 5
        line = be[y]
        up = be[y - 1] if y else np.zeros_like(line)
        out = []
        for x in range(len(line)):
            a = int(line[x - 8]) if x >= 8 else 0
            b = int(up[x])
            c = int(up[x - 8]) if x >= 8 else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out.append((int(line[x]) - pred) & 0xFF)
        raw += bytes([kind]) + bytes(out)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def _file(client, instance: str) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(client.get(f"/instances/{instance}/file").body))


def _create(client, body) -> dict:
    r = client.post("/tools/create-dicom", body)
    assert r.status == 200, r.body
    return r.json()


def test_minimal_instance_has_generated_identifiers_and_dates(client):
    answer = _create(client, {"Tags": {"PatientName": "Jodogne^Seb", "Modality": "CT"}})
    assert set(answer) == {"ID", "ParentPatient", "ParentSeries", "ParentStudy", "Path", "Status"}
    assert answer["Status"] == "Success" and answer["Path"] == f"/instances/{answer['ID']}"
    ds = _file(client, answer["ID"])
    assert ds.PatientName == "Jodogne^Seb" and ds.Modality == "CT"
    assert ds.SpecificCharacterSet == "ISO_IR 100"  # DefaultEncoding Latin1
    assert len(ds.PatientID) == 36  # a generated UUID
    assert ds.StudyInstanceUID.startswith("1.2.276.0.7230010.3.1.2.")
    assert ds.SeriesInstanceUID.startswith("1.2.276.0.7230010.3.1.3.")
    assert ds.SOPInstanceUID.startswith("1.2.276.0.7230010.3.1.4.")
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate"):
        assert len(ds.data_element(keyword).value) == 8
    assert ds.StudyTime.endswith(".000000")
    assert "SOPClassUID" not in ds
    meta = client.get(f"/instances/{answer['ID']}/metadata?expand").json()
    assert meta["Origin"] == "RestApi"


def test_png_rgba_and_gray16_pixels(client):
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = np.arange(35).reshape(5, 7)
    rgba[..., 1] = 200
    rgba[..., 2] = 7
    rgba[..., 3] = 128
    answer = _create(client, {"Tags": {}, "Content": _uri("image/png", _png(rgba, "RGBA"))})
    ds = _file(client, answer["ID"])
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation) == (5, 7, 3, "RGB")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PlanarConfiguration) == (8, 8, 7, 0)
    assert np.array_equal(ds.pixel_array, rgba[..., :3])  # alpha dropped, not blended
    gray = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300).astype(np.uint16)
    answer = _create(client, {"Tags": {}, "Content": _uri("image/png", _png(gray))})
    ds = _file(client, answer["ID"])
    assert (ds.BitsAllocated, ds.PhotometricInterpretation, ds.SamplesPerPixel) == (16, "MONOCHROME2", 1)
    assert np.array_equal(ds.pixel_array, gray)
    preview = Image.open(io.BytesIO(client.get(f"/instances/{answer['ID']}/preview").body))
    assert preview.size == (8, 6)


def test_png_16bit_rgba_is_kept_at_16_bits(client):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 65536, size=(9, 6, 4), dtype=np.uint16)
    answer = _create(
        client,
        {
            "PatientName": "Jodogne",
            "Modality": "CT",
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.1",
            "PixelData": _uri("image/png", _png16_rgba(pixels)),
        },
    )
    ds = _file(client, answer["ID"])
    assert (ds.BitsAllocated, ds.BitsStored, ds.SamplesPerPixel, ds.PhotometricInterpretation) == (16, 16, 3, "RGB")
    assert np.array_equal(ds.pixel_array, pixels[..., :3])
    assert "SpecificCharacterSet" not in ds  # the version-1 request sets no encoding
    r = client.get(f"/instances/{answer['ID']}/preview")  # (/rendered: issue 18)
    assert r.status == 200, r.body
    assert Image.open(io.BytesIO(r.body)).size == (6, 9)


def test_jpeg_decoded_or_encapsulated(client):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    answer = _create(client, {"Tags": {}, "Content": _uri("image/jpeg", jpeg)})
    ds = _file(client, answer["ID"])
    assert np.array_equal(ds.pixel_array, np.asarray(Image.open(io.BytesIO(jpeg))))  # the decoded JPEG
    answer = _create(
        client,
        {
            "Tags": {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"},
            "Content": _uri("image/jpeg", jpeg),
            "Encapsulate": True,
        },
    )
    ds = _file(client, answer["ID"])
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.Rows, ds.Columns) == ("YBR_FULL_422", 3, 16, 24)
    frames = list(pydicom.encaps.generate_fragments(ds.PixelData))
    padded = jpeg + b"\0" if len(jpeg) % 2 else jpeg
    assert frames == [b"", padded]  # an empty offset table, then the JPEG


def test_pdf_round_trip_and_parent(client):
    u = client.upload(dicomgen.make(patient=1, study=1, series=1, rows=0, columns=0))
    answer = _create(
        client, {"Tags": {"PatientName": "Pdf", "Modality": "CT"}, "Content": _uri("application/pdf", PDF)}
    )
    ds = _file(client, answer["ID"])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1" and ds.Modality == "CT"
    assert ds.ConversionType == "WSD" and ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.EncapsulatedDocument == PDF + b"\0"
    r = client.get(f"/instances/{answer['ID']}/pdf")
    assert r.status == 200 and r.headers["content-type"] == "application/pdf" and r.body == PDF
    r = client.get(f"/instances/{u['ID']}/pdf")  # not a PDF: a bare 404
    assert r.status == 404 and r.body == b""
    assert client.get("/instances/nope/pdf").status == 404
    # attached to a series: the patient, study and series tags of the parent are copied
    answer = _create(client, {"Parent": u["ParentSeries"], "Tags": {}, "Content": _uri("application/pdf", PDF)})
    assert answer["ParentSeries"] == u["ParentSeries"] and answer["ParentStudy"] == u["ParentStudy"]
    ds = _file(client, answer["ID"])
    assert ds.Modality == "CT"  # from the parent series, so the PDF's "OT" is not set
    assert ds.SeriesDescription == "Synthetic series" and ds.PatientName == "Patient^00001"
    answer = _create(
        client,
        {"Parent": u["ParentStudy"], "Tags": {"SeriesDescription": "PDF"}, "Content": _uri("application/pdf", PDF)},
    )
    assert answer["ParentStudy"] == u["ParentStudy"] and answer["ParentSeries"] != u["ParentSeries"]
    ds = _file(client, answer["ID"])
    assert ds.Modality == "OT" and ds.StudyDate == "20200101" and ds.SeriesDescription == "PDF"
    # the parent's tags cannot be overridden without Force
    r = client.post("/tools/create-dicom", {"Parent": u["ParentPatient"], "Tags": {"PatientName": "X"}})
    assert r.status == 400 and r.json()["OrthancError"] == "Trying to override a value inherited from a parent module"
    assert r.json()["Details"] == "PatientName"


def test_series_from_a_list_of_contents(client):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    png = _uri("image/png", _png(gray))
    answer = _create(
        client,
        {
            "Tags": {"SpecificCharacterSet": "ISO_IR 100", "PatientName": "Sébastien", "Modality": "CT"},
            "Content": [png, {"Content": png, "Tags": {"ImageComments": "Second"}}],
        },
    )
    assert set(answer) == {"ID", "Path", "Status"} and answer["Path"] == f"/series/{answer['ID']}"
    series = client.get(answer["Path"]).json()
    assert series["ExpectedNumberOfInstances"] == 2 and series["Status"] == "Complete"
    files = sorted((_file(client, i) for i in series["Instances"]), key=lambda d: int(d.InstanceNumber))
    assert [int(d.InstanceNumber) for d in files] == [1, 2]
    assert [int(d.ImageIndex) for d in files] == [1, 2]
    assert "ImageComments" not in files[0] and files[1].ImageComments == "Second"
    assert files[0].SOPInstanceUID != files[1].SOPInstanceUID
    assert files[0].PatientName == "Sébastien" and np.array_equal(files[1].pixel_array, gray)
    # a bad item: nothing of the series is kept
    r = client.post("/tools/create-dicom", {"Tags": {}, "Content": [png, {"Tags": {}}]})
    assert r.status == 400 and r.json()["OrthancError"] == "No payload is present for one instance in the series"
    assert len(client.get("/series").json()) == 1


def test_sequences_binary_and_private_tags(client):
    binary = bytes(range(256))
    encoded = _uri("application/octet-stream", binary)
    body = {
        "Tags": {
            "PatientName": "Jodogne",
            "8899-8899": encoded,
            "ReferencedStudySequence": [
                {"StudyDescription": "Hello", "ReferencedStudySequence": [{"StudyDescription": "Toto"}]},
                {"StudyDescription": "Sébastien"},
            ],
            "0008,1163": "3.12\\4.12",
            "Rows": "12",
        },
        "PrivateCreator": "TestBinary",
    }
    ds = _file(client, _create(client, body)["ID"])
    assert ds[0x88998899].value == binary
    seq = ds.ReferencedStudySequence
    assert seq[0].StudyDescription == "Hello" and seq[0].ReferencedStudySequence[0].StudyDescription == "Toto"
    assert seq[1].StudyDescription == "Sébastien" and ds.Rows == 12 and list(ds.TimeRange) == [3.12, 4.12]
    r = client.get(f"/instances/{_create(client, {**body, 'InterpretBinaryTags': False})['ID']}/content/8899-8899")
    assert r.body == encoded.encode() + b"\0"  # kept as text, padded to an even length


def test_create_errors(client):
    def err(body):
        r = client.post("/tools/create-dicom", body)
        return r.status, r.json().get("OrthancError"), r.json().get("Details")

    assert err({"Tags": []})[:2] == (400, "Bad request")
    assert err({"Tags": {"PixelData": "x"}})[:2] == (400, 'Use "Content" to inject an image into a new DICOM instance')
    assert err({"Tags": {"StudyInstanceUID": "1.2"}}) == (
        400,
        "Trying to override a value inherited from a parent module",
        "StudyInstanceUID",
    )
    assert client.post("/tools/create-dicom", {"Tags": {"StudyInstanceUID": "1.2.3"}, "Force": True}).status == 200
    assert err({"Tags": {}, "Parent": "nope"})[:2] == (
        400,
        "Trying to attach a new DICOM instance to an inexistent resource",
    )
    u = client.upload(dicomgen.make(patient=2, rows=0, columns=0))
    assert err({"Tags": {}, "Parent": u["ID"]})[0] == 400
    assert err({"Tags": {}, "Content": 5})[0] == 400
    assert err({"Tags": {}, "Content": "notadatauri"})[:2] == (400, "Bad file format")
    assert err({"Tags": {}, "Content": _uri("application/pdf", b"Hello")}) == (400, "Bad file format", "Not a PDF file")
    assert err({"Tags": {}, "Content": _uri("image/png", b"AAAA")})[:2] == (400, "Bad file format")
    assert err({"Tags": {"SpecificCharacterSet": "nope"}}) == (
        400,
        "Parameter out of range",
        "Unknown specific character set: nope",
    )
    for key in ("Force", "InterpretBinaryTags", "PrivateCreator"):
        assert err({"Tags": {}, key: 3})[:2] == (400, "Bad request")
    assert err({"Tags": {"PatientName": 3}}) == (
        400,
        "Bad type for a parameter",
        "Bad Parameter type for tag 0010,0010",
    )
    assert err({"PatientName": 3})[:2] == (400, "Only string values are supported when creating DICOM instances")
    assert err({"Tags": {"Rows": "abc"}}) == (
        400,
        "Bad file format",
        'While creating a DICOM instance, tag (0028,0010) has out-of-range value: "abc"',
    )
    assert err({"Tags": {"NoSuchKeyword": "x"}})[0] == 400
    assert err([])[:2] == (400, "Bad request")
    assert len(client.get("/instances").json()) == 2  # only the forced one and the upload


def test_pam_images(client):
    rgba = (np.arange(24, dtype=np.uint16).reshape(3, 2, 4) * 2000).astype(np.uint16)
    pam = b"P7\nWIDTH 2\nHEIGHT 3\nDEPTH 4\nMAXVAL 65535\nTUPLTYPE RGB_ALPHA\nENDHDR\n" + rgba.astype(">u2").tobytes()
    ds = _file(client, _create(client, {"Tags": {}, "Content": _uri("image/x-portable-arbitrarymap", pam)})["ID"])
    assert (ds.BitsAllocated, ds.SamplesPerPixel) == (16, 3) and np.array_equal(ds.pixel_array, rgba[..., :3])
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    pam = b"P7\nWIDTH 3\nHEIGHT 2\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n" + gray.tobytes()
    ds = _file(client, _create(client, {"Tags": {}, "Content": _uri("image/x-portable-arbitrarymap", pam)})["ID"])
    assert (ds.BitsAllocated, ds.PhotometricInterpretation) == (8, "MONOCHROME2")
    assert np.array_equal(ds.pixel_array, gray)
    r = client.post("/tools/create-dicom", {"Tags": {}, "Content": _uri("text/plain", b"hello")})
    assert r.status == 500 and r.json()["OrthancError"] == "Not implemented yet"  # as Orthanc
    assert r.json()["Details"] == "Unsupported MIME type for the content of a new DICOM file: text/plain"


def test_specific_character_set_written_as_orthanc_does(client):
    ds = _file(
        client, _create(client, {"Tags": {"SpecificCharacterSet": "ISO 2022 IR 100", "PatientName": "Jé"}})["ID"]
    )
    assert ds.SpecificCharacterSet == "ISO_IR 100" and ds.PatientName == "Jé"
    assert (
        _file(client, _create(client, {"Tags": {"SpecificCharacterSet": "GBK"}})["ID"]).SpecificCharacterSet
        == "GB18030"
    )
    client.put("/tools/default-encoding", "Utf8")
    assert _file(client, _create(client, {"Tags": {}})["ID"]).SpecificCharacterSet == "ISO_IR 192"


def test_tags_named_by_the_configured_dictionary(make_server):
    server = make_server({"Dictionary": {"0009,1001": ["DS", "MyPrivateValue", 1, 1, "MyCreator"]}})
    client = server.client()
    body = {"Tags": {"MyPrivateValue": "1.5", "0009,0010": "MyCreator"}, "PrivateCreator": "MyCreator"}
    ds = _file(client, _create(client, body)["ID"])
    assert ds[0x00091001].VR == "DS" and float(ds[0x00091001].value) == 1.5
