"""WADO-RS transfer-syntax negotiation (instances and frames) and bulk data, with raw requests
and with dicomweb-client. What Orthanc's DICOMweb plugin 1.10 does was checked by hand: no
transfer-syntax means Explicit VR Little Endian, `*` means as stored, frames of a compressed
file come decoded unless the client takes the stored syntax."""

from __future__ import annotations

import io

import dicomgen
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

RLE = str(RLELossless)
ELE = str(ExplicitVRLittleEndian)
DICOM_MP = 'multipart/related; type="application/dicom"'
OCTET_MP = 'multipart/related; type="application/octet-stream"'


def rle_instance(patient: int, frames: int = 1) -> tuple[bytes, pydicom.Dataset]:
    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=patient, rows=8, columns=8)))
    rng = np.random.default_rng(patient)
    pixels = rng.integers(0, 4000, size=(frames, 8, 8) if frames > 1 else (8, 8), dtype=np.uint16)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes()
    ds.compress(RLELossless, pixels)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), ds


def parts(response) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related body into (headers, body) pairs."""
    ctype = response.headers["content-type"]
    boundary = ctype.split("boundary=")[1].split(";")[0].strip('"')
    out = []
    for chunk in response.body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        out.append((headers, body[:-2] if body.endswith(b"\r\n") else body))
    return out


def path_of(ds: pydicom.Dataset) -> str:
    return f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def syntax_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID)


def test_instances_default_to_explicit_little_endian_and_star_keeps_them_as_stored(client):
    data, ds = rle_instance(1)
    client.upload(data)
    path = path_of(ds)
    for accept in (None, DICOM_MP, DICOM_MP + f"; transfer-syntax={ELE}"):
        r = client.get(path, headers={"Accept": accept} if accept else {})
        assert r.status == 200, accept
        ((_headers, body),) = parts(r)
        assert syntax_of(body) == ELE
        decoded = pydicom.dcmread(io.BytesIO(body))
        assert np.array_equal(decoded.pixel_array, ds.pixel_array)
    r = client.get(path, headers={"Accept": DICOM_MP + "; transfer-syntax=*"})
    assert parts(r)[0][1] == data
    single = client.get(path, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert single.status == 200 and single.body == data
    study = client.get(f"/dicom-web/studies/{ds.StudyInstanceUID}", headers={"Accept": DICOM_MP})
    assert [syntax_of(b) for _h, b in parts(study)] == [ELE]


def test_instances_answer_406_for_a_syntax_that_would_need_an_encoder(client):
    data = dicomgen.make(patient=2, rows=8, columns=8)
    client.upload(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    r = client.get(path_of(ds), headers={"Accept": DICOM_MP + "; transfer-syntax=1.2.840.10008.1.2.4.50"})
    assert r.status == 406 and "1.2.840.10008.1.2.4.50" in r.json()["Details"]
    # an Accept header WADO-RS cannot satisfy at all is a 400, as Orthanc's plugin answers
    assert client.get(path_of(ds), headers={"Accept": "image/png"}).status == 400
    study = f"/dicom-web/studies/{ds.StudyInstanceUID}"
    assert client.get(study, headers={"Accept": "application/dicom"}).status == 400
    for accept in ("application/dicom", "text/html"):  # Orthanc's plugin: 400 for metadata
        assert client.get(study + "/metadata", headers={"Accept": accept}).status == 400, accept
    assert client.get(study + "/metadata", headers={"Accept": "application/dicom+json"}).status == 200
    implicit = client.get(path_of(ds), headers={"Accept": DICOM_MP + "; transfer-syntax=1.2.840.10008.1.2"})
    assert syntax_of(parts(implicit)[0][1]) == "1.2.840.10008.1.2"


def test_unsatisfiable_accept_headers_are_bad_requests(client):
    """Orthanc's DICOMweb plugin answers 400 (not 406) when the Accept header of an instance,
    study, series or bulk data retrieval names another type, an unknown transfer syntax or a
    byte range; what it can answer stays 200."""
    data = dicomgen.make(patient=5, rows=8, columns=8)
    client.upload(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    study = f"/dicom-web/studies/{ds.StudyInstanceUID}"
    for accept in (
        "multipart/nope",
        "multipart/related; type=application/nope",
        "multipart/related; transfer-syntax=nope",
    ):
        r = client.get(study, headers={"Accept": accept})
        assert r.status == 400, accept
        assert r.json()["HttpStatus"] == 400
    for accept in ("multipart/related", "multipart/related; transfer-syntax=*", DICOM_MP + f"; transfer-syntax={ELE}"):
        assert client.get(study, headers={"Accept": accept}).status == 200, accept
    bulk = path_of(ds) + "/bulk/00100010"
    for accept in (
        "multipart/nope",
        "multipart/related;type=application/nope",
        'multipart/related;   type =  "  application/octet-stream"  ',
        "multipart/related;range=",
        "multipart/related; range=bytes=0-3",
    ):
        assert client.get(bulk, headers={"Accept": accept}).status == 400, accept
    for accept in ("multipart/related", 'multipart/related;   type =  "application/octet-stream"  '):
        assert client.get(bulk, headers={"Accept": accept}).status == 200, accept


def test_frames_are_decoded_unless_the_stored_syntax_is_accepted(client):
    data, ds = rle_instance(3, frames=3)
    client.upload(data)
    path = path_of(ds) + "/frames/3,1"
    expected = [ds.pixel_array[2].tobytes(), ds.pixel_array[0].tobytes()]
    for accept in (None, OCTET_MP, OCTET_MP + f"; transfer-syntax={ELE}"):
        r = client.get(path, headers={"Accept": accept} if accept else {})
        assert r.status == 200, accept
        got = parts(r)
        assert [b for _h, b in got] == expected
        assert got[0][0]["Content-Type"] == f"application/octet-stream; transfer-syntax={ELE}"
        assert got[0][0]["Content-Location"].endswith("/frames/3")
    stored = client.get(path, headers={"Accept": OCTET_MP + "; transfer-syntax=*"})
    got = parts(stored)
    assert got[0][0]["Content-Type"] == f"image/dicom-rle; transfer-syntax={RLE}"
    from pydicom.encaps import generate_frames

    raw = list(generate_frames(ds.PixelData, number_of_frames=3))
    assert [b for _h, b in got] == [raw[2], raw[0]]
    rle = client.get(path, headers={"Accept": 'multipart/related; type="image/x-dicom-rle"'})
    assert rle.status == 200 and parts(rle)[0][1] == raw[2]
    one = client.get(path_of(ds) + "/frames/2", headers={"Accept": "application/octet-stream"})
    assert one.status == 200 and one.body == ds.pixel_array[1].tobytes()
    assert client.get(path, headers={"Accept": 'multipart/related; type="image/jpeg"'}).status == 406
    assert client.get(path_of(ds) + "/frames/4").status == 404
    assert client.get(path_of(ds) + "/frames/x").status == 400


def test_big_endian_frames_are_given_little_endian(client):
    """DICOMweb plugin 1.17+ (Orthanc's issue 219): frames of an Explicit VR Big Endian file
    are swapped to Little Endian unless the client takes them as stored."""
    import numpy as np
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRBigEndian

    ds = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=6, rows=4, columns=4)))
    pixels = np.arange(16, dtype="<u2") + 0x0100
    ds.PixelData = pixels.astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    client.upload(buf.getvalue())
    ((headers, body),) = parts(client.get(path_of(ds) + "/frames/1"))
    assert headers["Content-Type"] == f"application/octet-stream; transfer-syntax={ELE}"
    assert body == pixels.tobytes()
    ((headers, body),) = parts(
        client.get(path_of(ds) + "/frames/1", headers={"Accept": OCTET_MP + "; transfer-syntax=*"})
    )
    assert headers["Content-Type"].endswith("transfer-syntax=1.2.840.10008.1.2.2")
    assert body == pixels.astype(">u2").tobytes()


def test_bulk_data_uris_of_metadata_answer_the_values(client):
    data = dicomgen.make(patient=4, rows=8, columns=8, extra={"RedPaletteColorLookupTableData": b"\x01\x02" * 1024})
    client.upload(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    (meta,) = client.get(path_of(ds) + "/metadata").json()
    pixel_uri = meta["7FE00010"]["BulkDataURI"]
    lut_uri = meta["00281201"]["BulkDataURI"]
    local = pixel_uri.split(f":{client.port}", 1)[1]
    r = client.get(local, headers={"Accept": OCTET_MP})
    assert r.status == 200 and parts(r)[0][1] == ds.PixelData
    r = client.get(lut_uri.split(f":{client.port}", 1)[1], headers={"Accept": "application/octet-stream"})
    assert r.status == 200 and r.body == b"\x01\x02" * 1024
    assert client.get(path_of(ds) + "/bulk/00100010", headers={"Accept": OCTET_MP}).status == 200
    assert client.get(path_of(ds) + "/bulk/00091001").status == 404
    assert client.get(path_of(ds) + "/bulk/zz").status == 400
    assert client.get(local, headers={"Accept": "application/dicom+json"}).status == 400


def test_dicomweb_client_retrieves_frames_and_bulk_data(server, client):
    dicomweb_client = pytest.importorskip("dicomweb_client")
    web = dicomweb_client.api.DICOMwebClient(url=f"http://127.0.0.1:{server.port}/dicom-web")
    data, ds = rle_instance(5, frames=2)
    client.upload(data)
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    got = web.retrieve_instance_frames(*uids, frame_numbers=[2, 1])
    assert got == [ds.pixel_array[1].tobytes(), ds.pixel_array[0].tobytes()]
    meta = web.retrieve_instance_metadata(*uids)
    pixel = web.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"], media_types=(("application/octet-stream", "*"),))
    assert len(pixel) == 2
    inst = web.retrieve_instance(*uids, media_types=(("application/dicom", "*"),))
    assert inst.file_meta.TransferSyntaxUID == RLELossless
    plain = web.retrieve_instance(*uids)
    assert np.array_equal(plain.pixel_array, ds.pixel_array)


def test_uris_follow_forwarded_headers_and_keep_the_port(client):
    data = dicomgen.make(patient=6, rows=8, columns=8)
    client.upload(data)
    url_tag = "00081190"

    def retrieve_url(headers):
        (study,) = client.get("/dicom-web/studies?PatientID=PID00006", headers=headers).json()
        return study[url_tag]["Value"][0]

    assert retrieve_url({"X-Forwarded-Host": "pacs.example.org", "X-Forwarded-Proto": "https"}).startswith(
        "https://pacs.example.org/dicom-web/studies/"
    )
    assert retrieve_url({"Forwarded": 'for=10.0.0.1;host="viewer.example:8443";proto=https'}).startswith(
        "https://viewer.example:8443/dicom-web/studies/"
    )
    # dicomweb-client sends a Host header without the port
    assert retrieve_url({"Host": "127.0.0.1"}).startswith(f"http://127.0.0.1:{client.port}/dicom-web/")


def test_accept_header_parsing():
    from orthanc_py.dicomweb.headers import parse_accept

    ranges = parse_accept(
        'application/dicom;q=0.5, multipart/related; type="application/octet-stream; transfer-syntax=*", image/png;q=0'
    )
    assert [(r.media, r.type, r.syntax) for r in ranges] == [
        ("multipart/related", "application/octet-stream", "*"),
        ("application/dicom", None, None),
    ]
    assert parse_accept(None)[0].any
    (r,) = parse_accept("multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
    assert (r.type, r.syntax) == ("application/dicom", "1.2.840.10008.1.2.1")


def test_study_metadata_read_from_headers_equals_instance_metadata(client):
    from pydicom.dataset import Dataset

    files = []
    explicit = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=7, instance=0, rows=8, columns=8)))
    item = Dataset()
    item.CodeValue = "T-D0050"
    item.CodeMeaning = "Tissue"
    explicit.AnatomicRegionSequence = [item]
    explicit.RedPaletteColorLookupTableData = b"\x00\x01" * 600
    implicit = pydicom.dcmread(io.BytesIO(dicomgen.make(patient=7, instance=1, rows=8, columns=8)))
    implicit.BitsAllocated = implicit.BitsStored = 8
    implicit.HighBit = 7
    implicit.PixelData = bytes(64)
    for ds, syntax in ((explicit, ELE), (implicit, "1.2.840.10008.1.2")):
        ds.file_meta.TransferSyntaxUID = syntax
        out = io.BytesIO()
        ds.save_as(out, implicit_vr=syntax != ELE, little_endian=True, enforce_file_format=True)
        files.append(out.getvalue())
    rle, _ds = rle_instance(7)
    rle_ds = pydicom.dcmread(io.BytesIO(rle))
    rle_ds.SOPInstanceUID += ".9"
    rle_ds.InstanceNumber = 3
    out = io.BytesIO()
    rle_ds.save_as(out, enforce_file_format=True)
    files.append(out.getvalue())
    for f in files:
        client.upload(f)
    study = explicit.StudyInstanceUID
    series_meta = client.get(f"/dicom-web/studies/{study}/metadata").json()
    assert len(series_meta) == 3
    for entry in series_meta:
        sop = entry["00080018"]["Value"][0]
        series = entry["0020000E"]["Value"][0]
        (single,) = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata").json()
        assert entry == single
    vrs = sorted(e["7FE00010"]["vr"] for e in series_meta)
    assert vrs == ["OB", "OW", "OW"]  # RLE is OB; implicit VR pixel data is always OW


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_gdcm.dcm"])
def test_jpeg_lossless_and_jpeg_ls_are_decoded(client, name):
    """The compressed syntaxes most common in CT/MR archives (Orthanc decodes them natively)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    with open(path, "rb") as f:
        data = f.read()
    original = pydicom.dcmread(path)
    iid = client.upload(data)["ID"]
    preview = client.get(f"/instances/{iid}/preview")
    assert preview.status == 200 and preview.body[:8] == b"\x89PNG\r\n\x1a\n"
    r = client.get(path_of(original), headers={"Accept": DICOM_MP + f"; transfer-syntax={ELE}"})
    assert r.status == 200
    decoded = pydicom.dcmread(io.BytesIO(parts(r)[0][1]))
    assert decoded.file_meta.TransferSyntaxUID == ELE
    assert np.array_equal(decoded.pixel_array, original.pixel_array)
    frame = client.get(path_of(original) + "/frames/1", headers={"Accept": OCTET_MP})
    assert frame.status == 200 and len(parts(frame)[0][1]) == original.pixel_array.nbytes


def jpeg_instance(patient: int) -> tuple[bytes, bytes]:
    """A YBR_FULL_422 JPEG Baseline instance (as scanners write them) and the RGB bytes libjpeg
    decodes from its stream (what DCMTK, hence Orthanc, answers)."""
    from PIL import Image
    from pydicom.encaps import encapsulate

    rgb = np.random.default_rng(patient).integers(0, 255, size=(16, 24, 3), dtype=np.uint8)
    stream = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(stream, format="JPEG", quality=80)
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=patient, rows=0, columns=0))
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = 16, 24, 3, 0
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([stream.getvalue()])
    ds["PixelData"].VR = "OB"
    data = dicomgen.to_bytes(ds)
    data = pydicom.dcmread(io.BytesIO(data))
    data.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    out = io.BytesIO()
    data.save_as(out, enforce_file_format=True)
    decoded = Image.open(io.BytesIO(stream.getvalue())).tobytes()
    return out.getvalue(), decoded


