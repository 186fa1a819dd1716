"""Send what we store (issue 19): every file ingest accepts goes out again element-equal, by
C-STORE (to DCMTK's storescp and to another orthanc_py), /file, WADO-RS and C-GET; store jobs
report the truth; a real Orthanc receives what a new user sends."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet, Verification, uid_to_service_class

from orthanc_py.model.wire import body_offset
from tests.conformance.real_orthanc import ORTHANC, real_orthanc
from tests.conftest import RunningServer, free_ports

STORESCP = "/usr/bin/storescp"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


# --- what "element-equal" means -------------------------------------------------------------


def read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True)


def flat(ds: Dataset, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    """Every element (nested ones by path) with its value; group 0002 is the file's, not the dataset's."""
    out: dict[tuple[Any, ...], Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag in list(ds.keys()):
            if tag.group == 0x0002:
                continue
            elem = ds[tag]
            key = (*prefix, int(tag))
            if elem.VR == "SQ":
                out[key] = ("SQ", len(elem.value))
                for i, item in enumerate(elem.value):
                    out.update(flat(item, (*key, i)))
            else:
                value = elem.value
                out[key] = bytes(value) if isinstance(value, bytes | bytearray) else str(value)
    return out


def syntax_of(ds: Dataset) -> str:
    """The transfer syntax a file read by pydicom is really in (its meta may say otherwise)."""
    implicit, little = ds.original_encoding
    declared = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if declared and declared != "1.2.840.10008.1.2.1.99":
        uid = pydicom.uid.UID(declared)
        if uid.is_transfer_syntax and (uid.is_implicit_VR, uid.is_little_endian) == (implicit, little):
            return declared
    elif declared:
        return declared
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def assert_same(got: Dataset, original: Dataset, how: str) -> None:
    """Element-equal. When the receiver did not take the stored transfer syntax (the sender then
    transcodes, as Orthanc does), group lengths are the writer's and the pixels are compared
    decoded."""
    a, b = flat(got), flat(original)
    transcoded = syntax_of(got) != syntax_of(original)
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if transcoded:
        diff = [k for k in diff if len(k) != 1 or (k[0] & 0xFFFF and k[0] != 0x7FE00010)]
        if 0x7FE00010 in original:
            for ds in (got, original):
                if not hasattr(ds, "file_meta"):
                    ds.file_meta = FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = syntax_of(ds)
            assert (got.pixel_array == original.pixel_array).all(), f"{how}: pixels differ"
    assert not diff, f"{how}: {len(diff)} elements differ, first {diff[:3]}"


# --- the files ingest accepts ----------------------------------------------------------------


def _without_meta(data: bytes) -> bytes:
    return data[body_offset(data) :]


def _rewritten(data: bytes, **meta: str) -> bytes:
    """The same dataset bytes behind another File Meta Information (no preamble)."""
    fm = FileMetaDataset()
    for k, v in meta.items():
        setattr(fm, k, v)
    out = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(pydicom.filebase.DicomFileLike(out), fm, enforce_standard=False)
    return out.getvalue() + _without_meta(data)


def _generated(ts: str, private: bool = True) -> bytes:
    """A small MR image with a private block, written by pydicom in `ts`."""
    ds = Dataset()
    ds.SOPClassUID = MR_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "SEND-" + ts[-3:]
    ds.PatientName = "Send^Stored"
    ds.Modality = "MR"
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    if private:
        block = ds.private_block(0x0029, "ORTHANC_PY SEND", create=True)
        block.add_new(0x10, "LO", "private value")
        block.add_new(0x11, "US", 7)
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = MR_IMAGE
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = ts
    ds.file_meta = fm
    out = io.BytesIO()
    uid = pydicom.uid.UID(ts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(
            out, ds, implicit_vr=uid.is_implicit_VR, little_endian=uid.is_little_endian, enforce_file_format=True
        )
    return out.getvalue()


TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"  # the bundled ones: no download


def _pydicom_files() -> list[str]:
    return sorted(str(f) for f in TEST_FILES.glob("*.dcm"))


def variants() -> Iterator[tuple[str, bytes]]:
    """Representative files: every encoding x every way of writing the file header."""
    for ts in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian):
        data = _generated(ts)
        name = pydicom.uid.UID(ts).name.replace(" ", "")
        yield f"gen-{name}", data
        yield f"gen-{name}-no-preamble", data[132:]
        yield (
            f"gen-{name}-meta-disagrees",
            _rewritten(
                data,
                MediaStorageSOPClassUID="1.2.3",
                MediaStorageSOPInstanceUID=generate_uid(),
                TransferSyntaxUID=ts,
            ),
        )
        yield f"gen-{name}-partial-meta", _rewritten(data, TransferSyntaxUID=ts)
        if ts != ExplicitVRBigEndian:  # without meta only little endian can be recognised
            yield f"gen-{name}-no-meta", _without_meta(data)
    for f in ("JPEG2000.dcm", "SC_rgb_rle.dcm", "image_dfl.dcm", "JPEG-lossy.dcm", "rtplan.dcm"):
        data = (TEST_FILES / f).read_bytes()
        yield f, data
        yield f"{f}-no-preamble", data[132:]


# --- the peers -------------------------------------------------------------------------------


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Peers:
    """Our server A (the sender), a second orthanc_py B and a DCMTK storescp (receivers)."""

    def __init__(self, base: Path) -> None:
        self.received = base / "storescp"
        self.received.mkdir()
        self.storescp_port, self.b_dicom, self.a_dicom = free_ports(3)
        self.storescp = subprocess.Popen(
            [STORESCP, "+xa", "+B", "-aet", "DCMTKSCP", "-od", str(self.received), str(self.storescp_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.b = RunningServer(
            {
                "DicomServerEnabled": True,
                "DicomAet": "ORTHANCB",
                "DicomPort": self.b_dicom,
            },
            base / "b",
        )
        self.a = RunningServer(
            {
                "DicomServerEnabled": True,
                "DicomPort": self.a_dicom,
                "DicomModalities": {
                    "dcmtk": ["DCMTKSCP", "127.0.0.1", self.storescp_port],
                    "b": ["ORTHANCB", "127.0.0.1", self.b_dicom],
                    "getter": ["GETSCU", "127.0.0.1", 1],
                    "mover": ["MOVESCU", "127.0.0.1", 1],
                },
                "DicomAssociationCloseDelay": 0,
            },
            base / "a",
        )
        self.a_client, self.b_client = self.a.client(), self.b.client()  # one connection each
        _wait_port(self.storescp_port)

    def close(self) -> None:
        self.a.stop()
        self.b.stop()
        self.storescp.terminate()
        self.storescp.wait(10)


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    if not os.path.exists(STORESCP):
        pytest.skip("DCMTK not installed (apt-get install dcmtk)")
    p = Peers(tmp_path_factory.mktemp("send"))
    yield p
    p.close()


def _wado(c: Any, study: str, series: str, sop: str) -> bytes:
    r = c.get(
        f"/dicom-web/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert r.status == 200, r.body[:200]
    boundary = r.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    parts = [p for p in r.body.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    assert len(parts) == 1
    return parts[0].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")


def _c_get(port: int, ds: Dataset) -> list[Dataset]:
    got: list[Dataset] = []

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = event.context.transfer_syntax
        got.append(ds)
        return 0x0000

    ts = syntax_of(ds)
    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    # the stored syntax in a context of its own (the SCP prefers Explicit VR Little Endian
    # when a context offers several), so what comes back is the file as stored
    ae.add_requested_context(ds.SOPClassUID, [ts])
    if ts != ExplicitVRLittleEndian:
        ae.add_requested_context(ds.SOPClassUID, [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ext_neg=[build_role(ds.SOPClassUID, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = ds.StudyInstanceUID
    query.SeriesInstanceUID = ds.SeriesInstanceUID
    query.SOPInstanceUID = ds.SOPInstanceUID
    statuses = [s.Status for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
    return got


def check_round_trips(peers: Peers, data: bytes) -> None:
    """Store `data` in A, then get it back every way; each answer is element-equal to it."""
    a, b = peers.a_client, peers.b_client
    original = read(data)
    r = a.post("/instances", data)
    if r.status != 200:  # a file ingest refuses: refused cleanly (4xx), with Orthanc's error body
        assert r.status in (400, 404) and r.json()["HttpStatus"] == r.status, r.body[:200]
        return
    iid = r.json()["ID"]
    try:
        assert_same(read(a.get(f"/instances/{iid}/file").body), original, "/file")
        assert_same(
            read(_wado(a, original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID)),
            original,
            "WADO-RS",
        )
        if "SOPClassUID" not in original:
            return  # no C-STORE can carry a dataset without SOP class (Orthanc cannot send it either)
        if isinstance(uid_to_service_class(original.SOPClassUID), StorageServiceClass):
            # storescp takes the standard storage classes only
            r = a.post("/modalities/dcmtk/store", iid)
            assert r.status == 200, r.body
            assert r.json()["FailedInstancesCount"] == 0
            files = list(peers.received.iterdir())
            assert len(files) == 1
            received = files[0].read_bytes()
            got = read(received)
            assert_same(got, original, "C-STORE to storescp")
            if syntax_of(got) == syntax_of(original):
                # storescp +B writes the dataset exactly as it came: the stored bytes went on
                # the wire (a deflated stream gets the pad byte PS3.5 requires for an even length)
                sent = _without_meta(data)
                assert _without_meta(received) in (sent, sent + b"\x00"), "C-STORE is not byte-faithful"
            # orthanc_py, as Orthanc with UnknownSopClassAccepted off, takes the standard classes
            r = a.post("/modalities/b/store", {"Resources": [iid], "Synchronous": True})
            assert r.status == 200, r.body
            assert_same(read(b.get(f"/instances/{iid}/file").body), original, "C-STORE to orthanc_py")
            got = _c_get(peers.a_dicom, original)
            assert len(got) == 1
            assert_same(got[0], original, "C-GET")
    finally:
        a.delete(f"/instances/{iid}")
        b.delete(f"/instances/{iid}")
        for f in peers.received.iterdir():
            f.unlink()


VARIANTS = dict(variants())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_kind_of_file_goes_out_element_equal(peers: Peers, name: str) -> None:
    check_round_trips(peers, VARIANTS[name])


@pytest.mark.slow
@pytest.mark.parametrize("path", _pydicom_files(), ids=lambda p: Path(p).name)
def test_pydicom_test_files_go_out_element_equal(peers: Peers, path: str) -> None:
    check_round_trips(peers, Path(path).read_bytes())


ORTHANC_TESTS = Path(os.environ.get("ORTHANC_TESTS_MIRROR", "/work/.mirror/orthanc-mirrors+orthanc-tests/repo"))


def _orthanc_tests_files() -> list[str]:
    """The sample files of Orthanc's integration suite (when its repository is at hand), up to
    2 MB each to keep the run short."""
    if not ORTHANC_TESTS.is_dir():
        return []
    listing = subprocess.run(
        ["git", "--git-dir", str(ORTHANC_TESTS), "ls-tree", "-r", "-l", "HEAD", "Database"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    out = []
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        size = meta.split()[3]
        if size.isdigit() and int(size) <= 2_000_000 and not path.lower().endswith(_NOT_DICOM):
            out.append(path)
    return out


_NOT_DICOM = (".json", ".txt", ".png", ".jpg", ".jpeg", ".lua", ".py", ".xml", ".zip", ".gz", ".md", ".html", ".pdf")


@pytest.mark.slow
@pytest.mark.parametrize("path", _orthanc_tests_files())
def test_orthanc_tests_files_go_out_element_equal(peers: Peers, path: str) -> None:
    data = subprocess.run(
        ["git", "--git-dir", str(ORTHANC_TESTS), "show", f"HEAD:{path}"], capture_output=True, check=True
    ).stdout
    check_round_trips(peers, data)


def test_c_move_sends_a_file_without_preamble_as_stored(peers: Peers) -> None:
    """The C-STORE sub-operations of a C-MOVE read the file as ingest accepted it."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    data = _user_mr(generate_uid(), generate_uid(), 1)
    original = read(data)
    iid = peers.a_client.upload(data)["ID"]
    try:
        ae = AE(ae_title="MOVESCU")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", peers.a_dicom)
        assert assoc.is_established
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = original.StudyInstanceUID
        statuses = [
            s.Status for s, _ in assoc.send_c_move(query, "DCMTKSCP", StudyRootQueryRetrieveInformationModelMove)
        ]
        assoc.release()
        assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
        deadline = time.monotonic() + 10
        while not list(peers.received.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        (received,) = list(peers.received.iterdir())
        got = received.read_bytes()
        assert_same(read(got), original, "C-MOVE")
        # the C-STORE named the instance by the dataset's UID, not by the stored meta's
        assert read(got).file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
        assert _without_meta(got) == _without_meta(data)
    finally:
        peers.a_client.delete(f"/instances/{iid}")
        for f in peers.received.iterdir():
            f.unlink()


# --- jobs report the truth -------------------------------------------------------------------


def test_a_refused_instance_fails_the_store_as_orthanc(make_server: Any) -> None:
    """Orthanc 1.10.1: the synchronous store is a 500 NetworkProtocol with the DIMSE status; the
    job is Failure with ErrorCode 9 and the same details, its content kept; Permissive goes on."""
    ae = AE(ae_title="FAILSCP")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    refusing = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0xA700)])
    try:
        srv = make_server({"DicomModalities": {"fail": ["FAILSCP", "127.0.0.1", refusing.server_address[1]]}})
        c = srv.client()
        ids = sorted(c.upload(_generated(ExplicitVRLittleEndian))["ID"] for _ in range(2))
        details = 'C-STORE SCU to AET "FAILSCP" has failed with DIMSE status 0xA700'
        r = c.post("/modalities/fail/store", ids)
        assert r.status == 500
        assert r.json()["OrthancStatus"] == 9 and r.json()["Details"] == details
        # Orthanc 1.12.10: the DIMSE status as an error payload
        assert r.json()["ErrorPayload"] == {"Content": {"DimseErrorStatus": 0xA700}, "Type": "Dimse"}
        job_id = c.post("/modalities/fail/store", {"Resources": ids, "Asynchronous": True}).json()["ID"]
        job = _wait_job(c, job_id)
        assert job["State"] == "Failure"
        assert (job["ErrorCode"], job["ErrorDescription"], job["ErrorDetails"]) == (
            9,
            "Error in the network protocol",
            details,
        )
        assert job["Content"]["InstancesCount"] == 2 and job["Content"]["ParentResources"] == ids
        assert job["Content"]["RemoteAet"] == "FAILSCP" and job["Content"]["FailedInstancesCount"] == 0
        job_id = c.post("/modalities/fail/store", {"Resources": ids, "Asynchronous": True, "Permissive": True})
        job = _wait_job(c, job_id.json()["ID"])
        assert job["State"] == "Success" and job["Content"]["FailedInstancesCount"] == 2
    finally:
        refusing.shutdown()


