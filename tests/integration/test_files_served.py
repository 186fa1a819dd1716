"""Files as served: /instances/{id}/file (Range ignored, as Orthanc 1.10.1 does), compressed
storage, WADO-RS multipart parts byte-equal to the stored files whether the answer is built in
one piece or streamed in batches, and previews pixel-equal to the pydicom decoding."""

from __future__ import annotations

import io
import warnings

import dicomgen
import numpy as np
import pytest
from PIL import Image

from orthanc_py.dicomweb import wado
from orthanc_py.imaging import render
from orthanc_py.storage.filesystem import FilesystemStorage

from .test_wado_syntax import DICOM_MP, parts, rle_instance


def _study(client, count: int, rows: int = 16) -> tuple[str, list[bytes]]:
    files = [dicomgen.make(patient=7, study=1, series=i % 2, instance=i, rows=rows, columns=rows) for i in range(count)]
    for data in files:
        client.upload(data)
    uid = client.get("/studies").json()
    info = client.get(f"/studies/{uid[0]}").json()
    return info["MainDicomTags"]["StudyInstanceUID"], files


@pytest.mark.parametrize("cached", [True, False], ids=["read on the loop", "read in a worker"])
def test_file_ignores_range_as_orthanc_does(client, monkeypatch, cached):
    if not cached:  # the page cache does not hold the file (or no RWF_NOWAIT): the worker reads it
        monkeypatch.setattr(FilesystemStorage, "read_cached", lambda *_a: None)
    data = dicomgen.make(patient=1, rows=8, columns=8)
    iid = client.upload(data)["ID"]
    uuid = client.get(f"/instances/{iid}/attachments/dicom/uuid").body.decode()
    for header in (None, "bytes=0-99", "bytes=-100", "bytes=100-", f"bytes={len(data) + 10}-", "items=0-5"):
        r = client.get(f"/instances/{iid}/file", headers={"Range": header} if header else {})
        assert (r.status, r.body) == (200, data), header
        assert r.headers["content-type"] == "application/dicom"
        assert r.headers["content-disposition"] == f'filename="{uuid}.dcm"'
        assert "content-range" not in r.headers
    assert client.get(f"/instances/{iid}/attachments/dicom/data").body == data
    assert client.get(f"/instances/{iid}/attachments/dicom/compressed-data").body == data
    assert client.get("/instances/nope/file").status == 404


def test_compressed_storage_serves_the_original_bytes(make_server):
    srv = make_server({"StorageCompression": True})
    c = srv.client()
    data = dicomgen.make(patient=2, rows=32, columns=32)
    iid = c.upload(data)["ID"]
    assert c.get(f"/instances/{iid}/attachments/dicom/is-compressed").body == b"1"
    assert c.get(f"/instances/{iid}/file").body == data
    assert c.get(f"/instances/{iid}/attachments/dicom/data").body == data
    r = c.get(f"/instances/{iid}/attachments/dicom/data", headers={"Range": "bytes=128-131"})
    assert (r.status, r.body, r.headers["content-range"]) == (206, b"DICM", f"bytes 128-131/{len(data)}")
    packed = c.get(f"/instances/{iid}/attachments/dicom/compressed-data").body
    assert packed != data and len(packed) == int(c.get(f"/instances/{iid}/attachments/dicom/compressed-size").body)
    study = c.get(f"/instances/{iid}/study").json()["MainDicomTags"]["StudyInstanceUID"]
    mp = c.get(f"/dicom-web/studies/{study}", headers={"Accept": DICOM_MP + "; transfer-syntax=*"})
    assert [body for _h, body in parts(mp)] == [data]
    png = np.asarray(Image.open(io.BytesIO(c.get(f"/instances/{iid}/preview").body)))
    assert png.shape == (32, 32)


