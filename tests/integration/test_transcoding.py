"""Transcoding on real files, through the real server: every encoder round-trips (pixels decoded
and compared: exact when lossless, PSNR when lossy), the file meta names the syntax, lossy
encodings get a new SOPInstanceUID and the lossy attributes, /instances/{id}/file?transcode=
answers Orthanc's errors, DicomLossyTranscodingQuality and lossy-quality change the size,
IngestTranscoding(OfUncompressed/OfCompressed) applies to REST and C-STORE, and a C-STORE to a
DCMTK storescp that accepts only some syntaxes gets the file in one of them."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from orthanc_py.config import from_raw
from tests.conftest import free_ports

STORESCP = shutil.which("storescp")
STORESCU = shutil.which("storescu")

LOSSLESS = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
]
LOSSY = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"]
EIGHT_BIT_ONLY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}

# pydicom's test files: 16-bit signed CT, MR stored in many syntaxes, 8-bit RGB, 16-bit RGB
SOURCES = [
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
]


def read(data: bytes) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True)


def pixels(data: bytes) -> np.ndarray:
    """The decoded pixels, colour ones as RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(data).pixel_array


def source(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(float) - b.astype(float)) ** 2).mean())
    peak = float(max(int(b.max()) - int(b.min()), 1))
    return 99.0 if mse == 0 else 10 * np.log10(peak**2 / mse)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server with every source uploaded: (client, {name: (instance id, file, reference pixels)})."""
    from tests.conftest import RunningServer

    server = RunningServer({}, tmp_path_factory.mktemp("transcoding"))
    client = server.client()
    ids = {}
    for name in SOURCES:
        data = source(name)
        answer = client.upload(data)
        stored_file = client.get(f"/instances/{answer['ID']}/file").body
        reference = pixels(client.get(f"/instances/{answer['ID']}/file?transcode=1.2.840.10008.1.2.1").body)
        ids[name] = (answer["ID"], stored_file, reference)
    yield client, ids
    server.stop()


@pytest.mark.parametrize("name", SOURCES)
def test_every_encoder_round_trips(stored: Any, name: str) -> None:
    client, ids = stored
    instance, original, reference = ids[name]
    ds = read(original)
    bits = int(ds.BitsStored)
    sop = str(ds.SOPInstanceUID)
    for target in LOSSLESS + LOSSY:
        r = client.get(f"/instances/{instance}/file?transcode={target}")
        if target in EIGHT_BIT_ONLY and bits != 8:
            assert r.status == 500, (name, target)
            assert r.json()["Details"] == f"Cannot transcode to transfer syntax: {target}"
            continue
        assert r.status == 200, (name, target, r.body[:300])
        if target == str(ds.file_meta.TransferSyntaxUID):
            assert r.body == original  # already in that syntax: the stored file
            continue
        got = read(r.body)
        assert str(got.file_meta.TransferSyntaxUID) == target, (name, target)
        decoded = pixels(r.body)
        assert decoded.shape == reference.shape, (name, target)
        if target in LOSSY:
            assert psnr(decoded, reference) > 30, (name, target)
            assert str(got.SOPInstanceUID) != sop and got.LossyImageCompression == "01"
            assert str(got.file_meta.MediaStorageSOPInstanceUID) == str(got.SOPInstanceUID)
            assert got.SourceImageSequence[0].ReferencedSOPInstanceUID == sop
            assert got.DerivationCodeSequence[0].CodeValue == "113040"
        else:
            assert np.array_equal(decoded, reference), (name, target)
            assert str(got.SOPInstanceUID) == sop
            assert got.PatientName == ds.PatientName


def test_lossless_jpeg_describes_itself_as_dcmtk_does(stored: Any) -> None:
    client, ids = stored
    instance = ids["CT_small.dcm"][0]
    got = read(client.get(f"/instances/{instance}/file?transcode=1.2.840.10008.1.2.4.57").body)
    assert got.DerivationDescription.startswith("Lossless JPEG compression, selection value 6, point transform 0")
    assert "LossyImageCompression" not in got or got.LossyImageCompression != "01"
    baseline = read(client.get(f"/instances/{ids['SC_rgb_rle.dcm'][0]}/file?transcode=1.2.840.10008.1.2.4.50").body)
    assert baseline.PhotometricInterpretation == "YBR_FULL_422"
    assert baseline.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(baseline.LossyImageCompressionRatio) > 1
    assert baseline.ImageType[0] == "DERIVED"


def test_transcode_errors_are_orthancs(stored: Any) -> None:
    client, ids = stored
    instance = ids["CT_small.dcm"][0]
    r = client.get(f"/instances/{instance}/file?transcode=nope")
    assert r.status == 400
    assert r.json()["Details"] == "Unknown transfer syntax: nope"
    assert r.json()["OrthancError"] == "Parameter out of range"
    r = client.get(f"/instances/{instance}/file?transcode=1.2.840.10008.1.2.4.50")  # 16-bit: no JPEG baseline
    assert r.status == 500 and r.json()["Message"] == "Internal error"
    r = client.get(f"/instances/{instance}/file?transcode=1.2.840.10008.1.2.4.50&lossy-quality=0")
    assert r.status == 400
    # the stored syntax: the stored bytes
    same = client.get(f"/instances/{instance}/file?transcode=1.2.840.10008.1.2.1")
    assert same.body == client.get(f"/instances/{instance}/file").body


def test_lossy_quality_changes_the_size(stored: Any) -> None:
    client, ids = stored
    instance = ids["SC_rgb_rle.dcm"][0]
    sizes = {}
    for quality in (40, 80):
        r = client.get(f"/instances/{instance}/file?transcode=1.2.840.10008.1.2.4.50&lossy-quality={quality}")
        assert r.status == 200
        sizes[quality] = len(r.body)
        assert f"IJG quality factor {quality}," in read(r.body).DerivationDescription
    assert sizes[40] < sizes[80]


def test_lossy_quality_of_modify_and_archives(stored: Any) -> None:
    """ "LossyQuality" of /modify and `lossy-quality` of archives (Orthanc 1.12.7)."""
    client, ids = stored
    instance = ids["SC_rgb_rle.dcm"][0]
    sizes = {}
    for quality in (40, 80):
        body = {"Transcode": "1.2.840.10008.1.2.4.50", "LossyQuality": quality}
        r = client.post(f"/instances/{instance}/modify", body)
        assert r.status == 200, r.body
        sizes[quality] = len(r.body)
        assert f"IJG quality factor {quality}," in read(r.body).DerivationDescription
        zipped = client.get(f"/instances/{instance}/archive?transcode=1.2.840.10008.1.2.4.50&lossy-quality={quality}")
        assert zipped.status == 200
        with zipfile.ZipFile(io.BytesIO(zipped.body)) as z:
            (name,) = z.namelist()
            assert f"IJG quality factor {quality}," in read(z.read(name)).DerivationDescription
    assert sizes[40] < sizes[80]
    r = client.post(f"/instances/{instance}/modify", {"Transcode": "1.2.840.10008.1.2.4.50", "LossyQuality": 0})
    assert r.status == 400 and r.json()["OrthancError"] == "Parameter out of range"


def test_configured_lossy_quality(make_server: Any) -> None:
    data = source("SC_rgb_rle.dcm")
    sizes = []
    for quality in (20, 95):
        client = make_server({"DicomLossyTranscodingQuality": quality}).client()
        instance = client.upload(data)["ID"]
        r = client.get(f"/instances/{instance}/file?transcode=1.2.840.10008.1.2.4.50")
        assert r.status == 200
        sizes.append(len(r.body))
    assert sizes[0] < sizes[1]
    with pytest.raises(ValueError):
        from_raw({"DicomLossyTranscodingQuality": 0})


def test_ingest_transcoding_lossless_keeps_the_instance(make_server: Any) -> None:
    client = make_server({"IngestTranscoding": "1.2.840.10008.1.2.4.90"}).client()
    data = source("CT_small.dcm")
    answer = client.upload(data)
    stored_file = client.get(f"/instances/{answer['ID']}/file").body
    assert str(read(stored_file).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.90"
    assert np.array_equal(pixels(stored_file), pixels(data))
    assert client.get(f"/instances/{answer['ID']}/metadata/TransferSyntax").body == b"1.2.840.10008.1.2.4.90"
    assert str(read(stored_file).SOPInstanceUID) == str(read(data).SOPInstanceUID)


def test_ingest_transcoding_lossy_gives_a_new_instance(make_server: Any) -> None:
    client = make_server({"IngestTranscoding": "1.2.840.10008.1.2.4.50"}).client()
    data = source("SC_rgb_rle.dcm")
    answer = client.upload(data)
    stored_file = client.get(f"/instances/{answer['ID']}/file").body
    got = read(stored_file)
    assert str(got.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.50"
    assert str(got.SOPInstanceUID) != str(read(data).SOPInstanceUID)
    assert client.get(f"/instances/{answer['ID']}/simplified-tags").json()["SOPInstanceUID"] == str(got.SOPInstanceUID)
    # a file that cannot be transcoded (16-bit to JPEG baseline) is stored as received
    ct = source("CT_small.dcm")
    answer = client.upload(ct)
    assert client.get(f"/instances/{answer['ID']}/file").body == ct


def test_ingest_transcoding_of_uncompressed_or_compressed_only(make_server: Any) -> None:
    client = make_server(
        {"IngestTranscoding": "1.2.840.10008.1.2.1", "IngestTranscodingOfUncompressed": False}
    ).client()
    implicit = source("MR_small_implicit.dcm")
    answer = client.upload(implicit)
    assert client.get(f"/instances/{answer['ID']}/file").body == implicit  # uncompressed: as received
    rle = source("SC_rgb_rle.dcm")  # another instance (MR_small_RLE.dcm is the same SOP instance)
    answer = client.upload(rle)
    stored_file = client.get(f"/instances/{answer['ID']}/file").body
    assert str(read(stored_file).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
    assert np.array_equal(pixels(stored_file), pixels(rle))
    client = make_server({"IngestTranscoding": "1.2.840.10008.1.2.1", "IngestTranscodingOfCompressed": False}).client()
    answer = client.upload(rle)
    assert client.get(f"/instances/{answer['ID']}/file").body == rle  # compressed: as received
    with pytest.raises(ValueError, match="Unknown transfer syntax for ingest transcoding"):
        from_raw({"IngestTranscoding": "nope"})


@pytest.mark.skipif(STORESCU is None, reason="DCMTK not installed")
def test_ingest_transcoding_applies_to_c_store(make_server: Any) -> None:
    (dicom_port,) = free_ports(1)
    client = make_server(
        {"DicomServerEnabled": True, "DicomPort": dicom_port, "IngestTranscoding": "1.2.840.10008.1.2.4.80"}
    ).client()
    assert STORESCU is not None
    subprocess.run(
        [STORESCU, "-aec", "ORTHANC", "127.0.0.1", str(dicom_port), get_testdata_file("CT_small.dcm")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    (instance,) = client.get("/instances").json()
    stored_file = client.get(f"/instances/{instance}/file").body
    assert str(read(stored_file).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.80"
    assert np.array_equal(pixels(stored_file), pixels(source("CT_small.dcm")))


def _storescp(port: int, folder: Path, *options: str) -> subprocess.Popen[bytes]:
    assert STORESCP is not None
    process = subprocess.Popen(
        [STORESCP, *options, "-aet", "PICKY", "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("storescp did not start")


@pytest.mark.skipif(STORESCP is None, reason="DCMTK not installed")
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["+xi"], "1.2.840.10008.1.2"),  # accepts Implicit VR Little Endian only
        (["+xb"], "1.2.840.10008.1.2.1"),  # prefers Big Endian, takes Explicit LE: Orthanc's preferred
    ],
)
def test_c_store_to_a_peer_without_the_stored_syntax(
    make_server: Any, tmp_path: Path, options: list[str], expected: str
) -> None:
    port, dicom_port = free_ports(2)
    folder = tmp_path / "received"
    folder.mkdir()
    process = _storescp(port, folder, *options)
    try:
        client = make_server(
            {
                "DicomServerEnabled": True,
                "DicomPort": dicom_port,
                "DicomModalities": {"picky": ["PICKY", "127.0.0.1", port]},
                "DicomAssociationCloseDelay": 0,
            }
        ).client()
        sent = {}
        for name in ("MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm"):
            data = source(name)
            instance = client.upload(data)["ID"]
            sent[str(read(data).SOPInstanceUID)] = pixels(data)
            r = client.post("/modalities/picky/store", instance.encode(), headers={"Content-Type": "text/plain"})
            assert r.status == 200, r.body
        received = {}
        deadline = time.monotonic() + 10
        while len(received) < len(sent) and time.monotonic() < deadline:
            for f in folder.iterdir():
                if f.name not in received and f.stat().st_size > 0:
                    time.sleep(0.1)
                    received[f.name] = f.read_bytes()
        assert len(received) == len(sent)
        for data in received.values():
            got = read(data)
            syntax = str(got.file_meta.TransferSyntaxUID)
            assert syntax == expected
            assert np.array_equal(pixels(data), sent[str(got.SOPInstanceUID)])
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.skipif(STORESCP is None, reason="DCMTK not installed")
def test_c_store_big_endian_only_peer(make_server: Any, tmp_path: Path) -> None:
    """A peer that takes Big Endian only (storescp with a configuration of one syntax) gets the
    file in Big Endian, pixels intact."""
    port, dicom_port = free_ports(2)
    folder = tmp_path / "received"
    folder.mkdir()
    config = tmp_path / "storescp.cfg"
    config.write_text(
        "[[TransferSyntaxes]]\n[BigEndian]\nTransferSyntax1 = BigEndianExplicit\n"
        "[[PresentationContexts]]\n[Contexts]\n"
        + "".join(
            f"PresentationContext{i + 1} = {sop}\\BigEndian\n"
            for i, sop in enumerate(["MRImageStorage", "CTImageStorage", "SecondaryCaptureImageStorage"])
        )
        + "[[Profiles]]\n[Default]\nPresentationContexts = Contexts\n"
    )
    process = _storescp(port, folder, "-xf", str(config), "Default")
    try:
        client = make_server(
            {
                "DicomModalities": {"picky": ["PICKY", "127.0.0.1", port]},
                "DicomPort": dicom_port,
                "DicomAssociationCloseDelay": 0,
            }
        ).client()
        data = source("MR_small_RLE.dcm")
        instance = client.upload(data)["ID"]
        r = client.post("/modalities/picky/store", instance.encode(), headers={"Content-Type": "text/plain"})
        assert r.status == 200, r.body
        deadline = time.monotonic() + 10
        while not any(folder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        (received,) = [f.read_bytes() for f in folder.iterdir()]
        got = read(received)
        assert str(got.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.2"
        assert np.array_equal(pixels(received), pixels(data))
        assert got.PatientName == read(data).PatientName
    finally:
        process.terminate()
        process.wait(10)


def _parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer."""
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"').encode()
    out = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, payload = chunk.partition(b"\r\n\r\n")
        kind = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-type:")
        )
        out.append((kind, payload[:-2]))
    return out


