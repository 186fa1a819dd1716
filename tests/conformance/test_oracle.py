"""Replay the recorded Orthanc 1.10.1 answers against orthanc_py and compare.

The oracle (``oracle/orthanc-1.10.1.json``, described in ``/work/notes/oracle.md``) was captured by
``capture_oracle.py`` on an empty Orthanc: the same datasets are uploaded here in the same order, then
every recorded request is replayed in file order (uploads first, deletes last) against one server.
The replay happens once in a module-scoped fixture; each recorded request is then one test that
compares status, the recorded headers (Content-Type, Allow, WWW-Authenticate) and the body after
normalization:

- ``{placeholders}`` in labels are expanded with the recorded IDs (Orthanc IDs are deterministic,
  so our IDs must be byte-identical and are compared as is);
- volatile values (LastUpdate, ReceptionDate, change Date, FileUuid/Uuid, /tools/now*, generated
  UIDs) only need the right format;
- JSON is compared structurally (key sets and values); lists in order, except ``/tools/find``
  answers without Limit/Since, which Orthanc orders by ID (compared as multisets);
- PNG answers are compared by decoded pixels, other binaries by SHA-1.

Deliberate 1.12-vs-1.10.1 differences are the ``API_1_12`` table and nothing else.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conformance import capture_oracle, oracle_data
from tests.conftest import Client, Response, RunningServer

ORACLE_PATH = Path(__file__).resolve().parent / "oracle" / "orthanc-1.10.1.json"
_RAW: dict[str, Any] = json.loads(ORACLE_PATH.read_text(encoding="utf-8"))
META: dict[str, Any] = _RAW["_meta"]
ORACLE: dict[str, dict[str, Any]] = {k: v for k, v in _RAW.items() if k != "_meta"}
LABELS: list[str] = list(ORACLE)
PLACEHOLDERS: dict[str, str] = META["placeholders"]

# The oracle ran with "Name": "OrthancOracle" and "DicomPort": 14242 (see GET /system); StableAge stays
# at its default 60 s so that nothing is stable before the recorded "[after StableAge]" step.
SERVER_CONFIG: dict[str, Any] = {"Name": "OrthancOracle", "DicomPort": 14242, "StableAge": 60}

# --- Deliberate differences: we implement the Orthanc 1.12 API, the oracle is 1.10.1. -----------------
# Each entry is applied by `_apply_1_12()`; anything not listed here must match the oracle exactly.
API_1_12: dict[str, str] = {
    "Labels": "1.12 adds a Labels list to the resources of every level",
    "IsProtected": "1.12 adds IsProtected to patient resources",
    "RequestedTags": "1.12 honours RequestedTags / requested-tags and answers a RequestedTags object",
    "/system": "1.12 /system has ApiVersion 29, other Version and many new keys: compare identity only",
    "MainDicomTagsSignature": "1.12 stores a MainDicomTagsSignature metadata on every resource",
}
# --- Known deviations we keep on purpose (each with its reason); everything else must match. ----------
KNOWN: dict[str, str] = {
    "error-content-type": "errors are text/plain as Orthanc 1.12.2+ sends them (1.10.1: no Content-Type)",
    "GET /patients?expand=false": "1.12.2+ reads expand=false as false (1.10.1 checked presence only)",
    'POST /tools/find {"Level":"Study","Query":[]}': "1.10.1 crashes (500); we answer 400 BadRequest",
    'POST /tools/find {"Level":"Study","Query":{},"Expand":"yes"}': ("1.10.1 crashes (500); we answer 400 BadRequest"),
    'POST /tools/find {"Level":"Study","Query":{"Nonsense":"x"}}': (
        "1.10.1 answers UnknownDicomTag with HTTP 500; bad input is a 400 here (issue 13), same OrthancStatus 27"
    ),
    'POST /tools/find {"Level":"Instance","Query":{"Manufacturer":"orthanc_py"},"Limit":3}': (
        "which 3 instances come first follows Orthanc's SQL plan; we answer in public-ID order"
    ),
    'POST /tools/find {"Level":"Instance","Query":{"Manufacturer":"ORTHANC_PY"},"Limit":2}': (
        "which 2 instances come first follows Orthanc's SQL plan; we answer in public-ID order"
    ),
}
ERROR_JSON = "text/plain"

# --- Replay adaptations (capture artefacts, not API differences). --------------------------------------
STABLE_STEP = "GET /changes [after StableAge]"
"""The capture slept 65 s here; we age the server's stability deadlines instead (see `_expire_stable_age`)."""
DEPENDS_ON_STABILITY = (
    "GET /changes [after StableAge]",
    "GET /changes?last [after StableAge]",
    "GET /patients/{patient0} [after deletes]",
    "GET /changes?since=0&limit=1000 [after deletes]",
    "GET /changes?last [after deletes]",
)
ROOT_REDIRECT = "GET /"
"""urllib followed the 301 to the Orthanc Explorer HTML (a web UI, not the REST API): check the redirect."""

