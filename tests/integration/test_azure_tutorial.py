"""The requests of the Azure DICOMweb cURL tutorial (shared/reference), replayed with the same
headers against orthanc_py, with only the base URL changed ({Service URL} = .../dicom-web)."""

from __future__ import annotations

import io
import uuid

import dicomgen
import pydicom
import pytest

STUDY = "1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420"
SERIES = "1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652"
INSTANCE = "1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395"
AUTH = {"Authorization": "Bearer some-token"}


def make(sop: str, series: str = SERIES, study: str = STUDY) -> bytes:
    return dicomgen.make(dicomgen.Spec(patient=42, study_uid=study, series_uid=series, sop_uid=sop, rows=8, columns=8))


def curl_form(files: list[bytes], boundary: str) -> bytes:
    """What `curl --form "file1=@x.dcm;type=application/dicom"` sends."""
    out = b""
    for i, data in enumerate(files, 1):
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file{i}"; filename="f{i}.dcm"\r\n'
                "Content-Type: application/dicom\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("base", ["/dicom-web/v1", "/dicom-web/v2", "/v1"])
def test_tutorial(client, base):
    """{Service URL} is http://host:port/dicom-web, or the server's root."""
    red, blue, green = make(INSTANCE), make(INSTANCE + ".1"), make(INSTANCE + ".2", series=SERIES + ".9")
    b = uuid.uuid4().hex
    # Store instances using multipart/related (curl adds the boundary to the given header)
    r = client.post(
        f"{base}/studies",
        curl_form([red], b),
        headers={
            "Accept": "application/dicom+json",
            **AUTH,
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={b}',
        },
    )
    assert r.status == 200, r.body
    assert r.json()["00081199"]["Value"][0]["00081155"]["Value"] == [INSTANCE]
    # Store instances for a specific study, and the variants of Content-Type the tutorial lists
    r = client.post(
        f"{base}/studies/{STUDY}",
        curl_form([blue], "ABCD1234"),
        headers={"Accept": "application/dicom+json", **AUTH, "Content-Type": "multipart/related; boundary=ABCD1234"},
    )
    assert r.status == 200, r.body
    r = client.post(
        f"{base}/studies",
        curl_form([green], "XYZ"),
        headers={"Accept": "application/dicom+json", **AUTH, "Content-Type": "multipart/related"},
    )
    assert r.status == 200, r.body
    # Store-single-instance (non-standard)
    single = make(INSTANCE + ".3")
    r = client.post(
        f"{base}/studies",
        single,
        headers={"Accept": "application/dicom+json", **AUTH, "Content-Type": "application/dicom"},
    )
    assert r.status == 200, r.body
    # Retrieve all instances within a study / a series, metadata, one instance, frames
    dicom_multi = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*', **AUTH}
    study = client.get(f"{base}/studies/{STUDY}", headers=dicom_multi)
    assert study.status == 200 and study.headers["content-type"].startswith("multipart/related")
    assert study.body.count(b"Content-Type: application/dicom") == 4
    meta = client.get(f"{base}/studies/{STUDY}/metadata", headers={"Accept": "application/dicom+json", **AUTH})
    assert len(meta.json()) == 4
    series = client.get(f"{base}/studies/{STUDY}/series/{SERIES}", headers=dicom_multi)
    assert series.body.count(b"Content-Type: application/dicom") == 3
    smeta = client.get(
        f"{base}/studies/{STUDY}/series/{SERIES}/metadata", headers={"Accept": "application/dicom+json", **AUTH}
    )
    assert len(smeta.json()) == 3
    inst_path = f"{base}/studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}"
    one = client.get(inst_path, headers={"Accept": "application/dicom; transfer-syntax=*", **AUTH})
    assert one.status == 200 and one.body == red
    imeta = client.get(inst_path + "/metadata", headers={"Accept": "application/dicom+json", **AUTH})
    assert imeta.json()[0]["00080018"]["Value"] == [INSTANCE]
    frames = client.get(
        inst_path + "/frames/1",
        headers={
            "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
            **AUTH,
        },
    )
    assert frames.status == 200 and pydicom.dcmread(io.BytesIO(red)).PixelData in frames.body
    # Query (QIDO)
    q = {"Accept": "application/dicom+json", **AUTH}
    assert len(client.get(f"{base}/studies?StudyInstanceUID={STUDY}", headers=q).json()) == 1
    assert len(client.get(f"{base}/series?SeriesInstanceUID={SERIES}", headers=q).json()) == 1
    assert len(client.get(f"{base}/studies/{STUDY}/series?SeriesInstanceUID={SERIES}", headers=q).json()) == 1
    assert len(client.get(f"{base}/instances?SOPInstanceUID={INSTANCE}", headers=q).json()) == 1
    assert len(client.get(f"{base}/studies/{STUDY}/instances?SOPInstanceUID={INSTANCE}", headers=q).json()) == 1
    path = f"{base}/studies/{STUDY}/series/{SERIES}/instances?SOPInstanceUID={INSTANCE}"
    assert len(client.get(path, headers=q).json()) == 1
    # Delete instance, series, study
    assert client.delete(inst_path, headers=AUTH).status == 204
    assert client.delete(f"{base}/studies/{STUDY}/series/{SERIES}", headers=AUTH).status == 204
    assert client.delete(f"{base}/studies/{STUDY}", headers=AUTH).status == 204
    assert client.get(f"{base}/studies?StudyInstanceUID={STUDY}", headers=q).json() == []
