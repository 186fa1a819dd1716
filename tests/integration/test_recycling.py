"""Recycling and protection (MaximumStorageSize, MaximumPatientCount, MaximumStorageMode).

The expected answers were checked against Orthanc 1.10.1 running the same scenarios; the
status of a refused store is 1.12's 507 (1.10.1 answered 500 with the same error body).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import dicomgen
import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]


def instance(patient: int, number: int = 0, rows: int = 16) -> bytes:
    return dicomgen.make(patient=patient, instance=number, patient_name=f"P{patient}", rows=rows, columns=rows)


def names(c: Any) -> list[str]:
    return sorted(p["MainDicomTags"]["PatientName"] for p in c.get("/patients?expand").json())


def stored_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and "sqlite" not in p.name and "index" not in p.name)


def full_storage(r: Any, details: str) -> None:
    assert r.status == 507, r.body
    body = r.json()
    assert body["HttpError"] == "Insufficient Storage" and body["OrthancStatus"] == 19
    assert body["Message"] == "The file storage is full" and body["Details"] == details


def test_patient_count_recycles_the_least_recently_fed_patient(make_server, tmp_path):
    srv = make_server({"MaximumPatientCount": 2})
    c = srv.client()
    ids = {p: c.upload(instance(p))["ParentPatient"] for p in (1, 2, 3)}
    assert names(c) == ["P2", "P3"]
    c.upload(instance(2, 1))  # P2 received an instance: now more recent than P3
    c.upload(instance(4))
    assert names(c) == ["P2", "P4"]
    assert c.put(f"/patients/{ids[2]}/protected", b"1").status == 200
    c.upload(instance(5))
    assert names(c) == ["P2", "P5"]  # the protected patient stays
    c.upload(instance(6))
    assert names(c) == ["P2", "P6"]
    # unprotected, P2 goes to the end of the order: P6 is older now
    assert c.put(f"/patients/{ids[2]}/protected", b"0").status == 200
    c.upload(instance(7))
    assert names(c) == ["P2", "P7"]
    stats = c.get("/statistics").json()
    assert stats["CountPatients"] == 2 and stats["CountInstances"] == 3
    # the recycled patients' files are gone from the disk with them
    assert stored_files(tmp_path / "s0" / "storage") == 3
    assert c.get(f"/patients/{ids[1]}").status == 404


def test_storage_size_recycling_and_full_storage(make_server, tmp_path):
    srv = make_server({"MaximumStorageSize": 1})  # MB of 1024 x 1024 bytes
    c = srv.client()
    for p in (1, 2, 3):
        c.upload(instance(p, rows=400))  # ~320 kB each
    assert names(c) == ["P1", "P2", "P3"]
    c.upload(instance(4, rows=400))
    assert names(c) == ["P2", "P3", "P4"]
    size = c.get("/statistics").json()["TotalDiskSize"]
    assert 0 < int(size) <= 1024 * 1024
    for pid in c.get("/patients").json():
        assert c.put(f"/patients/{pid}/protected", b"1").status == 200
    full_storage(c.post("/instances", instance(9, rows=400)), "Cannot recycle more patients")
    big = instance(10, rows=1100)
    full_storage(
        c.post("/instances", big),
        f"Cannot store an instance of size {len(big)} bytes in a storage area limited to 1048576",
    )
    assert names(c) == ["P2", "P3", "P4"]
    assert stored_files(tmp_path / "s0" / "storage") == 3  # the refused files were not kept
    assert c.get("/statistics").json()["TotalDiskSize"] == size


def test_reject_mode_refuses_instead_of_recycling(make_server):
    srv = make_server({"MaximumPatientCount": 2, "MaximumStorageMode": "Reject"})
    c = srv.client()
    assert c.get("/system").json()["MaximumStorageMode"] == "Reject"
    c.upload(instance(1))
    c.upload(instance(2))
    full_storage(c.post("/instances", instance(3)), "Maximum patient count reached")
    assert c.post("/instances", instance(2, 1)).status == 200  # an existing patient still grows
    assert names(c) == ["P1", "P2"]


def test_limits_lowered_between_runs_recycle_at_start(make_server, tmp_path):
    first = make_server({"StorageDirectory": str(tmp_path / "shared")})
    c = first.client()
    for p in (1, 2, 3):
        c.upload(instance(p))
    c.upload(instance(1, 1))  # P1 is now the most recent
    first.stop()
    second = make_server({"StorageDirectory": str(tmp_path / "shared"), "MaximumPatientCount": 1})
    assert names(second.client()) == ["P1"]


def test_totals_follow_attachments_added_replaced_and_deleted(client):
    """The disk size the limits check is a running total: it must equal the sum of the files."""
    iid = client.upload(instance(1, rows=64))["ID"]
    client.upload(instance(2, rows=64))

    def disk() -> int:
        return int(client.get("/statistics").json()["TotalDiskSize"])

    start = disk()
    assert client.put(f"/instances/{iid}/attachments/1025", b"x" * 1000).status == 200
    assert disk() == start + 1000
    r = client.put(f"/instances/{iid}/attachments/1025", b"y" * 10)  # replaces it
    assert r.status == 200, r.body
    assert disk() == start + 10
    assert client.delete(f"/instances/{iid}/attachments/1025").status == 200
    assert disk() == start
    sizes = {
        i: int(client.get(f"/instances/{i}/attachments/dicom/compressed-size").body)
        for i in client.get("/instances").json()
    }
    assert disk() == sum(sizes.values())
    assert client.delete(f"/instances/{iid}").status == 200
    assert disk() == sum(size for i, size in sizes.items() if i != iid)


def test_c_store_into_a_full_storage_is_out_of_resources(make_server):
    srv = make_server({"DicomServerEnabled": True, "DicomPort": 0, "DicomAet": "ORTHANCPY", "MaximumPatientCount": 1})
    c = srv.client()
    pid = c.upload(instance(1))["ParentPatient"]
    assert c.put(f"/patients/{pid}/protected", b"1").status == 200
    ae = AE(ae_title="SCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", srv.ctx.dicom_port, ae_title="ORTHANCPY")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(instance(2))))
        assert status.Status == 0xA700
        status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(instance(1, 1))))  # same patient: room
        assert status.Status == 0x0000
    finally:
        assoc.release()
    assert names(c) == ["P1"]


def stow(c: Any, *files: bytes) -> Any:
    boundary = "RECYCLINGBOUNDARY"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f + b"\r\n" for f in files)
    body += f"--{boundary}--\r\n".encode()
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return c.post("/dicom-web/studies", body, headers={"Content-Type": ctype, "Accept": "application/dicom+json"})


def test_stow_rs_into_a_full_storage(make_server):
    """As Orthanc's DICOMweb plugin: a refused part is listed with reason 0xA700 (out of
    resources); 400 when every part failed, 202 when some were stored."""
    srv = make_server({"MaximumPatientCount": 2, "MaximumStorageMode": "Reject"})
    c = srv.client()
    assert stow(c, instance(1)).status == 200
    r = stow(c, instance(2), instance(3))
    assert r.status == 202, r.body
    failed = r.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [0xA700]
    r = stow(c, instance(4))
    assert r.status == 400 and r.json()["00081198"]["Value"][0]["00081197"]["Value"][0] == 0xA700
    kept = names(c)  # the two parts of one request are stored concurrently: either may win
    assert len(kept) == 2 and "P1" in kept and "P4" not in kept
