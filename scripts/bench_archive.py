#!/usr/bin/env python3
"""Archive scenarios of scripts/bench (`scripts/bench --compare --archive [options]`, or this
file alone): our server against the real Orthanc 1.10.1 on the same generated CT studies.

  StudyArchive   GET /studies/{id}/archive of a --study-instances study of 512x512 16-bit CT
                 (random 12-bit pixels), streamed and counted by the client: archive MB/s and
                 study MB/s (stored bytes per second), server CPU seconds per archive; --repeat
                 runs, alternating targets, medians.
  StudyMedia     the same study as a DICOMDIR media archive (GET /studies/{id}/media): MB/s.
  ArchiveRSS     the server's RSS sampled every 20 ms while it streams the archive of a
                 --big-instances study (2000 x 0.5 MB = 1 GB by default): growth over the RSS
                 before the request, as a share of the archive's size. Ours always; Orthanc with
                 --rss-orthanc (at ~8 MB/s it takes minutes).

Each managed server gets a temporary storage and free ports (scripts/bench_servers.launch); the
studies are uploaded through POST /instances at concurrency 4 (untimed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import aiohttp  # noqa: E402
import dicomgen  # noqa: E402
from bench_servers import launch, log, memory_mb, shutdown  # noqa: E402

MB = 1e6


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def study_files(patient: int, count: int) -> list[bytes]:
    return [
        dicomgen.make(patient=patient, study=0, series=i % 2, instance=i // 2, rows=512, columns=512)
        for i in range(count)
    ]


async def upload(session: aiohttp.ClientSession, url: str, files: list[bytes]) -> str:
    """Store `files` (one study) and answer the study's public ID."""
    sem = asyncio.Semaphore(4)
    study = ""

    async def one(data: bytes) -> None:
        nonlocal study
        async with sem, session.post(f"{url}/instances", data=data) as r:
            r.raise_for_status()
            study = (await r.json())["ParentStudy"]

    await asyncio.gather(*(one(f) for f in files))
    return study


async def download(session: aiohttp.ClientSession, url: str, pid: int, sample_rss: bool) -> dict[str, float]:
    """GET the study archive, counting bytes; RSS sampled meanwhile when asked."""
    rss_before = memory_mb(pid, "VmRSS")
    peak = rss_before
    size = 0
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    last = t0
    async with session.get(url) as r:
        r.raise_for_status()
        async for chunk in r.content.iter_chunked(1 << 20):
            size += len(chunk)
            now = time.perf_counter()
            if sample_rss and now - last > 0.02:
                peak = max(peak, memory_mb(pid, "VmRSS"))
                last = now
    seconds = time.perf_counter() - t0
    return {
        "bytes": size,
        "seconds": seconds,
        "cpu": cpu_seconds(pid) - cpu0,
        "rss_before_mb": rss_before,
        "rss_peak_mb": max(peak, memory_mb(pid, "VmRSS")) if sample_rss else 0.0,
    }


