"""The WebDAV tree compared with the real Orthanc's for the same files: every folder's PROPFIND
(the XML byte for byte, times and the size of the JSON files masked), the status of odd paths,
and the DICOM files served.

Runs when Orthanc is installed (`apt-get install orthanc`): the conformance datasets go to both
servers, then the whole tree is walked on both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.conformance.real_orthanc import ORTHANC, real_orthanc, upload_datasets
from tests.conftest import free_ports

pytestmark = pytest.mark.skipif(not os.path.exists(ORTHANC), reason="the real Orthanc is not installed")

_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_JSON_SIZE = re.compile(rb"(<D:displayname>(?:study|series)\.json</D:displayname>.*?<D:getcontentlength>)\d+", re.S)
_HREF = re.compile(rb"<D:href>([^<]*)</D:href>")


@pytest.fixture(scope="module", params=[{}, {"LimitFindResults": 2, "LimitFindInstances": 3}], ids=["", "limits"])
def servers(tmp_path_factory: Any, request: Any) -> Any:
    """Both servers with the same data; the second pair with Orthanc's lookup limits (which
    bound `by-uids`, and the studies of a month in `by-dates`)."""
    from tests.conftest import RunningServer

    limits: dict[str, int] = request.param
    base = tmp_path_factory.mktemp("webdav")
    http, dicom = free_ports(2)
    config = {
        "Name": "Oracle",
        "HttpPort": http,
        "DicomPort": dicom,
        "Plugins": [],
        "RemoteAccessAllowed": False,
        "WebDavEnabled": True,
        "WebDavDeleteAllowed": False,
        "WebDavUploadAllowed": True,
        **limits,
    }
    with real_orthanc(base, config) as url:
        ours = RunningServer(limits, base / "ours")
        try:
            upload_datasets(url, ours.client())
            yield url, f"http://127.0.0.1:{ours.port}"
        finally:
            ours.stop()
    shutil.rmtree(base, ignore_errors=True)


def call(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url + quote(path), method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def masked(body: bytes) -> bytes:
    return _JSON_SIZE.sub(rb"\1N", _TIME.sub(b"TIME", body))


def test_whole_tree_as_orthanc(servers: Any) -> None:
    oracle, ours = servers
    pending = ["/webdav/"]
    seen_files = seen_json = 0
    walked = 0
    while pending and walked < 200:
        path = pending.pop(0)
        walked += 1
        for depth in ("0", "1"):
            expected = call(oracle, "PROPFIND", path, {"Depth": depth})
            got = call(ours, "PROPFIND", path, {"Depth": depth})
            assert got[0] == expected[0] == 207, path
            assert masked(got[1]).decode().splitlines() == masked(expected[1]).decode().splitlines(), path
        hrefs = [unquote(h.decode()) for h in _HREF.findall(expected[1])][1:]
        for href, response in zip(hrefs, expected[1].split(b"<D:response>")[2:], strict=True):
            if b"<D:collection />" in response:
                pending.append(href)
            elif href.endswith(".dcm") and seen_files < 20:
                seen_files += 1
                assert call(ours, "GET", href) == call(oracle, "GET", href), href
            elif href.endswith(".json"):
                seen_json += 1
                assert same_json(call(ours, "GET", href)[1], call(oracle, "GET", href)[1]), href
    assert walked > 20 and seen_files > 5 and seen_json > 5


_VOLATILE = re.compile(rb'("(?:IsStable|LastUpdate)" : )[^,\r]*')


def same_json(ours: bytes, oracle: bytes) -> bool:
    """`study.json`/`series.json` byte for byte, but for the labels (the REST API of Orthanc 1.12
    answers them; 1.10.1 has none) and the times of each server's own uploads."""
    ours = ours.replace(b'\t"Labels" : [],\r\n', b"")
    return _VOLATILE.sub(rb"\1X", ours) == _VOLATILE.sub(rb"\1X", oracle)


ODD_PATHS = [
    ("PROPFIND", "/webdav/by-patients/nobody/x/y"),
    ("PROPFIND", "/webdav/by-uids/1.2.3/4.5"),
    ("PROPFIND", "/webdav/by-uids/1.2.3/4.5/6.7"),
    ("PROPFIND", "/webdav/by-uids/1.2.3/study.json"),
    ("PROPFIND", "/webdav/by-dates/2030"),
    ("PROPFIND", "/webdav/by-dates/2020/2020-13"),
    ("PROPFIND", "/webdav/by-dates/20201"),
    ("PROPFIND", "/webdav/by-dates/2020/foo"),
    ("PROPFIND", "/webdav/uploads/none"),
    ("PROPFIND", "/webdav/nothing"),
    ("GET", "/webdav"),
    ("GET", "/webdav/by-patients"),
    ("GET", "/webdav/uploads"),
    ("GET", "/webdav/nothing"),
    ("OPTIONS", "/webdav/by-studies"),
    ("DELETE", "/webdav/by-uids/1.2.3"),
    ("DELETE", "/webdav/uploads"),
    ("MKCOL", "/webdav/by-patients/x"),
    ("PUT", "/webdav/by-patients/x"),
    ("PROPFIND", "/patients"),
    ("OPTIONS", "/patients"),
    ("UNLOCK", "/webdav/x"),
]


@pytest.mark.parametrize(("method", "path"), ODD_PATHS)
def test_statuses_as_orthanc(servers: Any, method: str, path: str) -> None:
    oracle, ours = servers
    headers = {"Depth": "1"} if method == "PROPFIND" else {}
    expected, got = call(oracle, method, path, headers), call(ours, method, path, headers)
    assert got[0] == expected[0]
    if expected[0] == 207:
        assert masked(got[1]) == masked(expected[1])


def _names(url: str, path: str) -> list[str]:
    status, body = call(url, "PROPFIND", path, {"Depth": "1"})
    assert status == 207
    return [unquote(h.decode()) for h in _HREF.findall(body)][1:]


def _instances(url: str) -> list[str]:
    with urllib.request.urlopen(url + "/instances", timeout=30) as r:
        return sorted(json.loads(r.read()))


def test_deletions_as_orthanc(tmp_path: Any) -> None:
    """With WebDavDeleteAllowed, the same DELETEs leave the same instances on both servers."""
    from tests.conftest import RunningServer

    http, dicom = free_ports(2)
    config = {"HttpPort": http, "DicomPort": dicom, "Plugins": [], "WebDavDeleteAllowed": True}
    with real_orthanc(tmp_path, config) as oracle:
        server = RunningServer({"WebDavDeleteAllowed": True}, tmp_path / "ours")
        try:
            upload_datasets(oracle, server.client())
            ours = f"http://127.0.0.1:{server.port}"
            patient = _names(oracle, "/webdav/by-patients/")[0]
            study = _names(oracle, patient)[0]
            series = _names(oracle, study)[0]
            instance = _names(oracle, series)[0]
            year = _names(oracle, "/webdav/by-dates/")[-1]
            month = _names(oracle, year)[0]
            uid_study = _names(oracle, "/webdav/by-uids/")[0]
            steps = [
                instance,
                instance,  # gone: 403 on both
                series + "/nothing.txt",
                series,
                month,
                uid_study + "/study.json",
                uid_study,
                "/webdav/by-studies/nobody",
                patient,
            ]
            for path in steps:
                assert call(ours, "DELETE", path)[0] == call(oracle, "DELETE", path)[0], path
                assert _instances(ours) == _instances(oracle), path
            assert _instances(ours)  # something is left to compare
        finally:
            server.stop()
