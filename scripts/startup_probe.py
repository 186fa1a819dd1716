#!/usr/bin/env python3
"""Start-up, idle memory and the cost of each first request, on fresh servers (issue 15, item 4).

    scripts/startup_probe.py startup [--repeat 7] [--kind ours|orthanc]
        process spawn -> first 200 of GET /system, and VmRSS after 1 s of idle: medians.
    scripts/startup_probe.py first [--repeat 3] [--only preview --only tags ...] [--base ../main-wt]
        for each kind of request, a fresh server on a copy of a one-study storage answers that
        request once ("first"), then three more times ("steady", the median): the first request's
        extra cost is what start-up left for it to load (first - steady). Medians over --repeat.
        With --base, the same on a server of that checkout, run right before ours each time.

Serialize with the other benchmarks: `flock /tmp/bench.lock scripts/startup_probe.py ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_servers
import dicomgen
from bench_servers import launch, log, memory_mb, shutdown

OURS = bench_servers.REPO

AET = "PROBE"
STUDY = dict(patient=1, study=1, rows=64, columns=64)


def new_file(n: int) -> bytes:
    """A new instance (own SOP Instance UID) of the probe's study."""
    return dicomgen.make(dicomgen.Spec(series=0, instance=100 + n, **STUDY))  # type: ignore[arg-type]


def modalities(port: int) -> dict[str, Any]:
    return {
        "DicomModalities": {"probe": [AET, "127.0.0.1", port or 104]},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }


class Probe:
    """The requests timed on a fresh server (`kinds`), each a coroutine doing one request."""

    def __init__(self, http: aiohttp.ClientSession, url: str, dicom_port: int, ids: dict[str, str]) -> None:
        self.http, self.url, self.dicom_port, self.ids = http, url, dicom_port, ids
        self.counter = 0

    async def get(self, path: str, **kw: Any) -> None:
        async with self.http.get(self.url + path, **kw) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {path}: {r.status}")

    async def post(self, path: str, body: bytes, **kw: Any) -> None:
        async with self.http.post(self.url + path, data=body, **kw) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"POST {path}: {r.status}")

    def next_file(self) -> bytes:
        self.counter += 1
        return new_file(self.counter)

    async def dimse(self, what: str) -> None:
        def run() -> None:
            from pydicom import dcmread
            from pydicom.dataset import Dataset
            from pynetdicom import AE
            from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind, Verification

            ae = AE(ae_title=AET)
            ae.add_requested_context(Verification)
            ae.add_requested_context(CTImageStorage)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            assoc = ae.associate("127.0.0.1", self.dicom_port, ae_title="ORTHANC")
            if not assoc.is_established:
                raise RuntimeError("association rejected")
            try:
                if what == "echo":
                    status = assoc.send_c_echo()
                elif what == "store":
                    import io

                    status = assoc.send_c_store(dcmread(io.BytesIO(self.next_file())))
                else:
                    q = Dataset()
                    q.QueryRetrieveLevel = "STUDY"
                    q.StudyInstanceUID = ""
                    q.PatientID = "PID*"
                    answers = list(assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind))
                    status = answers[-1][0] if answers else None
                if status is None or status.Status not in (0, 0xFF00, 0xFF01):
                    raise RuntimeError(f"{what}: {status}")
            finally:
                assoc.release()

        await asyncio.get_running_loop().run_in_executor(None, run)

    def kinds(self) -> dict[str, Callable[[], Awaitable[None]]]:
        i, st, se, sop = self.ids["instance"], self.ids["study"], self.ids["series_uid"], self.ids["sop_uid"]
        stu = self.ids["study_uid"]
        dw = f"/dicom-web/studies/{stu}/series/{se}/instances/{sop}"
        multipart = 'multipart/related; type="application/dicom"; boundary=probe'

        def stow_body() -> bytes:
            return b"--probe\r\nContent-Type: application/dicom\r\n\r\n" + self.next_file() + b"\r\n--probe--\r\n"

        return {
            "system": lambda: self.get("/system"),
            "studies": lambda: self.get("/studies?expand"),
            "instance": lambda: self.get(f"/instances/{i}"),
            "file": lambda: self.get(f"/instances/{i}/file"),
            "tags": lambda: self.get(f"/instances/{i}/tags"),
            "simplified-tags": lambda: self.get(f"/instances/{i}/simplified-tags"),
            "preview": lambda: self.get(f"/instances/{i}/preview"),
            "preview-jpeg": lambda: self.get(f"/instances/{i}/preview", headers={"Accept": "image/jpeg"}),
            "find": lambda: self.post("/tools/find", orjson.dumps({"Level": "Study", "Query": {"PatientID": "PID*"}})),
            "upload": lambda: self.post("/instances", self.next_file()),
            "modify": lambda: self.post(f"/instances/{i}/modify", orjson.dumps({"Replace": {"PatientName": "X"}})),
            "anonymize": lambda: self.post(f"/instances/{i}/anonymize", b"{}"),
            "archive": lambda: self.get(f"/studies/{st}/archive"),
            "c-echo": lambda: self.dimse("echo"),
            "c-store": lambda: self.dimse("store"),
            "c-find": lambda: self.dimse("find"),
            "stow": lambda: self.post(
                "/dicom-web/studies",
                stow_body(),
                headers={"Content-Type": multipart, "Accept": "application/dicom+json"},
            ),
            "qido": lambda: self.get("/dicom-web/studies?PatientID=PID*"),
            "wado-rs": lambda: self.get(dw, headers={"Accept": multipart}),
            "wado-metadata": lambda: self.get(f"/dicom-web/studies/{stu}/metadata"),
            "wado-rendered": lambda: self.get(dw + "/rendered", headers={"Accept": "image/png"}),
            "wado-uri": lambda: self.get(
                f"/wado?requestType=WADO&studyUID={stu}&seriesUID={se}&objectUID={sop}&contentType=application/dicom"
            ),
        }


