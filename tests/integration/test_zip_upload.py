"""POST /instances with hostile ZIP archives: refused (400, nothing stored) or stored partially
with a clear answer, fast, with bounded memory; never a 5xx or a hang."""

from __future__ import annotations

import io
import struct
import time
import zipfile
import zlib

import dicomgen
import pytest

from orthanc_py.core import archive, zipinput


def dicom(i: int) -> bytes:
    return dicomgen.make(patient=50, instance=i, rows=8, columns=8)


def build(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def post(client, body: bytes):
    start = time.monotonic()
    r = client.post("/instances", body)
    return r, time.monotonic() - start


def test_one_gib_of_zeros_in_one_megabyte_is_refused_at_once(client):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("bomb.dcm", "w", force_zip64=True) as f:
            archive._fast_deflate(f)  # ISA-L builds it in 0.1 s where zlib takes 5 s
            zero = bytes(1 << 24)
            for _ in range(64):
                f.write(zero)
        zf.writestr("ok.dcm", dicom(0))
    body = buf.getvalue()
    assert len(body) < 6 << 20
    r, seconds = post(client, body)
    assert r.status == 400 and seconds < 2
    assert "ZIP bomb" in r.json()["Details"]
    assert client.get("/instances").json() == []  # refused whole, nothing stored


def test_overlapping_entries_declaring_terabytes_are_refused(client):
    """Fifield's non-recursive bomb: many central directory entries that all point at the same
    compressed kernel, each declaring what it would inflate to."""
    kernel = zlib.compressobj(9, zlib.DEFLATED, -15)
    size = 1 << 26
    data = kernel.compress(bytes(size)) + kernel.flush()
    crc = zlib.crc32(bytes(size))
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), size, 5, 0) + b"a.dcm" + data
    central = b""
    count = 200
    for i in range(count):
        name = f"{i:05d}.dcm".encode()
        central += (
            struct.pack(
                "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0, 0, 0, 0, 0, 0
            )
            + name
        )
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    body = local + central + eocd
    r, seconds = post(client, body)
    assert r.status == 400 and seconds < 2, r.body
    assert client.get("/instances").json() == []


def test_too_many_entries_are_refused_before_the_directory_is_read(client, monkeypatch):
    monkeypatch.setattr(zipinput, "MAX_ENTRIES", 100)
    body = build([(f"{i}.txt", b"x") for i in range(101)])
    r, _seconds = post(client, body)
    assert r.status == 400 and "101 members" in r.json()["Details"]
    assert zipinput.declared_entries(body) == 101


def test_many_tiny_entries_are_skipped_fast(client):
    members = [(f"tiny/{i}.txt", b"%d" % i) for i in range(20000)] + [("real.dcm", dicom(1))]
    r, seconds = post(client, build(members))
    assert r.status == 200 and seconds < 10
    assert [a["Status"] for a in r.json()] == ["Success"]


def test_nested_archives_are_not_opened(client):
    inner = build([("inner.dcm", dicom(2))])
    r, _ = post(client, build([("nested.zip", inner), ("outer.dcm", dicom(3))]))
    assert r.status == 200 and len(r.json()) == 1  # outer.dcm only
    assert len(client.get("/instances").json()) == 1


def corrupt(body: bytes, name: str) -> bytes:
    """Flip bytes in the middle of a member's compressed data."""
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        info = zf.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    mid = start + info.compress_size // 2
    data = bytearray(body)
    for k in range(mid, min(mid + 64, start + info.compress_size)):
        data[k] ^= 0xA5
    return bytes(data)


def test_corrupt_deflate_stops_with_what_was_stored(client):
    body = build([("a.dcm", dicom(10)), ("b.dcm", dicom(11)), ("c.dcm", dicom(12))])
    r, seconds = post(client, corrupt(body, "b.dcm"))
    assert r.status == 400 and seconds < 2
    details = r.json()["Details"]
    assert '"b.dcm"' in details and "1 instance(s)" in details
    assert len(client.get("/instances").json()) == 1  # a.dcm, stored before b.dcm


def test_a_member_longer_than_declared_is_cut_and_refused(client):
    body = build([("a.dcm", dicom(20))])
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        info = zf.getinfo("a.dcm")
    real = info.file_size
    lie = struct.pack("<L", 100)
    data = bytearray(body)
    data[info.header_offset + 22 : info.header_offset + 26] = lie  # local header
    cd = body.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = lie  # central directory
    r, _ = post(client, bytes(data))
    assert r.status == 400 and real > 100
    assert client.get("/instances").json() == []


@pytest.mark.parametrize("body", [b"PK\x03\x04" + b"\0" * 100, b"PK\x03\x04garbage"])
def test_broken_archives_are_bad_requests(client, body):
    r, _ = post(client, body)
    assert r.status == 400 and r.json()["OrthancError"] == "Bad file format"


def test_a_large_member_that_is_not_dicom_is_not_inflated(client):
    """Under the bomb bounds (256 MiB of zeros in ~256 KB) but not DICOM: skipped after its
    first bytes, not inflated whole."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("zeros.bin", "w") as f:
            archive._fast_deflate(f)
            zero = bytes(1 << 24)
            for _ in range(16):
                f.write(zero)
        zf.writestr("ok.dcm", dicom(30))
    r, seconds = post(client, buf.getvalue())
    assert r.status == 200 and seconds < 0.5
    assert [a["Status"] for a in r.json()] == ["Success"]