def test_jpeg_frames_and_instances_are_decoded_as_dcmtk_decodes_them(client):
    data, decoded = jpeg_instance(11)
    client.upload(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    frame = client.get(
        path_of(ds) + "/frames/1", headers={"Accept": "multipart/related; type=application/octet-stream"}
    )
    assert parts(frame)[0][1] == decoded
    plain = client.get(path_of(ds), headers={"Accept": DICOM_MP})
    got = pydicom.dcmread(io.BytesIO(parts(plain)[0][1]))
    assert got.PhotometricInterpretation == "RGB" and got.PixelData == decoded


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.50"])
def test_frames_encoded_in_the_jpeg_syntax_the_client_names(client, syntax):
    from PIL import Image
    from pydicom.encaps import encapsulate

    gray = np.random.default_rng(3).integers(0, 255, size=(12, 20), dtype=np.uint8)
    gray[:, :10] = 200  # flat areas and noise
    ds = dicomgen.make_dataset(dicomgen.Spec(patient=12, rows=0, columns=0))
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 12, 20, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = gray.tobytes()
    client.upload(dicomgen.to_bytes(ds))
    accept = f"multipart/related; type=image/jpeg; transfer-syntax={syntax}"
    r = client.get(path_of(ds) + "/frames/1", headers={"Accept": accept})
    ((headers, frame),) = parts(r)
    assert headers["Content-Type"] == f"image/jpeg; transfer-syntax={syntax}"
    assert frame[:2] == b"\xff\xd8" and frame[-2:] == b"\xff\xd9" and len(frame) % 2 == 0
    if syntax.endswith(".50"):
        decoded = np.asarray(Image.open(io.BytesIO(frame)))
        assert np.abs(decoded.astype(int) - gray).max() < 40
        return
    # lossless: a DICOM file made of the stream decodes to the very pixels
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    assert np.array_equal(ds.pixel_array, gray)


def test_instances_transcoded_to_jpeg_lossless(client):
    data, decoded = jpeg_instance(13)  # a colour JPEG Baseline instance
    client.upload(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    r = client.get(path_of(ds), headers={"Accept": DICOM_MP + "; transfer-syntax=1.2.840.10008.1.2.4.57"})
    got = pydicom.dcmread(io.BytesIO(parts(r)[0][1]))
    assert str(got.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.57"
    assert got.PhotometricInterpretation == "RGB" and got.pixel_array.tobytes() == decoded
    # 16-bit images are encoded too (precision 16), and decode to the very pixels
    other = dicomgen.make(patient=14, rows=8, columns=8)
    client.upload(other)
    r = client.get(
        path_of(pydicom.dcmread(io.BytesIO(other))),
        headers={"Accept": DICOM_MP + "; transfer-syntax=1.2.840.10008.1.2.4.70"},
    )
    got = pydicom.dcmread(io.BytesIO(parts(r)[0][1]))
    assert str(got.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"
    assert np.array_equal(got.pixel_array, pydicom.dcmread(io.BytesIO(other)).pixel_array)