def use_code(repo: Path) -> None:
    """The checkout whose package the next launches run (bench_servers reads REPO at each launch)."""
    bench_servers.REPO = repo


async def make_template(http: aiohttp.ClientSession, work: Path) -> dict[str, str]:
    """A storage with one study of 64x64 CT (5 instances), built by the server of `use_code`."""
    server = await launch("ours", work / "template", http, 60)
    try:
        ids: dict[str, str] = {}
        for n in range(5):
            raw = dicomgen.make(dicomgen.Spec(series=0, instance=n, **STUDY))  # type: ignore[arg-type]
            async with http.post(server.url + "/instances", data=raw) as r:
                doc = orjson.loads(await r.read())
            ids.update(instance=doc["ID"], study=doc["ParentStudy"])
        async with http.get(server.url + f"/instances/{ids['instance']}/tags?simplify") as r:
            tags = orjson.loads(await r.read())
        ids.update(
            study_uid=tags["StudyInstanceUID"], series_uid=tags["SeriesInstanceUID"], sop_uid=tags["SOPInstanceUID"]
        )
        return ids
    finally:
        await shutdown(server)


async def fresh(http: aiohttp.ClientSession, work: Path, name: str, kind: str = "ours") -> Any:
    """A server started on a copy of the template storage of `work`."""
    d = work / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for sub in ("storage", "index"):
        shutil.copytree(work / "template" / sub, d / sub)
    return await launch(kind, d, http, 60, None, modalities(0))


async def _time_first(http: aiohttp.ClientSession, work: Path, name: str, ids: dict[str, str]) -> tuple[float, float]:
    """(first, median of the next three) of one kind of request on a fresh server, in ms."""
    server = await fresh(http, work, name)
    try:
        call = Probe(http, server.url, server.dicom_port, ids).kinds()[name.split("@")[0]]
        t0 = time.perf_counter()
        await call()
        first = time.perf_counter() - t0
        steady = []
        for _ in range(3):
            t0 = time.perf_counter()
            await call()
            steady.append(time.perf_counter() - t0)
        return first * 1000, statistics.median(steady) * 1000
    finally:
        await shutdown(server)


async def first_requests(args: argparse.Namespace, work: Path) -> None:
    """Each kind on fresh servers; with --base, the base checkout's server right before ours."""
    codes = {"ours": (OURS, work / "ours")}
    if args.base:
        codes = {"base": (args.base, work / "base"), **codes}
    async with aiohttp.ClientSession() as http:
        ids: dict[str, dict[str, str]] = {}
        for code, (repo, folder) in codes.items():
            use_code(repo)
            folder.mkdir(parents=True)
            ids[code] = await make_template(http, folder)
        names = args.only or list(Probe(http, "", 0, ids["ours"]).kinds())
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for rep in range(args.repeat):
            for name in names:
                for code, (repo, folder) in codes.items():
                    use_code(repo)
                    got = await _time_first(http, folder, f"{name}@{rep}", ids[code])
                    results.setdefault((code, name), []).append(got)
            log(f"repeat {rep + 1}/{args.repeat} done")
        heads = "".join(f" {c + ' first':>11} {c + ' steady':>12} {c + ' extra':>11}" for c in codes)
        print(f"{'request':16}{heads}" + (f" {'first: ours - base':>19}" if args.base else ""))
        for name in names:
            row, firsts = "", {}
            for code in codes:
                f = statistics.median(x[0] for x in results[(code, name)])
                st = statistics.median(x[1] for x in results[(code, name)])
                firsts[code] = f
                row += f" {f:11.1f} {st:12.1f} {f - st:11.1f}"
            print(f"{name:16}{row}" + (f" {firsts['ours'] - firsts['base']:19.1f}" if args.base else ""))


async def startup(args: argparse.Namespace, work: Path) -> None:
    async with aiohttp.ClientSession() as http:
        times, rss = [], []
        for rep in range(args.repeat):
            d = work / f"start-{rep}"
            server = await launch(args.kind, d, http, 60)
            try:
                times.append(server.startup_s)
                await asyncio.sleep(1.0)
                rss.append(memory_mb(server.proc.pid, "VmRSS"))
            finally:
                await shutdown(server)
                shutil.rmtree(d, ignore_errors=True)
        print(
            f"{args.kind}: start {statistics.median(times):.3f} s (min {min(times):.3f}), "
            f"idle RSS {statistics.median(rss):.1f} MB (min {min(rss):.1f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("startup", "first"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kind", default="ours", choices=("ours", "orthanc"))
    ap.add_argument("--only", action="append", help="kinds of first request to time (default: all)")
    ap.add_argument("--base", help="first: also time this checkout (a worktree of main), interleaved")
    args = ap.parse_args()
    if args.base:
        args.base = Path(args.base).resolve()
    work = Path(tempfile.mkdtemp(prefix="startup-probe-"))
    try:
        asyncio.run(startup(args, work) if args.what == "startup" else first_requests(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