RESOURCE_TYPES = frozenset({"Patient", "Study", "Series", "Instance"})
DATE_RE = re.compile(r"^\d{8}T\d{6}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DICOM_UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")
HEADERS = ("Content-Type", "Allow", "WWW-Authenticate")


# --- Replay -----------------------------------------------------------------------------------------------


def _split(label: str) -> tuple[str, str]:
    """`METHOD /path[ rest]` -> (method, path with placeholders expanded)."""
    method, rest = label.split(" ", 1)
    path = rest.split(" ", 1)[0]
    return method, re.sub(r"\{([^{}]+)\}", lambda m: PLACEHOLDERS.get(m.group(1), m.group(0)), path)


def _upload_bodies() -> dict[str, Callable[[], bytes]]:
    first = oracle_data.DATASETS[0]
    bodies: dict[str, Callable[[], bytes]] = {
        f"POST /instances [{e['name']}]": (lambda e=e: oracle_data.build(e))
        for e in [*oracle_data.DATASETS, *oracle_data.BAD_DATASETS]
    }
    bodies.update(
        {
            "POST /instances [p0_st0_se0_i0] duplicate": lambda: oracle_data.build(first),
            "POST /instances [p0_st0_se0_i0] duplicate, Content-Type application/dicom": (
                lambda: oracle_data.build(first)
            ),
            "POST /instances [not DICOM]": oracle_data.not_dicom,
            "POST /instances [empty body]": lambda: b"",
            "POST /instances [truncated 50%]": lambda: oracle_data.truncated(0.5),
            "POST /instances [truncated 10%]": lambda: oracle_data.truncated(0.1),
        }
    )
    return bodies


def _request(
    label: str, entry: dict[str, Any], uploads: dict[str, Callable[[], bytes]]
) -> tuple[bytes | None, dict[str, str]]:
    """The body and headers capture_oracle.py sent (urllib adds a form Content-Type to any body)."""
    method, _ = _split(label)
    data: bytes | None = None
    if label in uploads:
        data = uploads[label]()
    elif "request" in entry:
        body = entry["request"]
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    elif method in ("POST", "PUT", "PATCH"):
        data = b""
    if data is None:
        return None, {}
    content_type = "application/dicom" if "Content-Type application/dicom" in label else None
    return data, {"Content-Type": content_type or "application/x-www-form-urlencoded"}


def _expire_stable_age(server: RunningServer, client: Client) -> bool:
    """Shift every pending stability deadline so the latest one is now, keeping their relative order
    (what 65 s of sleep did to Orthanc), then wait for the Stable* changes to be logged."""
    tracker = getattr(server.ctx, "stable", None)
    pending = getattr(tracker, "pending", None)
    loop = getattr(server, "_loop", None)
    if not isinstance(pending, dict) or loop is None:
        return False
    shifted = threading.Event()

    def shift() -> None:
        try:
            if pending:
                delta = max(deadline for _, deadline in pending.values()) - time.monotonic() + 0.001
                for pid, (level, deadline) in list(pending.items()):
                    pending[pid] = (level, deadline - delta)
        finally:
            shifted.set()

    loop.call_soon_threadsafe(shift)
    if not shifted.wait(5):
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not pending:
            last = client.get("/changes?last")
            changes = last.json().get("Changes", []) if last.status == 200 else []
            if changes and str(changes[-1].get("ChangeType", "")).startswith("Stable"):
                return True
        time.sleep(0.05)
    return False