@pytest.mark.parametrize("batch", [wado.BATCH_BYTES, 1, 20000])
def test_wado_rs_parts_are_the_stored_files(client, monkeypatch, batch):
    """One answer in memory (all files in one batch) or streamed (one or a few files a batch)."""
    monkeypatch.setattr(wado, "BATCH_BYTES", batch)
    uid, files = _study(client, 6)
    r = client.get(f"/dicom-web/studies/{uid}", headers={"Accept": DICOM_MP + "; transfer-syntax=*"})
    assert r.status == 200
    got = parts(r)
    assert sorted(body for _h, body in got) == sorted(files)
    for headers, body in got:
        assert headers["Content-Type"] == "application/dicom" and int(headers["Content-Length"]) == len(body)
    assert r.body.endswith(b"--\r\n")
    default = client.get(f"/dicom-web/studies/{uid}")  # Explicit VR Little Endian: stored as such
    assert sorted(body for _h, body in parts(default)) == sorted(files)


@pytest.mark.parametrize("batch", [wado.BATCH_BYTES, 1])
def test_wado_rs_transcodes_within_batches(client, monkeypatch, batch):
    """A compressed file among plain ones: decoded to Explicit VR Little Endian by default,
    sent as stored with transfer-syntax=*."""
    monkeypatch.setattr(wado, "BATCH_BYTES", batch)
    rle, ds = rle_instance(3)
    client.upload(rle)
    plain = dicomgen.make(patient=3, study=0, series=0, instance=9, rows=8, columns=8, study_uid=ds.StudyInstanceUID)
    client.upload(plain)
    uid = ds.StudyInstanceUID
    as_stored = parts(client.get(f"/dicom-web/studies/{uid}", headers={"Accept": DICOM_MP + "; transfer-syntax=*"}))
    assert sorted(b for _h, b in as_stored) == sorted([rle, plain])
    decoded = parts(client.get(f"/dicom-web/studies/{uid}"))
    assert len(decoded) == 2 and plain in [b for _h, b in decoded] and rle not in [b for _h, b in decoded]


def _decoded_preview(data: bytes, monkeypatch) -> np.ndarray:
    """The preview drawn by the general decoder (not the small-file reader)."""
    with monkeypatch.context() as m, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.setattr(render, "native_frame", lambda _d, _f: None)
        return np.asarray(Image.open(io.BytesIO(render.preview_png(data, 0))))


def test_previews_are_the_decoder_rendering(client, monkeypatch):
    from pydicom.data import get_testdata_file

    samples = [dicomgen.make(patient=4, rows=64, columns=64)]
    for name in ("CT_small.dcm", "MR_small.dcm", "SC_rgb_small_odd.dcm"):
        path = get_testdata_file(name)
        if path is not None:
            with open(path, "rb") as f:
                samples.append(f.read())
    for data in samples:
        answer = client.upload(data)
        r = client.get(f"/instances/{answer['ID']}/preview")
        assert r.status == 200 and r.headers["content-type"] == "image/png"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.body))), _decoded_preview(data, monkeypatch))
    iid = client.upload(samples[0])["ID"]
    assert client.get(f"/instances/{iid}/frames/1/preview").status == 404  # Orthanc's bare 404s
    assert client.get(f"/instances/{iid}/frames/x/preview").status == 404
    assert client.get("/instances/nope/frames/x/preview").status == 404


def test_wado_rs_parts_come_in_instance_order_whatever_the_level_of_the_url(client):
    """A study UID shared by two patients is two Orthanc studies: both are retrieved; parts come
    ordered by instance public ID, as an instance-level find orders them."""
    uid = "1.2.826.0.1.3680043.10.9999.1"
    files = [
        dicomgen.make(patient=p, study=0, series=s, instance=i, rows=8, columns=8, study_uid=uid)
        for p in (1, 2)
        for s in (0, 1)
        for i in (0, 1)
    ]
    ids = {client.upload(data)["ID"]: data for data in files}
    star = {"Accept": DICOM_MP + "; transfer-syntax=*"}
    got = [body for _h, body in parts(client.get(f"/dicom-web/studies/{uid}", headers=star))]
    assert got == [ids[i] for i in sorted(ids)]
    first = sorted(ids)[0]
    series_uid = client.get(f"/instances/{first}/series").json()["MainDicomTags"]["SeriesInstanceUID"]
    series = [body for _h, body in parts(client.get(f"/dicom-web/studies/{uid}/series/{series_uid}", headers=star))]
    assert series == [d for i, d in sorted(ids.items()) if series_uid.encode() in d] and len(series) == 2
    assert client.get("/dicom-web/studies/1.2.3.4.5.6").status == 404
