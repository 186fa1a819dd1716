"""Decoded images over HTTP, compared with the real Orthanc's answers.

test_images_oracle.json holds, for sample files of Orthanc's test suite and of pydicom, the
status and MD5 of Orthanc 1.10.1's answer to each image route (recorded from /usr/sbin/Orthanc
1.10.1 on the same files). PNG, Matlab, numpy and raw answers must be byte for byte the same.
Files whose answers changed after 1.10.1 (planar RLE, which this server answers as 1.12, the
version it reports) are tested against the MD5s of Orthanc's own suite instead.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image

from orthanc_py.imaging import png

ORACLE = json.loads((Path(__file__).parent / "test_images_oracle.json").read_text())
SUITE = Path(os.environ.get("ORTHANC_TESTS_MIRROR", "/work/.mirror/orthanc-mirrors+orthanc-tests/repo"))
BIG = 700_000  # larger files are left out to keep the test fast
MATLAB_MAX = 100_000  # the Matlab text of big images is tens of megabytes


def _suite_file(path: str) -> bytes | None:
    """A sample file of Orthanc's suite from its git mirror (None when unavailable)."""
    if not SUITE.exists():
        return None
    done = subprocess.run(
        ["git", "--git-dir", str(SUITE), "cat-file", "blob", f"HEAD:{path}"], capture_output=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def _pydicom_file(name: str) -> bytes | None:
    """A test file shipped inside pydicom (never one it would download)."""
    import pydicom.data

    found = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob(name))
    return found[0].read_bytes() if found else None


def _sample(key: str) -> bytes | None:
    kind, _, name = key.partition(":")
    return _suite_file(name) if kind == "suite" else _pydicom_file(name)