def _wait_job(c: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = c.get(f"/jobs/{job_id}").json()
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end")


# --- the new user's scenario, against the real Orthanc ---------------------------------------


def _user_mr(study: str, series: str, number: int) -> bytes:
    """What the issue's user writes with pydicom: no preamble, and a File Meta Information whose
    MediaStorageSOPInstanceUID is not the dataset's SOPInstanceUID."""
    ds = Dataset()
    ds.SOPClassUID = MR_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName, ds.Modality = "USER19", "New^User", "MR"
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.SamplesPerPixel, ds.PixelRepresentation = 15, 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(128)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=False, implicit_vr=False, little_endian=True)
    data = out.getvalue()
    assert data[128:132] != b"DICM" and data[:2] == b"\x02\x00"
    return data


@pytest.mark.skipif(not os.path.exists(ORTHANC), reason="the real Orthanc is not installed")
def test_a_new_user_sends_a_study_to_a_real_orthanc(make_server: Any, tmp_path: Path) -> None:
    import urllib.request

    http, dicom = free_ports(2)
    config = {
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "REAL",
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
    }
    with real_orthanc(tmp_path, config) as url:
        srv = make_server({"DicomModalities": {"real": ["REAL", "127.0.0.1", dicom]}})
        c = srv.client()
        study, series = generate_uid(), generate_uid()
        files = [_user_mr(study, series, n) for n in (1, 2)]
        uploaded = [c.upload(f) for f in files]
        study_id = uploaded[0]["ParentStudy"]

        def fetch(path: str, method: str = "GET") -> bytes:
            with urllib.request.urlopen(urllib.request.Request(url + path, method=method)) as answer:
                return bytes(answer.read())

        def real(path: str) -> Any:
            return json.loads(fetch(path))

        r = c.post("/modalities/real/store", [study_id])
        assert r.status == 200, r.body
        body = r.json()
        assert (body["InstancesCount"], body["FailedInstancesCount"], body["RemoteAet"]) == (2, 0, "REAL")
        assert body["ParentResources"] == [study_id] and body["Description"] == "REST API"
        assert sorted(real("/instances")) == sorted(u["ID"] for u in uploaded)
        for u, f in zip(uploaded, files, strict=True):
            got = fetch(f"/instances/{u['ID']}/file")
            assert_same(read(got), read(f), "real Orthanc")
        fetch(f"/studies/{study_id}", "DELETE")

        r = c.post("/modalities/real/store", {"Resources": [study_id], "Asynchronous": True})
        job = _wait_job(c, r.json()["ID"])
        assert job["State"] == "Success" and job["ErrorCode"] == 0, job
        assert job["Content"]["InstancesCount"] == 2 and job["Content"]["FailedInstancesCount"] == 0
        assert sorted(real("/instances")) == sorted(u["ID"] for u in uploaded)