class Replay:
    """Our answers, by oracle label, plus labels that could not be replayed faithfully."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: dict[str, Response] = {}
        self.skipped: dict[str, str] = {}


def _replay(server: RunningServer) -> Replay:
    client = server.client()
    uploads = _upload_bodies()
    replay = Replay(server.port)
    for label, entry in ORACLE.items():
        if label == STABLE_STEP and not _expire_stable_age(server, client):
            for dependent in DEPENDS_ON_STABILITY:
                replay.skipped[dependent] = "could not age the server's stability deadlines (StableAge 60 s)"
        method, path = _split(label)
        data, headers = _request(label, entry, uploads)
        replay.answers[label] = client.request(method, path, data, headers=headers)
    return replay


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    server = RunningServer(SERVER_CONFIG, tmp_path_factory.mktemp("oracle"))
    try:
        yield _replay(server)
    finally:
        server.stop()


# --- Normalization ------------------------------------------------------------------------------------


def _parse(response: Response) -> tuple[dict[str, str], Any]:
    """Recorded headers and body of our answer, in the oracle's representation."""
    wanted = {h.lower(): h for h in HEADERS}
    headers = {wanted[k]: v for k, v in response.headers.items() if k in wanted}
    content_type = headers.get("Content-Type", "")
    if response.status >= 400 and content_type == ERROR_JSON:
        content_type = ""  # an error description: JSON, read as the capture read 1.10.1's
    return headers, capture_oracle._parse(content_type, response.body)


def _png(body: Any, raw: bytes | None = None) -> Any:
    """PNG compared by decoded pixels (encoders differ); untouched when it cannot be decoded."""
    if raw is None:
        if not isinstance(body, dict) or "_hex" not in body:
            return body
        raw = bytes.fromhex(body["_hex"])
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Exception:
        return body
    return {
        "_png": {"mode": image.mode, "size": list(image.size), "pixels_sha1": hashlib.sha1(image.tobytes()).hexdigest()}
    }


