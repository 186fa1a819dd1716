"""The read scenarios of scripts/bench (issue 15's table), as methods the Bench class takes on.

GetStudy, GetInstance, SimplifiedTags, ListStudies, ListInstances: sequential GETs on one
keep-alive connection (the light client of bench_http), latency p50 and p95.
GetFile and Preview rates: a fixed number of GETs of random instances shared by 1 and by 4
concurrent clients, files (or PNG previews) per second.
WadoRsStudy: WADO-RS retrieve of whole studies (multipart/related; type="application/dicom"),
body bytes per second of wall time, one client.
DiskSize: bytes the server's StorageDirectory and IndexDirectory take on disk (allocated
blocks, WAL and journal files included) after the dataset is stored.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import dicomgen
from bench_http import Check, LoadResult, run_load
from bench_servers import Target, cpu_seconds

WADO_ACCEPT = 'multipart/related; type="application/dicom"'
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _json_object(status: int, headers: dict[str, str], body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status} {body[:100]!r}"
    return None if body[:1] == b"{" else f"not a JSON object: {body[:60]!r}"


def _json_array(status: int, headers: dict[str, str], body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status} {body[:100]!r}"
    return None if body[:1] == b"[" else f"not a JSON array: {body[:60]!r}"


def _dicom_file(status: int, headers: dict[str, str], body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status} {body[:100]!r}"
    return None if body[128:132] == b"DICM" else f"not a DICOM file ({len(body)} bytes)"


def _png(status: int, headers: dict[str, str], body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status} {body[:100]!r}"
    return None if body.startswith(PNG_MAGIC) else f"not a PNG: {headers.get('content-type')}"


def multipart_parts(headers: dict[str, str], body: bytes) -> int:
    """Number of parts of a multipart body (-1 if the Content-Type has no boundary)."""
    ctype = headers.get("content-type", "")
    for param in ctype.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            delimiter = b"--" + value.strip('"').encode()
            return max(0, body.count(delimiter) - 1)
    return -1


def disk_usage(*folders: Path) -> tuple[int, int, int]:
    """(allocated bytes, apparent bytes, files) of every file below `folders`."""
    allocated = apparent = files = 0
    for folder in folders:
        for root, _dirs, names in os.walk(folder):
            for name in names:
                try:
                    st = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                allocated += st.st_blocks * 512
                apparent += st.st_size
                files += 1
    return allocated, apparent, files


def disk_usage_of(path: Path) -> tuple[int, int]:
    """(allocated, apparent) bytes of one file (0, 0 if it is gone)."""
    try:
        st = path.lstat()
    except OSError:
        return 0, 0
    return st.st_blocks * 512, st.st_size


class ReadScenarios:
    """Mixed into Bench: uses its args, dataset, errors, metric() and get_json()."""

    args: Any
    dataset: Any
    errors: list[str]

    def metric(self, *args: Any, **kwargs: Any) -> Any:  # provided by Bench
        raise NotImplementedError

    async def get_json(self, t: Target, path: str, accept: str | None = None) -> Any:  # provided by Bench
        raise NotImplementedError

    # -- helpers

    async def load(
        self,
        t: Target,
        paths: list[str],
        clients: int = 1,
        check: Check | None = None,
        headers: dict[str, str] | None = None,
    ) -> LoadResult:
        """run_load in a thread (the event loop stays free), errors noted under the caller's name;
        with the CPU time the server's processes spent meanwhile (a managed target): a figure
        that moves less than latencies and rates with what else the machine is doing."""
        before = cpu_seconds(t.pid) if t.pid is not None else None
        res = await asyncio.to_thread(run_load, t.url, paths, clients, check, headers, self.args.request_timeout)
        if before is not None and t.pid is not None:
            res.server_cpu_s = cpu_seconds(t.pid) - before
        return res

    def note_cpu(self, t: Target, scenario: str, label: str, res: LoadResult) -> None:
        """A row of server CPU per request beside the scenario's own (managed targets only)."""
        if res.server_cpu_us is not None:
            self.metric(t, scenario, f"server CPU, {label}", "us/req", "lower").samples.append(res.server_cpu_us)

    def note_errors(self, t: Target, what: str, res: LoadResult) -> None:
        """Failed requests make the run an error (the figure then covers the good answers only)."""
        if res.errors:
            self.errors.append(f"{t.name} {what}: {len(res.errors)} failed requests, first: {res.errors[0]}")

    async def ids(self, t: Target, level: str) -> list[str]:
        """Sorted ids of every resource of `level` ("instances" or "studies"), cached per target."""
        cache = t.instance_ids if level == "instances" else t.study_ids
        if not cache:
            cache.extend(sorted(await self.get_json(t, f"/{level}")))
        return cache

    async def random_paths(self, t: Target, level: str, template: str, n: int, seed: int) -> list[str]:
        """`n` paths built from random ids of `level` (the same ids on every target)."""
        ids = await self.ids(t, level)
        rng = random.Random(seed)
        return [template.format(ids[rng.randrange(len(ids))]) for _ in range(n)]

    async def latency(
        self, t: Target, scenario: str, label: str, paths: list[str], check: Check, goal: str = "le"
    ) -> LoadResult:
        """Sequential GETs of `paths` on one connection: latency p50 (the goal) and p95."""
        res = await self.load(t, paths, 1, check)
        m = self.metric(t, scenario, label, "ms", "lower", ("median", "p95"), goal=goal)
        m.samples.extend(res.latencies_ms)
        self.note_cpu(t, scenario, "1 client", res)
        self.note_errors(t, f"{scenario} {label}", res)
        return res

    async def rates(
        self, t: Target, scenario: str, paths: list[str], check: Check, unit: str, clients: tuple[int, ...] = (1, 4)
    ) -> None:
        """The same `paths` fetched by 1 and by 4 concurrent clients: answers per second."""
        for c in clients:
            res = await self.load(t, paths, c, check)
            m = self.metric(t, scenario, f"rate, {c} client{'s' if c > 1 else ''}", unit, "higher", goal="ge")
            m.samples.append(res.rate)
            self.note_cpu(t, scenario, f"{c} client{'s' if c > 1 else ''}", res)
            m.info["MB/s"] = round(res.nbytes / res.seconds / 1e6, 1) if res.seconds else None
            self.note_errors(t, f"{scenario} {c} clients", res)

    # -- scenarios

    async def sc_get_study(self, t: Target, rep: int) -> None:
        """GET /studies/{id} of random studies, one after the other."""
        paths = await self.random_paths(t, "studies", "/studies/{}", self.args.calls, 3000 + rep)
        await self.latency(t, "GetStudy", "GET /studies/{id}", paths, _json_object)

    async def sc_get_instance(self, t: Target, rep: int) -> None:
        """GET /instances/{id} of random instances, one after the other."""
        paths = await self.random_paths(t, "instances", "/instances/{}", self.args.calls, 3100 + rep)
        await self.latency(t, "GetInstance", "GET /instances/{id}", paths, _json_object)

    async def sc_simplified_tags(self, t: Target, rep: int) -> None:
        """GET /instances/{id}/simplified-tags of random instances, one after the other."""
        paths = await self.random_paths(t, "instances", "/instances/{}/simplified-tags", self.args.calls, 3200 + rep)
        await self.latency(t, "SimplifiedTags", "GET /instances/{id}/simplified-tags", paths, _json_object)

    async def _list(self, t: Target, scenario: str, level: str, expected: int) -> None:
        answer = await self.get_json(t, f"/{level}")  # also the untimed warm-up
        label = f"GET /{level} ({expected} ids)"
        await self.latency(t, scenario, label, [f"/{level}"] * self.args.list_calls, _json_array)
        m = self.metric(t, scenario, label, "ms", "lower", ("median", "p95"))
        m.info.update({"items": len(answer), "expected": expected})
        if len(answer) != expected:
            m.info["mismatches"] = m.info.get("mismatches", 0) + 1
            self.errors.append(f"{t.name} {scenario}: {len(answer)} ids, expected {expected}")

    async def sc_list_studies(self, t: Target, rep: int) -> None:
        """GET /studies: every study id of the dataset."""
        await self._list(t, "ListStudies", "studies", len(self.dataset.studies))

    async def sc_list_instances(self, t: Target, rep: int) -> None:
        """GET /instances: every instance id of the dataset."""
        await self._list(t, "ListInstances", "instances", self.dataset.instances)

    async def get_file_rates(self, t: Target, rep: int) -> None:
        """GET /instances/{id}/file of random instances by 1 and 4 clients: files/s."""
        paths = await self.random_paths(t, "instances", "/instances/{}/file", self.args.rate_files, 3300 + rep)
        await self.rates(t, "GetFile", paths, _dicom_file, "files/s")

    async def sc_preview(self, t: Target, rep: int) -> None:
        """GET /instances/{id}/preview (PNG) of random instances by 1 and 4 clients: previews/s."""
        paths = await self.random_paths(t, "instances", "/instances/{}/preview", self.args.previews, 3400 + rep)
        await self.rates(t, "Preview", paths, _png, "previews/s")
        m = self.metric(t, "Preview", "rate, 1 client", "previews/s", "higher")
        m.info["image"] = f"{self.dataset.rows}x{self.dataset.rows}"

    async def sc_wado_rs_study(self, t: Target, rep: int) -> None:
        """WADO-RS GET /dicom-web/studies/{uid} of random studies, whole multipart bodies: MB/s."""
        ds = self.dataset
        rng = random.Random(3500 + rep)
        studies = [ds.studies[rng.randrange(len(ds.studies))] for _ in range(self.args.wado_studies)]
        paths = [f"/dicom-web/studies/{dicomgen.uid('study', p, s)}" for p, s in studies]
        per_study = ds.series_per_study * ds.instances_per_series
        parts: list[int] = []

        def check(status: int, headers: dict[str, str], body: bytes) -> str | None:
            if status != 200:
                return f"HTTP {status} {body[:100]!r}"
            n = multipart_parts(headers, body)
            parts.append(n)
            return None if n == per_study else f"{n} parts, expected {per_study}"

        res = await self.load(t, paths, 1, check, {"Accept": WADO_ACCEPT})
        m = self.metric(t, "WadoRsStudy", f"study of {per_study} instances, 1 client", "MB/s", "higher", goal="ge")
        m.samples.append(res.nbytes / res.seconds / 1e6 if res.seconds else 0.0)
        m.info.update({"items": sorted(set(parts)), "expected": per_study, "studies/s": round(res.rate, 1)})
        self.note_errors(t, "WadoRsStudy", res)

    async def sc_disk_size(self, t: Target, rep: int) -> None:
        """Allocated bytes of the storage and index folders after the dataset is stored."""
        if not t.managed or t.directory is None:
            raise RuntimeError(f"{t.name} is not a server started here: its folders are unknown")
        storage, index = t.directory / "storage", t.directory / "index"
        total, apparent, files = disk_usage(storage, index)
        index_alloc, _, _ = disk_usage(index) if index != storage else (0, 0, 0)
        n = self.dataset.instances
        m = self.metric(t, "DiskSize", "files + index", "MB", "lower")
        m.samples.append(total / 1e6)
        m.info.update({"apparent_MB": round(apparent / 1e6, 1), "files": files, "instances": n})
        wal = sum(disk_usage_of(f)[0] for f in index.glob("*-wal")) if index.is_dir() else 0
        mi = self.metric(t, "DiskSize", "index (+WAL)", "MB", "lower")
        mi.samples.append(index_alloc / 1e6)
        mi.info["wal_MB"] = round(wal / 1e6, 1)
        self.metric(t, "DiskSize", "per instance", "bytes", "lower", goal="le").samples.append(total / n)
