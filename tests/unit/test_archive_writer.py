"""core.archive's ZIP writer on a non-seekable output: names, ZIP64 past 65,535 members, and
the folder naming rules, without a server."""

from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace
from typing import Any

from orthanc_py.core import archive
from orthanc_py.core.files import InstanceFile


class Storage:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, uuid: str, content_type: int) -> bytes:
        return self.files[uuid]

    def path(self, uuid: str, content_type: int) -> None:
        return None


class Pipe:
    """Write-only, not seekable (like an HTTP answer)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def write(self, data: Any) -> int:
        return self.buf.write(data)

    def flush(self) -> None:
        pass


def plan_of(count: int, size: int = 10) -> tuple[Any, archive.ArchivePlan]:
    files = {f"u{i}": bytes([i % 251]) * size for i in range(count)}
    members = [archive.Member(f"d/{i}.dcm", InstanceFile(i, f"p{i}", f"u{i}", size)) for i in range(count)]
    ctx = SimpleNamespace(storage=Storage(files))
    return ctx, archive.ArchivePlan(members, media=False)


def test_non_seekable_output_reads_back():
    ctx, plan = plan_of(50, 100_000)
    out = Pipe()
    assert archive.write_zip(ctx, plan, out, archive.WriteOptions()) == 50  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(out.buf.getvalue())) as zf:
        assert zf.testzip() is None
        assert zf.comment == b"Created by Orthanc"
        assert zf.read("d/7.dcm") == bytes([7]) * 100_000
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())


def test_zip64_past_65535_members():
    ctx, plan = plan_of(65_600)
    out = Pipe()
    archive.write_zip(ctx, plan, out, archive.WriteOptions())  # type: ignore[arg-type]
    body = out.buf.getvalue()
    assert b"PK\x06\x06" in body[-200:]  # the ZIP64 end of central directory record
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
        assert len(names) == 65_600 and zf.read(names[-1]) == bytes([65_599 % 251]) * 10


def test_names():
    assert archive.keep_alphanumeric("Dupont^Jean  -  (x)/y") == "Dupont Jean xy"
    assert archive.to_ascii("crâne\x01") == "crne"
    assert archive.instance_format("")(3) == "00000003.dcm"
    assert archive.instance_format("m")(3) == "M0000003.dcm"
    assert archive.instance_format("CT")(12) == "CT000012.dcm"
    folders = archive._Folders()
    folders.open("A")
    assert folders.file("x.dcm") == "A/x.dcm"
    assert folders.file("x.dcm") == "A/x.dcm-2"  # Orthanc appends the counter to the name
    folders.close()
    folders.open("A")
    assert folders.file("y") == "A-2/y"