@pytest.mark.parametrize(
    ("media", "syntax"),
    [
        ("image/jls", "1.2.840.10008.1.2.4.80"),
        ("image/jp2", "1.2.840.10008.1.2.4.90"),
        ("image/dicom-rle", "1.2.840.10008.1.2.5"),
        ("image/jpeg", "1.2.840.10008.1.2.4.70"),
    ],
)
def test_wado_rs_frames_in_any_lossless_syntax(stored: Any, media: str, syntax: str) -> None:
    """A 16-bit signed CT's frame asked for in a compressed media type comes encoded in it, and
    decodes to the very pixels."""
    from pydicom.encaps import encapsulate

    client, ids = stored
    _instance, original, reference = ids["CT_small.dcm"]
    ds = read(original)
    path = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    accept = f'multipart/related; type="{media}"; transfer-syntax={syntax}'
    r = client.get(path + "/frames/1", headers={"Accept": accept})
    assert r.status == 200, r.body[:300]
    ((kind, frame),) = _parts(r.body, r.headers["content-type"])
    assert kind == f"{media}; transfer-syntax={syntax}"
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(ds.pixel_array, reference)


def test_jpeg_extended_12_bit(make_server: Any) -> None:
    """Unsigned monochrome images of up to 12 bits go to JPEG Extended (12-bit precision), as
    DCMTK does for Orthanc; JPEG Baseline stays 8-bit only."""
    ds = read(source("MR_small.dcm"))
    values = (np.abs(ds.pixel_array.astype(np.int64)) * 4 % 4096).astype(np.uint16)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.PixelData = values.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    client = make_server().client()
    instance = client.upload(out.getvalue())["ID"]
    r = client.get(f"/instances/{instance}/file?transcode=1.2.840.10008.1.2.4.51")
    assert r.status == 200, r.body[:300]
    got = read(r.body)
    assert str(got.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.51"
    assert got.DerivationDescription.startswith("Lossy compression with JPEG extended sequential 12 bit")
    assert psnr(pixels(r.body), values) > 40
    assert client.get(f"/instances/{instance}/file?transcode=1.2.840.10008.1.2.4.50").status == 500


@pytest.mark.skipif(STORESCP is None, reason="DCMTK not installed")
@pytest.mark.parametrize(("options", "expected"), [(["+xa"], "1.2.840.10008.1.2.1"), (["+xi"], "1.2.840.10008.1.2")])
def test_c_store_keeps_private_tags(make_server: Any, tmp_path: Path, options: list[str], expected: str) -> None:
    """Orthanc's issue 169: an Explicit VR Little Endian file goes as stored when the peer takes
    it (Orthanc <= 1.6.1 sent it in Implicit), and its private values survive, transcoded or not."""
    ds = read(source("CT_small.dcm"))
    block = ds.private_block(0x1337, "ISSUE169", create=True)
    block.add_new(0x01, "LO", "NORMAL")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    (port,) = free_ports(1)
    folder = tmp_path / "received"
    folder.mkdir()
    process = _storescp(port, folder, *options)
    try:
        client = make_server(
            {"DicomModalities": {"peer": ["PICKY", "127.0.0.1", port]}, "DicomAssociationCloseDelay": 0}
        ).client()
        instance = client.upload(out.getvalue())["ID"]
        r = client.post("/modalities/peer/store", instance.encode(), headers={"Content-Type": "text/plain"})
        assert r.status == 200, r.body
        deadline = time.monotonic() + 10
        while not any(folder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        (received,) = [f.read_bytes() for f in folder.iterdir()]
        got = read(received)
        assert str(got.file_meta.TransferSyntaxUID) == expected
        value = got[0x13371001].value
        assert (value if isinstance(value, str) else value.decode().strip()) == "NORMAL"
        assert np.array_equal(pixels(received), ds.pixel_array)
    finally:
        process.terminate()
        process.wait(10)