def _md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(float) - b.astype(float)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _image(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def _as_exact(route: str, r: Any) -> bytes:
    """The body, except for a /rendered PNG, which the server may compress for speed: its
    pixels written again with Orthanc's exact PNG settings (equal bytes <=> equal pixels)."""
    if not route.startswith("rendered") or r.headers.get("content-type") != "image/png":
        return r.body
    image = Image.open(io.BytesIO(r.body))
    pixels = np.asarray(image)
    if image.mode.startswith("I;16"):
        pixels = pixels.astype(np.uint16)
    return png.encode(pixels)


def test_answers_are_orthancs(client: Any) -> None:
    """Every route on every sample file: Orthanc's status, and its bytes when it answers."""
    checked = 0
    mismatches = []
    for key, routes in sorted(ORACLE.items()):
        data = _sample(key)
        if data is None or len(data) > BIG:
            continue
        answer = client.post("/instances", data)
        if answer.status != 200:
            continue
        iid = answer.json()["ID"]
        for route, (status, md5) in routes.items():
            if route == "matlab" and len(data) > MATLAB_MAX:
                continue
            r = client.get(f"/instances/{iid}/{route}")
            checked += 1
            if r.status != status or (status == 200 and _md5(_as_exact(route, r)) != md5):
                mismatches.append((key, route, status, r.status))
        client.delete(f"/instances/{iid}")
    if checked == 0:
        pytest.skip("no sample file available")
    assert not mismatches, mismatches[:10]
    assert checked > 300


def _upload_suite(client: Any, path: str) -> str:
    data = _suite_file(path)
    if data is None:
        pytest.skip(f"{path} is not available")
    return client.upload(data)["ID"]


def test_planar_rle_as_orthanc_1_12(client: Any) -> None:
    """Colour-by-plane RLE frames are interleaved and YBR_FULL turned into RGB (the MD5s of
    Orthanc's own suite for a server of version 1.12.2 or later)."""
    a = _upload_suite(client, "Database/2022-11-14-RLEPlanarConfiguration.dcm")
    assert _md5(client.get(f"/instances/{a}/preview").body) == "c684b0050dc2523041240bf2d26dc85e"
    b = _upload_suite(client, "Database/2023-04-21-RLEPlanarConfigurationYBR_FULL.dcm")
    assert _md5(client.get(f"/instances/{b}/preview").body) == "07a3ea7ea08d54362f744cc5945e8743"


def test_transfer_syntaxes_of_the_suite(client: Any) -> None:
    """The preview MD5s Orthanc's suite expects for each transfer syntax it decodes (12-bit
    JPEG, lossless JPEG, JPEG-LS, RLE, big endian), and no preview for JPEG 2000."""
    expected = {
        "1.2.840.10008.1.2.1": "fae08d5415c4c0cd2cdbae4522408631",
        "1.2.840.10008.1.2.2": "f3d9784768b8feb54d6a50b6d5c37682",
        "1.2.840.10008.1.2.4.51": "ccbe75909fe5c9f7361b48416a53fc41",
        "1.2.840.10008.1.2.4.57": "7bbefe11d976b1be4e568915c6a82fc3",
        "1.2.840.10008.1.2.4.70": "7132cfbc457305b04b59787030c785d2",
        "1.2.840.10008.1.2.5": "6ff51ae525d362e0d04f550a64075a0e",
        "1.2.840.10008.1.2": "d54aed9f67a100984b42942cc2e9939b",
        "1.2.840.10008.1.2.4.50": "496326046974eea718dbc16b997c646b",
        "1.2.840.10008.1.2.4.80": "6ff51ae525d362e0d04f550a64075a0e",
        "1.2.840.10008.1.2.4.81": "801579ae7cbf28e604ea74f2c99fa2ca",
        "1.2.840.10008.1.2.4.90": None,
        "1.2.840.10008.1.2.4.91": None,
    }
    for syntax, md5 in expected.items():
        iid = _upload_suite(client, f"Database/TransferSyntaxes/{syntax}.dcm")
        r = client.get(f"/instances/{iid}/preview")
        if md5 is None:
            assert r.status == 415 and r.body == b""
        else:
            assert r.status == 200 and _md5(r.body) == md5, syntax


def test_jpeg_answers_are_close_to_the_png(client: Any) -> None:
    """JPEG is Orthanc's PNG through a JPEG encoder: at quality 90 within 40 dB of it, smaller
    at a lower quality; 16-bit images have no JPEG (Orthanc's bare 404)."""
    iid = _upload_suite(client, "Database/Brainix/Epi/IM-0001-0001.dcm")
    for route in ("preview", "rendered", "image-uint8", "frames/0/rendered?width=100"):
        png = client.get(f"/instances/{iid}/{route}", headers={"Accept": "image/png"})
        jpeg = client.get(f"/instances/{iid}/{route}", headers={"Accept": "image/jpeg"})
        assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.body[:2] == b"\xff\xd8"
        assert _psnr(_image(png.body), _image(jpeg.body)) >= 40, route
    small = client.get(f"/instances/{iid}/preview?quality=50", headers={"Accept": "image/jpeg"})
    full = client.get(f"/instances/{iid}/preview", headers={"Accept": "image/jpeg"})
    assert len(small.body) < len(full.body)
    for route in ("image-uint16", "image-int16"):
        assert client.get(f"/instances/{iid}/{route}", headers={"Accept": "image/jpeg"}).status == 404
    for accept in ("*/*", "image/*", "text/html,image/png;q=0.9,image/jpeg;q=0.5"):
        assert client.get(f"/instances/{iid}/preview", headers={"Accept": accept}).body[:4] == b"\x89PNG"
    assert client.get(f"/instances/{iid}/preview", headers={"Accept": "application/pdf"}).status == 404
    pam = client.get(f"/instances/{iid}/preview", headers={"Accept": "image/x-portable-arbitrarymap"})
    assert pam.body.startswith(b"P7\nWIDTH 256\nHEIGHT 256\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n")
    assert pam.body.endswith(_image(client.get(f"/instances/{iid}/preview").body).tobytes())


def test_bare_errors_as_orthanc(client: Any) -> None:
    iid = _upload_suite(client, "Database/Phenix/IM-0001-0001.dcm")
    color = _upload_suite(client, "Database/ColorTestMalaterre.dcm")
    for path in (
        "/instances/nope/preview",
        f"/instances/{iid}/frames/x/preview",
        f"/instances/{iid}/frames/1/preview",  # out of range of a native image
        f"/instances/{iid}/rendered?width=-3",
        f"/instances/{iid}/rendered?window-width=abc",
        f"/instances/{iid}/frames/x/raw",
        f"/instances/{iid}/frames/x/matlab",
    ):
        r = client.get(path)
        assert (r.status, r.body) == (404, b""), path
    for path in (f"/instances/{iid}/preview?quality=0", f"/instances/{color}/image-uint8"):
        r = client.get(path)
        assert (r.status, r.body) == (415, b""), path
    for path, status in (
        (f"/instances/{iid}/frames/5/raw", 400),
        (f"/instances/{iid}/frames/5/matlab", 400),
        (f"/instances/{iid}/frames/5/numpy", 400),
        (f"/instances/{iid}/frames/x/numpy", 400),
        ("/instances/nope/numpy", 404),
        ("/instances/nope/matlab", 404),
        ("/series/nope/numpy", 404),
    ):
        r = client.get(path)
        assert r.status == status and r.json()["HttpStatus"] == status, path
    raw = client.get(f"/instances/{iid}/frames/0/raw")
    packed = client.get(f"/instances/{iid}/frames/0/raw.gz")
    assert packed.headers["content-type"] == "application/gzip" and gzip.decompress(packed.body) == raw.body
    assert len(raw.body) == 512 * 358 * 2


def test_numpy_shapes_and_series(client: Any) -> None:
    """As Orthanc's suite checks them: float32 rescaled values by default, the stored type with
    rescale=0, an .npz with compress, frames of a series in slice order."""
    a = _upload_suite(client, "Database/Brainix/Flair/IM-0001-0001.dcm")
    _upload_suite(client, "Database/Brainix/Flair/IM-0001-0002.dcm")
    ct = _upload_suite(client, "Database/Issue124.dcm")

    def load(path: str) -> Any:
        r = client.get(path)
        assert r.status == 200, path
        return np.load(io.BytesIO(r.body))

    c = load(f"/instances/{a}/frames/0/numpy")
    assert c.dtype == np.float32 and c.shape == (288, 288, 1) and c.max() == 536
    c = load(f"/instances/{a}/frames/0/numpy?rescale=0")
    assert c.dtype == np.uint16 and c.max() == 536
    c = load(f"/instances/{a}/numpy?rescale=1&compress=false")
    assert c.shape == (1, 288, 288, 1)
    series = client.get(f"/instances/{a}/series").json()["ID"]
    c = load(f"/series/{series}/numpy?rescale=true&compress=0")
    assert c.dtype == np.float32 and c.shape == (2, 288, 288, 1)
    npz = load(f"/instances/{a}/numpy?compress")
    assert list(npz.files) == ["arr_0"] and npz["arr_0"].shape == (1, 288, 288, 1)
    c = load(f"/instances/{ct}/frames/0/numpy")
    assert (c.min(), c.max()) == (-3024, 2374)  # Rescale Intercept -1024
    pet = _upload_suite(client, "Database/2020-11-16-SalimKanounAnonymization.dcm")
    stored = load(f"/instances/{pet}/numpy?rescale=0")
    rescaled = load(f"/instances/{pet}/numpy")
    # single precision slope * value + intercept, not floored (Orthanc 1.11 and later)
    assert np.array_equal(rescaled, np.float32(9.1475195822016) * stored.astype(np.float32))
    c = load(f"/instances/{ct}/frames/0/numpy?rescale=0")
    assert c.dtype == np.int16 and (c.min(), c.max()) == (-2000, 3398)


def test_rendered_windowing_and_resizing(client: Any) -> None:
    """Orthanc's /rendered: the file's (or the frame's) window unless given, 8-bit floor of
    the linear map, resized by nearest neighbour keeping the aspect ratio."""
    iid = _upload_suite(client, "Database/MultiframeWindowing.dcm")
    im = _image(client.get(f"/instances/{iid}/frames/0/rendered?window-center=127&window-width=256").body)
    assert [im[0, 0], im[0, 1], im[1, 0], im[1, 1]] == [0, 16, 32, 48]
    im = _image(client.get(f"/instances/{iid}/frames/0/rendered").body)  # the Frame VOI LUT
    assert [im[0, 0], im[0, 1], im[1, 0], im[1, 1]] == [95, 127, 159, 191]
    phenix = _upload_suite(client, "Database/Phenix/IM-0001-0001.dcm")
    assert Image.open(io.BytesIO(client.get(f"/instances/{phenix}/rendered?width=256").body)).size == (256, 179)
    assert Image.open(io.BytesIO(client.get(f"/instances/{phenix}/rendered?height=100&width=400").body)).size == (
        143,
        100,
    )


def _web_path(client: Any, iid: str) -> tuple[str, dict[str, str]]:
    tags = client.get(f"/instances/{iid}/tags?simplify").json()
    study, series, sop = tags["StudyInstanceUID"], tags["SeriesInstanceUID"], tags["SOPInstanceUID"]
    return f"/dicom-web/studies/{study}/series/{series}/instances/{sop}", tags


def test_dicomweb_rendered_as_the_plugin(client: Any) -> None:
    """DICOMweb /rendered: whole dynamics by default, the linear / linear-exact / sigmoid
    windows, viewport fitting, JPEG unless PNG is asked for; study and series show the first
    instance; WADO-URI images are Orthanc's /rendered."""
    iid = _upload_suite(client, "Database/MultiframeWindowing.dcm")
    path, _tags = _web_path(client, iid)
    png = {"Accept": "image/png"}
    for query, expected in (  # what Orthanc 1.10.1 with its DICOMweb plugin 1.7 answers
        ("window=127,256,linear", [1, 17, 33, 49]),
        ("window=0,256,linear-exact", [0, 16, 32, 48]),
        ("window=127,256,sigmoid", [31, 38, 47, 57]),
        ("", [0, 85, 170, 255]),
    ):
        im = _image(client.get(path + "/frames/1/rendered?" + query, headers=png).body)
        assert [im[0, 0], im[0, 1], im[1, 0], im[1, 1]] == expected, query
    assert client.get(path + "/frames/0/rendered").status == 400
    assert client.get(path + "/rendered", headers={"Accept": "image/gif"}).status == 400

    phenix = _upload_suite(client, "Database/Phenix/IM-0001-0001.dcm")
    path, tags = _web_path(client, phenix)
    default = client.get(path + "/rendered")
    assert default.headers["content-type"] == "image/jpeg"
    fitted = Image.open(io.BytesIO(client.get(path + "/rendered?viewport=100,100", headers=png).body))
    assert fitted.size == (100, 100)
    study = f"/dicom-web/studies/{tags['StudyInstanceUID']}"
    series = f"{study}/series/{tags['SeriesInstanceUID']}"
    one = client.get(path + "/rendered", headers=png).body
    assert client.get(series + "/rendered", headers=png).body == one
    assert client.get(study + "/rendered", headers=png).body == one
    wado = client.get(f"/wado?requestType=WADO&objectUID={tags['SOPInstanceUID']}&contentType=image/png")
    assert wado.body == client.get(f"/instances/{phenix}/rendered").body


def test_pydicom_samples_decode(client: Any) -> None:
    """Every pydicom sample Orthanc previews is previewed here too (a smoke test on files of
    each syntax and photometric interpretation, beyond the recorded table)."""
    for name in ("SC_rgb_rle_16bit.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPEG-LL.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        data = _pydicom_file(name)
        if data is None:
            continue
        iid = client.upload(data)["ID"]
        r = client.get(f"/instances/{iid}/preview")
        assert r.status == 200 and r.body[:4] == b"\x89PNG", name
        ds = pydicom.dcmread(io.BytesIO(data))
        assert _image(r.body).shape[:2] == (ds.Rows, ds.Columns)


def test_dicomweb_rendered_of_an_instance_without_pixels(client: Any) -> None:
    """An instance with no pixel data (a report, a plan): the DICOMweb plugin answers 400
    ParameterOutOfRange for /rendered (its frame index is out of range), not the core's 415."""
    import dicomgen

    up = client.upload(dicomgen.make(patient=30, rows=0, columns=0))
    tags = client.get(f"/instances/{up['ID']}/simplified-tags").json()
    assert "PixelData" not in tags
    study, series, sop = tags["StudyInstanceUID"], tags["SeriesInstanceUID"], tags["SOPInstanceUID"]
    r = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered")
    assert r.status == 400 and r.json()["OrthancError"] == "Parameter out of range"