async def amain(args: argparse.Namespace) -> int:
    kinds = ["ours", "orthanc"] if args.compare or not args.target else list(dict.fromkeys(args.target))
    work = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=args.workdir))
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    results: dict[str, dict[str, Any]] = {k: {"runs": []} for k in kinds}
    log(f"generating a {args.study_instances}-instance study ...")
    small = study_files(1, args.study_instances)
    stored_mb = sum(len(f) for f in small) / MB
    async with aiohttp.ClientSession(timeout=timeout) as session:
        servers = {}
        try:
            for k in kinds:
                servers[k] = await launch(k, work / k, session, args.startup_timeout)
            studies = {}
            for k, s in servers.items():
                log(f"uploading to {k} ...")
                studies[k] = await upload(session, s.url, small)
            for run in range(args.repeat):
                order = kinds if run % 2 == 0 else list(reversed(kinds))
                for k in order:
                    s = servers[k]
                    r = await download(session, f"{s.url}/studies/{studies[k]}/archive", s.proc.pid, False)
                    results[k]["runs"].append(r)
                    log(f"  {k}: {r['bytes'] / MB:.0f} MB in {r['seconds']:.2f} s, server CPU {r['cpu']:.2f} s")
                    m = await download(session, f"{s.url}/studies/{studies[k]}/media", s.proc.pid, False)
                    results[k].setdefault("media", []).append(m)
                    log(f"  {k} (media): {m['bytes'] / MB:.0f} MB in {m['seconds']:.2f} s, server CPU {m['cpu']:.2f} s")
            if args.big_instances:
                log(f"generating and uploading a {args.big_instances}-instance study (RSS) ...")
                big = study_files(2, args.big_instances)
                rss_kinds = [k for k in kinds if k == "ours" or args.rss_orthanc]
                for k in rss_kinds:
                    s = servers[k]
                    for i in range(0, len(big), 200):
                        sid = await upload(session, s.url, big[i : i + 200])
                    await asyncio.sleep(1)
                    r = await download(session, f"{s.url}/studies/{sid}/archive", s.proc.pid, True)
                    results[k]["rss"] = r
                    log(
                        f"  {k}: {r['bytes'] / MB:.0f} MB archive, RSS {r['rss_before_mb']:.0f} -> "
                        f"{r['rss_peak_mb']:.0f} MB"
                    )
                del big
        finally:
            for s in servers.values():
                await shutdown(s)
    print(
        f"\nStudyArchive: {args.study_instances} x 512x512 CT ({stored_mb:.0f} MB stored), {args.repeat} runs, medians"
    )
    print(f"{'target':10} {'archive MB/s':>13} {'study MB/s':>11} {'archive MB':>11} {'server CPU s':>13}")
    rates = {}
    for k in kinds:
        runs = results[k]["runs"]
        secs = statistics.median(r["seconds"] for r in runs)
        size = statistics.median(r["bytes"] for r in runs) / MB
        cpu = statistics.median(r["cpu"] for r in runs)
        rates[k] = size / secs
        print(f"{k:10} {size / secs:13.1f} {stored_mb / secs:11.1f} {size:11.1f} {cpu:13.2f}")
    if "ours" in rates and "orthanc" in rates:
        print(f"ours/orthanc (archive MB/s): {rates['ours'] / rates['orthanc']:.1f}x (goal: >= 5x)")
    media = {}
    for k in kinds:
        runs = results[k]["media"]
        media[k] = statistics.median(r["bytes"] for r in runs) / MB / statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"StudyMedia {k:10} {media[k]:8.1f} MB/s, server CPU {cpu:.2f} s")
    if "ours" in media and "orthanc" in media:
        print(f"ours/orthanc (media MB/s): {media['ours'] / media['orthanc']:.1f}x")
    for k in kinds:
        r = results[k].get("rss")
        if r:
            growth = r["rss_peak_mb"] - r["rss_before_mb"]
            share = 100 * growth / (r["bytes"] / MB)
            print(
                f"ArchiveRSS {k}: {r['bytes'] / MB:.0f} MB archive in {r['seconds']:.1f} s; RSS "
                f"{r['rss_before_mb']:.0f} -> {r['rss_peak_mb']:.0f} MB (+{growth:.0f} MB = {share:.1f}% of the "
                f"archive; goal < 10%)"
            )
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", action="store_true", help="ours and orthanc (the default)")
    ap.add_argument("--target", action="append", choices=("ours", "orthanc"))
    ap.add_argument("--study-instances", type=int, default=250, help="instances of the StudyArchive study")
    ap.add_argument("--big-instances", type=int, default=2000, help="instances of the ArchiveRSS study (0: skip)")
    ap.add_argument("--rss-orthanc", action="store_true", help="also measure Orthanc's RSS on the big study")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--request-timeout", type=float, default=900.0)
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    ap.add_argument("--workdir", help="parent folder of the temporary storages")
    ap.add_argument("--keep", action="store_true")
    args, _unknown = ap.parse_known_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