def _volatile(value: Any) -> Any:
    """Dates, LastUpdate, ReceptionDate, FileUuid/Uuid: only their format counts."""
    if isinstance(value, list):
        return [_volatile(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in ("LastUpdate", "ReceptionDate") or (key == "Date" and "ChangeType" in value):
            if isinstance(item, str) and DATE_RE.match(item):
                item = "<date>"
        elif key in ("FileUuid", "Uuid") and isinstance(item, str) and UUID_RE.match(item):
            item = "<uuid>"
        out[key] = _volatile(item)
    return out


def _volatile_text(label: str, body: Any) -> Any:
    """Text answers that are volatile by nature: /tools/now*, date metadata, generated UIDs."""
    if not isinstance(body, str):
        return body
    _, path = _split(label)
    if path in ("/tools/now", "/tools/now-local") or re.search(r"/metadata/(LastUpdate|ReceptionDate)$", path):
        return "<date>" if DATE_RE.match(body) else body
    if path == "/tools/generate-uid?level=patient":
        return "<uuid4>" if UUID4_RE.match(body) else body
    if path.startswith("/tools/generate-uid?level="):
        return "<uid>" if len(body) <= 64 and DICOM_UID_RE.match(body) else body
    return body


def _normalize(label: str, body: Any) -> Any:
    return _volatile(_volatile_text(label, body))


def _drop_resource_extras(value: Any) -> Any:
    """API_1_12 Labels / IsProtected / RequestedTags: extra keys of resource objects."""
    if isinstance(value, list):
        return [_drop_resource_extras(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _drop_resource_extras(v) for k, v in value.items()}
    if out.get("Type") in RESOURCE_TYPES and "ID" in out:
        out.pop("Labels", None)
        out.pop("RequestedTags", None)
        if out["Type"] == "Patient":
            out.pop("IsProtected", None)
    return out


def _requested_tags_problems(expected: Any, got: Any) -> list[str]:
    """API_1_12 RequestedTags: a find with RequestedTags must answer them, with the resource's values."""
    if not isinstance(expected, list) or not isinstance(got, list):
        return []
    problems = []
    wanted = ("StudyDescription", "PatientName")
    by_id = {item.get("ID"): item for item in expected if isinstance(item, dict)}
    for item in got:
        if not isinstance(item, dict) or item.get("ID") not in by_id:
            continue
        ref = by_id[item["ID"]]
        tags = {**ref.get("PatientMainDicomTags", {}), **ref.get("MainDicomTags", {})}
        want = {t: tags[t] for t in wanted if t in tags}
        if item.get("RequestedTags") != want:
            problems.append(f"$[{item['ID']}].RequestedTags: expected {want!r}, got {item.get('RequestedTags')!r}")
    return problems


def _apply_1_12(label: str, expected: Any, got: Any, port: int) -> tuple[Any, Any, list[str]]:
    """Apply the API_1_12 table: returns (expected, got, extra problems)."""
    problems: list[str] = []
    _, path = _split(label)
    if path == "/system" and isinstance(expected, dict) and isinstance(got, dict):
        identity = {"Name", "DicomAet", "DicomPort", "HttpPort"}
        expected = {k: v for k, v in expected.items() if k in identity} | {"DatabaseVersion": "<present>"}
        expected["HttpPort"] = port  # the oracle listened on 18042, we on a free port
        got = {k: v for k, v in got.items() if k in identity} | (
            {"DatabaseVersion": "<present>"} if "DatabaseVersion" in got else {}
        )
    if re.search(r"/metadata(\?expand)?$", path):
        if isinstance(got, list):
            got = [k for k in got if k != "MainDicomTagsSignature"]
        elif isinstance(got, dict):
            got = {k: v for k, v in got.items() if k != "MainDicomTagsSignature"}
    request = ORACLE[label].get("request")
    if path == "/tools/find" and isinstance(request, dict) and "RequestedTags" in request:
        problems += _requested_tags_problems(expected, got)
    return expected, _drop_resource_extras(got), problems


# --- Comparison ---------------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _diff(expected: Any, got: Any, where: str = "$") -> list[str]:
    """Structural differences: dict key sets and values, lists in order."""
    if isinstance(expected, dict) and isinstance(got, dict):
        problems = []
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing:
            problems.append(f"{where}: missing keys {missing}")
        if extra:
            problems.append(f"{where}: unexpected keys {extra}")
        for key in expected:
            if key in got:
                problems += _diff(expected[key], got[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [
                f"{where}: expected {len(expected)} items, got {len(got)}: "
                f"expected {_short(expected)}, got {_short(got)}"
            ]
        problems = []
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            problems += _diff(e, g, f"{where}[{i}]")
        return problems
    if type(expected) is not type(got) or expected != got:
        return [f"{where}: expected {_short(expected)}, got {_short(got)}"]
    return []


def _short(value: Any, limit: int = 300) -> str:
    text = _canonical(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _unordered(label: str) -> bool:
    """/tools/find answers are ordered by Orthanc ID (or not at all): sets unless Limit/Since is used."""
    request = ORACLE[label].get("request")
    return (
        _split(label)[1] == "/tools/find"
        and isinstance(request, dict)
        and "Limit" not in request
        and "Since" not in request
    )


def _compare(label: str, ours: Response, port: int) -> list[str]:
    entry = ORACLE[label]
    headers, body = _parse(ours)
    if label == ROOT_REDIRECT:
        location = ours.headers.get("location")
        if ours.status != 301 or location != "app/explorer.html":
            return [f"expected 301 Location app/explorer.html, got {ours.status} Location {location!r}"]
        return []
    if label in KNOWN:
        return []
    problems = []
    if ours.status != entry["status"]:
        problems.append(f"status: expected {entry['status']}, got {ours.status}")
    for name in HEADERS:
        is_error = isinstance(entry["body"], dict) and "OrthancStatus" in entry["body"]
        if name == "Content-Type" and is_error and headers.get(name) == ERROR_JSON:
            continue  # KNOWN["error-content-type"]
        if entry["headers"].get(name) != headers.get(name):
            problems.append(f"header {name}: expected {entry['headers'].get(name)!r}, got {headers.get(name)!r}")
    expected = entry["body"]
    if entry["headers"].get("Content-Type") == "image/png" or headers.get("Content-Type") == "image/png":
        expected, body = _png(expected), _png(body, ours.body)
    expected, body = _normalize(label, expected), _normalize(label, body)
    expected, body, extra = _apply_1_12(label, expected, body, port)
    problems += extra
    if _unordered(label) and isinstance(expected, list) and isinstance(body, list):
        expected, body = sorted(expected, key=_canonical), sorted(body, key=_canonical)
    problems += _diff(expected, body)
    return problems


@pytest.mark.parametrize("label", LABELS, ids=LABELS)
def test_oracle(label: str, replay: Replay) -> None:
    if label in replay.skipped:
        pytest.skip(replay.skipped[label])
    problems = _compare(label, replay.answers[label], replay.port)
    assert not problems, f"{label}\n" + "\n".join(problems[:40])
