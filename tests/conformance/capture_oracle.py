"""Record the real Orthanc's answers for the conformance oracle.

Run against an empty Orthanc (1.10.1 for the committed file), e.g. one started with::

    {"StorageDirectory": "/tmp/oracle/storage", "IndexDirectory": "/tmp/oracle/index",
     "HttpPort": 18042, "DicomPort": 14242, "RemoteAccessAllowed": true,
     "AuthenticationEnabled": false, "Plugins": []}

then ``python tests/conformance/capture_oracle.py --url http://localhost:18042``.
Labels are ``METHOD /path`` with ``{placeholders}`` standing for Orthanc IDs (see
``_meta.placeholders``), so the same labels can be replayed against orthanc_py. Volatile
values (dates, LastUpdate, ReceptionDate, FileUuid, generated UIDs, sequence numbers
after restarts) are stored as captured; ``_meta.volatile`` lists them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import oracle_data

OUTPUT = Path(__file__).resolve().parent / "oracle" / "orthanc-1.10.1.json"
SELECTED_HEADERS = ("Content-Type", "Allow", "WWW-Authenticate")
LEVELS = ("patients", "studies", "series", "instances")
VOLATILE = [
    "LastUpdate (resources, metadata)",
    "ReceptionDate metadata",
    "FileUuid / Uuid of attachments",
    "Date in /changes and /exports",
    "/tools/now, /tools/now-local",
    "/tools/generate-uid answers",
    "/system and /statistics disk sizes are exact for this dataset list but not for other data",
]


class Recorder:
    """Sends requests, stores answers under their label and remembers placeholders."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.placeholders: dict[str, str] = {}
        self.answers: dict[str, dict[str, Any]] = {}

    def expand(self, template: str) -> str:
        """Replace ``{name}`` with the recorded Orthanc ID (unknown names stay verbatim)."""
        return re.sub(r"\{([^{}]+)\}", lambda m: self.placeholders.get(m.group(1), m.group(0)), template)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        *,
        label: str | None = None,
        content_type: str | None = None,
        record: bool = True,
    ) -> dict[str, Any]:
        """Perform one request; JSON bodies are serialized, answers parsed when JSON."""
        data: bytes | None
        request_body: Any = None
        if isinstance(body, dict | list):
            request_body = body
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            request_body = body
            data = body.encode()
        else:
            data = body
        request = urllib.request.Request(self.base_url + self.expand(path), data=data, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, raw = error.code, error.headers, error.read()
        entry: dict[str, Any] = {
            "status": status,
            "headers": {name: headers[name] for name in SELECTED_HEADERS if headers.get(name) is not None},
            "body": _parse(headers.get("Content-Type", ""), raw),
        }
        if request_body is not None:
            entry["request"] = request_body
        if record:
            key = label or f"{method} {path}"
            if key in self.answers:
                raise ValueError(f"duplicate label: {key}")
            self.answers[key] = entry
        return entry

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """GET shorthand."""
        return self.call("GET", path, **kwargs)


def _parse(content_type: str, raw: bytes) -> Any:
    """JSON when declared or undeclared-but-parseable, text for text/*, a digest for binary."""
    if not raw:
        return ""
    # Orthanc 1.10.1 sends its JSON error bodies without any Content-Type.
    if "json" in content_type or not content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    if content_type.startswith("text/") or "json" in content_type or not content_type:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    digest: dict[str, Any] = {"_binary_length": len(raw), "_sha1": hashlib.sha1(raw).hexdigest()}
    if len(raw) <= 4096:
        # Raw tag values (/content/...) come as application/octet-stream: keep them readable.
        try:
            digest["_text"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            digest["_hex"] = raw.hex()
    return digest


def upload_all(rec: Recorder) -> None:
    """POST every dataset, then duplicates and broken files; record IDs as placeholders."""
    for entry in oracle_data.DATASETS:
        name = entry["name"]
        answer = rec.call("POST", "/instances", oracle_data.build(entry), label=f"POST /instances [{name}]")
        body = answer["body"]
        rec.placeholders[name] = body["ID"]
        rec.placeholders[f"{name}/series"] = body["ParentSeries"]
        rec.placeholders[f"{name}/study"] = body["ParentStudy"]
        rec.placeholders[f"{name}/patient"] = body["ParentPatient"]
    aliases = {
        "patient0": "p0_st0_se0_i0/patient",
        "patient1": "p1_st0_se0_i0/patient",
        "patient2": "p2_st0_se0_i0/patient",
        "study0": "p0_st0_se0_i0/study",
        "study1": "p0_st1_se0_i0/study",
        "series0": "p0_st0_se0_i0/series",
        "series1": "p0_st0_se1_i0/series",
        "instance0": "p0_st0_se0_i0",
    }
    for alias, target in aliases.items():
        rec.placeholders[alias] = rec.placeholders[target]

    first = oracle_data.DATASETS[0]
    rec.call("POST", "/instances", oracle_data.build(first), label="POST /instances [p0_st0_se0_i0] duplicate")
    rec.call("POST", "/instances", oracle_data.not_dicom(), label="POST /instances [not DICOM]")
    rec.call("POST", "/instances", b"", label="POST /instances [empty body]")
    rec.call("POST", "/instances", oracle_data.truncated(0.5), label="POST /instances [truncated 50%]")
    rec.call("POST", "/instances", oracle_data.truncated(0.1), label="POST /instances [truncated 10%]")
    for entry in oracle_data.BAD_DATASETS:
        rec.call("POST", "/instances", oracle_data.build(entry), label=f"POST /instances [{entry['name']}]")
    rec.call(
        "POST",
        "/instances",
        oracle_data.build(first),
        content_type="application/dicom",
        label="POST /instances [p0_st0_se0_i0] duplicate, Content-Type application/dicom",
    )


def capture_lists(rec: Recorder) -> None:
    """Top-level listings, system information and the change log before deletions."""
    for path in ("/system", "/statistics", "/tools/now", "/tools/now-local"):
        rec.get(path)
    for level in LEVELS:
        for query in (
            "",
            "?expand",
            "?expand&short",
            "?expand&full",
            "?expand&simplify",
            "?limit=2",
            "?since=1&limit=2",
            "?since=1",
            "?expand&since=0&limit=1",
        ):
            rec.get(f"/{level}{query}")
    rec.get("/studies?expand&requestedTags=PatientName;ModalitiesInStudy")
    rec.get("/patients?expand=false")
    for query in ("", "?since=0&limit=3", "?last", "?limit=0", "?since=5&limit=2", "?since=1000"):
        rec.get(f"/changes{query}")
    rec.get("/exports")


def capture_resources(rec: Recorder) -> None:
    """Each resource rendering and the sub-routes of every level."""
    ids = {"patients": "{patient0}", "studies": "{study0}", "series": "{series0}", "instances": "{instance0}"}
    for level, rid in ids.items():
        base = f"/{level}/{rid}"
        for query in ("", "?full", "?short", "?simplify"):
            rec.get(base + query)
        rec.get(f"{base}/statistics")
        for query in ("", "?simplify", "?short"):
            rec.get(f"{base}/shared-tags{query}")
            rec.get(f"{base}/module{query}")
            if level != "instances":
                rec.get(f"{base}/instances-tags{query}")
        rec.get(f"{base}/metadata")
        rec.get(f"{base}/metadata?expand")
        rec.get(f"{base}/attachments")
        for child in ("patient", "study", "series", "studies", "instances"):
            rec.get(f"{base}/{child}")
    rec.get("/studies/{study0}/module-patient")
    rec.get("/studies/{study0}/module-patient?simplify")
    rec.get("/series/{series0}/ordered-slices")
    rec.get("/series/{series1}/ordered-slices")
    rec.get("/series/{no_pixel_data/series}/ordered-slices")
    rec.get("/patients/{patient0}/protected")
    rec.get("/patients/{patient1}")
    rec.get("/patients/{patient2}")
    rec.get("/studies/{study1}")
    rec.get("/series/{series1}")

    inst = "/instances/{instance0}"
    for sub in (
        "tags",
        "tags?simplify",
        "tags?short",
        "tags?full",
        "simplified-tags",
        "header",
        "header?simplify",
        "header?short",
        "content",
        "content/0010-0010",
        "content/0010,0010",
        "content/0020-0032",
        "content/7fe0-0010",
        "content/ffff-ffff",
        "content/zzzz",
        "frames",
        "frames/0",
        "frames/1",
        "file",
        "preview",
        "attachments/dicom",
        "attachments/dicom/size",
        "attachments/dicom/compressed-size",
        "attachments/dicom/md5",
        "attachments/dicom/compressed-md5",
        "attachments/dicom/is-compressed",
        "attachments/dicom/info",
        "attachments/dicom-until-pixel-data",
        "metadata/Nonexistent",
        "metadata/9999",
        "pdf",
    ):
        rec.get(f"{inst}/{sub}")
    metadata = rec.answers["GET /instances/{instance0}/metadata"]["body"]
    for key in metadata if isinstance(metadata, list) else []:
        rec.get(f"{inst}/metadata/{key}")
    for level, rid in (("patients", "{patient0}"), ("studies", "{study0}"), ("series", "{series0}")):
        listed = rec.answers[f"GET /{level}/{rid}/metadata"]["body"]
        for key in listed if isinstance(listed, list) else []:
            rec.get(f"/{level}/{rid}/metadata/{key}")

    # Every uploaded dataset: its instance rendering and simplified tags (main tags, charsets).
    for entry in oracle_data.DATASETS:
        name = entry["name"]
        rec.get(f"/instances/{{{name}}}")
        rec.get(f"/instances/{{{name}}}/tags?simplify")
    for name in ("no_patient_id", "empty_patient_id", "trailing_spaces", "sequences_private", "multi_valued"):
        rec.get(f"/patients/{{{name}/patient}}")
        rec.get(f"/studies/{{{name}/study}}")
        rec.get(f"/series/{{{name}/series}}")
    for name in ("sequences_private", "p1_st0_se0_i0", "p2_st0_se0_i0", "multi_valued", "trailing_spaces"):
        rec.get(f"/instances/{{{name}}}/tags")
        rec.get(f"/instances/{{{name}}}/tags?short")
        rec.get(f"/instances/{{{name}}}/header")
    seq = "/instances/{sequences_private}/content"
    for sub in (
        "",
        "/0008-1140",
        "/0008-1140/0",
        "/0008-1140/1",
        "/0008-1140/2",
        "/0008-1140/0/0008-1155",
        "/0008-1140/1/0008-1155",
        "/0008-1032/0/0008-0104",
        "/0009-0010",
        "/0009-1001",
        "/0009-1002",
        "/0010-0010/0",
    ):
        rec.get(seq + sub)
    rec.get("/instances/{p1_st0_se0_i0}/content/0010-0010")
    rec.get("/instances/{p2_st0_se0_i0}/content/0010-0010")
    rec.get("/instances/{p2_st0_se0_i0}/content/0008-1030")
    rec.get("/instances/{multi_valued}/content/0008-0008")
    rec.get("/instances/{no_pixel_data}/frames")
    rec.get("/instances/{no_pixel_data}/content/7fe0-0010")
    rec.get("/instances/{no_pixel_data}/statistics")


def capture_errors(rec: Recorder) -> None:
    """Unknown IDs, unknown routes and wrong methods."""
    unknown = "00000000-00000000-00000000-00000000-00000000"
    for level in LEVELS:
        rec.get(f"/{level}/{unknown}")
        rec.get(f"/{level}/not-an-id")
        rec.get(f"/{level}/{unknown}/statistics")
        rec.get(f"/{level}/{unknown}/shared-tags")
    rec.get(f"/instances/{unknown}/tags")
    rec.get(f"/instances/{unknown}/file")
    rec.get(f"/instances/{unknown}/metadata")
    rec.get("/nonexistent")
    rec.get("/patients/{patient0}/nonexistent")
    rec.get("/")
    for method, path in (
        ("PUT", "/patients"),
        ("DELETE", "/patients"),
        ("POST", "/patients"),
        ("PUT", "/instances"),
        ("POST", "/patients/{patient0}"),
        ("PUT", "/studies/{study0}"),
        ("PUT", "/system"),
        ("POST", "/system"),
        ("GET", "/tools/find"),
        ("GET", "/tools/lookup"),
        ("DELETE", "/tools/now"),
        ("DELETE", "/changes/1"),
        ("POST", "/instances/{instance0}/tags"),
        ("PATCH", "/patients"),
    ):
        rec.call(method, path, b"" if method in ("POST", "PUT", "PATCH") else None)


def capture_tools(rec: Recorder) -> None:
    """/tools/find, /tools/lookup and /tools/generate-uid."""
    finds: list[dict[str, Any]] = [
        {"Level": "Patient", "Query": {}},
        {"Level": "Patient", "Query": {"PatientName": "*"}},
        {"Level": "Patient", "Query": {"PatientName": "Müller*"}},
        {"Level": "Patient", "Query": {"PatientName": "müller*"}},
        {"Level": "Patient", "Query": {"PatientName": "müller*"}, "CaseSensitive": False},
        {"Level": "Patient", "Query": {"PatientName": "MÜLLER^JÜRGEN"}, "CaseSensitive": False},
        {"Level": "Patient", "Query": {"PatientName": "Παπαδόπουλος*"}},
        {"Level": "Patient", "Query": {"PatientID": "PID0000?"}},
        {"Level": "Patient", "Query": {"PatientID": "PID00000\\PID00001"}},
        {"Level": "Patient", "Query": {"PatientID": "TRAIL05"}},
        {"Level": "Patient", "Query": {"PatientID": ""}},
        {"Level": "Patient", "Query": {"PatientID": "*"}, "Expand": True},
        {"Level": "Patient", "Query": {}, "Limit": 2},
        {"Level": "Patient", "Query": {}, "Limit": 2, "Since": 1},
        {"Level": "Patient", "Query": {}, "Since": 100},
        {"Level": "Study", "Query": {}},
        {"Level": "Study", "Query": {"StudyDate": "20200101"}},
        {"Level": "Study", "Query": {"StudyDate": "20200101-20201231"}},
        {"Level": "Study", "Query": {"StudyDate": "-20200101"}},
        {"Level": "Study", "Query": {"StudyDate": "20210101-"}},
        {"Level": "Study", "Query": {"ModalitiesInStudy": "MR"}},
        {"Level": "Study", "Query": {"ModalitiesInStudy": "CT\\MR"}},
        {"Level": "Study", "Query": {"AccessionNumber": "ACC*"}},
        {"Level": "Study", "Query": {"StudyDescription": "*study*"}, "CaseSensitive": False},
        {"Level": "Study", "Query": {"PatientID": "PID00000"}},
        {"Level": "Study", "Query": {"0008,0050": "ACCSEQ"}},
        {"Level": "Study", "Query": {"0008-0050": "ACCSEQ"}},
        {"Level": "Study", "Query": {"Nonsense": "x"}},
        {"Level": "Study", "Query": {"StudyDescription": "Synthetic study"}, "Expand": True},
        {"Level": "Study", "Query": {"PatientID": "PID00000"}, "Expand": True, "Limit": 1},
        {"Level": "Study", "Query": {}, "RequestedTags": ["StudyDescription", "PatientName"], "Expand": True},
        {"Level": "Study", "Query": {"PatientID": "PID00000"}, "Full": True, "Expand": True},
        {"Level": "Patient", "Query": {"PatientName": "patient^00000"}},
        {"Level": "Study", "Query": {"StudyDescription": "synthetic study"}},
        {"Level": "Study", "Query": {"StudyDescription": "synthetic study"}, "CaseSensitive": False},
        {"Level": "Study", "Query": {"StudyDate": "20200101-20200101"}},
        {"Level": "Study", "Query": {"StudyDate": "2020*"}},
        {"Level": "Study", "Query": {"StudyDescription": "頭部*"}},
        {"Level": "Study", "Query": {"StudyDescription": "synthetic study"}, "CaseSensitive": True},
        {"Level": "Patient", "Query": {"PatientName": "patient^00000"}, "CaseSensitive": True},
        {"Level": "Series", "Query": {"Modality": "mr"}, "CaseSensitive": True},
        {"Level": "Instance", "Query": {"Manufacturer": "ORTHANC_PY"}, "Limit": 2},
        {"Level": "Series", "Query": {"Modality": "MR"}},
        {"Level": "Series", "Query": {"Modality": "mr"}},
        {"Level": "Series", "Query": {"Modality": "CT"}, "Limit": 1},
        {"Level": "Series", "Query": {"Modality": "CT\\SR"}},
        {"Level": "Instance", "Query": {"Manufacturer": "orthanc_py"}, "Limit": 3},
        {"Level": "Instance", "Query": {"ImageType": "*AXIAL*"}},
        {"Level": "Series", "Query": {"ImageOrientationPatient": "1.0\\0.0\\0.0\\0.0\\1.0\\0.0"}},
        {"Level": "Series", "Query": {"Modality": "MR"}, "Expand": True},
        {"Level": "Series", "Query": {"SeriesDescription": "series 0*"}, "CaseSensitive": False},
        {"Level": "Instance", "Query": {"InstanceNumber": "1"}},
        {"Level": "Instance", "Query": {"SOPInstanceUID": "__SOP__"}, "Expand": True},
        {"Level": "Instance", "Query": {"ImageComments": "*"}},
        {"Level": "patient", "Query": {}},
        {"Level": "Foo", "Query": {}},
        {"Query": {}},
        {"Level": "Study"},
        {"Level": "Study", "Query": []},
        {"Level": "Study", "Query": {"StudyDate": 20200101}},
        {"Level": "Study", "Query": {}, "Limit": -1},
        {"Level": "Study", "Query": {}, "Expand": "yes"},
        {"Level": "Study", "Query": {}, "CaseSensitive": "no"},
    ]
    sop = oracle_data.build_dataset(oracle_data.DATASETS[0]).SOPInstanceUID
    for body in finds:
        if body.get("Query", {}) == {"SOPInstanceUID": "__SOP__"}:
            body = {**body, "Query": {"SOPInstanceUID": sop}}
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        rec.call("POST", "/tools/find", body, label=f"POST /tools/find {text}")
    rec.call("POST", "/tools/find", "{not json", label="POST /tools/find [malformed JSON]")
    rec.call("POST", "/tools/find", "", label="POST /tools/find [empty body]")
    rec.call("POST", "/tools/find", [1, 2], label="POST /tools/find [JSON array]")

    first = oracle_data.build_dataset(oracle_data.DATASETS[0])
    for what, value in (
        ("PatientID", "PID00000"),
        ("StudyInstanceUID", str(first.StudyInstanceUID)),
        ("SeriesInstanceUID", str(first.SeriesInstanceUID)),
        ("SOPInstanceUID", str(first.SOPInstanceUID)),
        ("unknown", "1.2.3.4.5.6"),
        ("empty", ""),
        ("SOPInstanceUID with spaces", f"  {first.SOPInstanceUID}\n"),
    ):
        rec.call("POST", "/tools/lookup", value, label=f"POST /tools/lookup [{what}]")
    for query in ("?level=patient", "?level=study", "?level=series", "?level=instance", "?level=bogus", ""):
        rec.get(f"/tools/generate-uid{query}")


def capture_deletions(rec: Recorder, stable_wait: float) -> None:
    """Optionally wait for Stable* events, then delete at each level and watch /changes."""
    if stable_wait > 0:
        time.sleep(stable_wait)
        rec.get("/changes", label="GET /changes [after StableAge]")
        rec.get("/changes?last", label="GET /changes?last [after StableAge]")
    rec.call("DELETE", "/instances/{instance0}")
    rec.get("/instances/{instance0}", label="GET /instances/{instance0} [after delete]")
    rec.call("DELETE", "/instances/{instance0}", label="DELETE /instances/{instance0} [again]")
    rec.call("DELETE", "/instances/{p0_st0_se1_i0}")
    rec.call("DELETE", "/instances/{p0_st0_se1_i1}", label="DELETE /instances/{p0_st0_se1_i1} [last of series]")
    rec.call("DELETE", "/studies/{study1}")
    rec.call("DELETE", "/series/{multi_valued/series}", label="DELETE /series/{multi_valued/series}")
    rec.call("DELETE", "/patients/{patient2}")
    rec.call("DELETE", "/instances/{no_pixel_data}", label="DELETE /instances/{no_pixel_data} [only instance]")
    rec.get("/patients/{patient0}", label="GET /patients/{patient0} [after deletes]")
    rec.get("/studies/{study1}", label="GET /studies/{study1} [after delete]")
    rec.get("/patients", label="GET /patients [after deletes]")
    rec.get("/statistics", label="GET /statistics [after deletes]")
    rec.get("/changes?since=0&limit=1000", label="GET /changes?since=0&limit=1000 [after deletes]")
    rec.get("/changes?last", label="GET /changes?last [after deletes]")


def main() -> None:
    """Capture everything and write the oracle file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:18042")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--stable-wait", type=float, default=65.0, help="seconds to wait for Stable* events")
    args = parser.parse_args()

    rec = Recorder(args.url)
    if rec.call("GET", "/instances", record=False)["body"]:
        sys.exit("Orthanc must be empty: the oracle depends on a fresh database")
    upload_all(rec)
    capture_lists(rec)
    capture_resources(rec)
    capture_errors(rec)
    capture_tools(rec)
    capture_deletions(rec, args.stable_wait)

    version = rec.answers["GET /system"]["body"].get("Version")
    datasets = [
        {
            "name": entry["name"],
            "kwargs": entry["kwargs"],
            "sha1": hashlib.sha1(oracle_data.build(entry)).hexdigest(),
            "ID": rec.placeholders[entry["name"]],
        }
        for entry in oracle_data.DATASETS
    ]
    meta = {
        "orthanc_version": version,
        "captured": time.strftime("%Y-%m-%d"),
        "placeholders": rec.placeholders,
        "datasets": datasets,
        "volatile": VOLATILE,
        "label_format": "METHOD /path with {placeholder} IDs; [..] suffix describes the request body or step",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as handle:
        json.dump({"_meta": meta, **rec.answers}, handle, ensure_ascii=False, indent=1)
        handle.write("\n")
    print(f"{len(rec.answers)} answers written to {args.output}")


if __name__ == "__main__":
    main()
