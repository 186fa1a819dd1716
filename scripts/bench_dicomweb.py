"""The DICOMweb scenarios of scripts/bench (StowRS, StudyMetadata, QidoRS), as methods the
Bench class takes on; they run only when named with --scenario."""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any

import aiohttp
import dicomgen
import orjson
from bench_servers import Target, log

NAME_QUERY = "SMI*"
STOW_PATIENT_BASE = 950_000  # patient indices of StowRS studies (one per repetition)
METADATA_PATIENT_BASE = 970_000  # patient indices of studies uploaded for StudyMetadata
STOW_SERIES = 5  # series of a StowRS study
METADATA_INSTANCES = 500  # instances of the StudyMetadata study
METADATA_WARM = 10  # metadata requests after the first (cold) one
DICOM_JSON = "application/dicom+json"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"


class DicomwebScenarios:
    """Mixed into Bench: uses its args, salt, metric(), timed(), get_json(), upload_batch(),
    study_uid(), errors and dataset."""

    args: Any
    salt: int
    errors: list[str]
    dataset: Any
    timeout: Any
    _study_cache: Any
    _stow_cache: Any

    def study_specs(self, patient: int, n: int, name: str) -> list[dicomgen.Spec]:
        """`n` instances of one new study of patient `patient`, spread over STOW_SERIES series."""
        per_series = math.ceil(n / min(STOW_SERIES, n))
        return [
            dicomgen.Spec(
                patient=patient,
                study=self.salt,
                series=i // per_series,
                instance=i % per_series,
                patient_name=name,
                rows=self.args.rows,
                columns=self.args.rows,
            )
            for i in range(n)
        ]

    def study_instances(self, patient: int, n: int, name: str) -> list[bytes]:
        """Pre-generated instances of one new study (the same bytes for every target)."""
        key = (patient, n, self.args.rows)
        if self._study_cache and self._study_cache[0] == key:
            return self._study_cache[1]
        self._study_cache = None
        data = [dicomgen.make(spec) for spec in self.study_specs(patient, n, name)]
        self._study_cache = (key, data)
        return data

    def stow_request(self, rep: int) -> tuple[str, bytes]:
        """(boundary, multipart/related body) of repetition `rep` of StowRS, built before timing."""
        if self._stow_cache and self._stow_cache[0] == rep:
            return self._stow_cache[1], self._stow_cache[2]
        self._stow_cache = None
        boundary = f"bench-stow-{os.urandom(16).hex()}"
        head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body = bytearray()
        for spec in self.study_specs(STOW_PATIENT_BASE + rep, self.args.stow_count, "BENCH^STOW"):
            data = dicomgen.make(spec)
            if boundary.encode() in data:  # a 128-bit random boundary: practically never
                raise RuntimeError("multipart boundary occurs in an instance")
            body += head + data + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        self._stow_cache = (rep, boundary, bytes(body))
        return boundary, self._stow_cache[2]

    async def sc_stow_rs(self, t: Target, rep: int) -> None:
        """STOW-RS of --stow-count new instances of one study in a single request: instances/s."""
        n = self.args.stow_count
        patient = STOW_PATIENT_BASE + rep
        boundary, body = self.stow_request(rep)
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": DICOM_JSON,
        }
        for attempt in range(3):  # a server may close a keep-alive connection under us
            try:
                t0 = time.perf_counter()
                async with t.http.post(
                    f"{t.url}/dicom-web/studies", data=body, headers=headers, timeout=self.timeout
                ) as resp:
                    answer = await resp.read()
                    status = resp.status
                seconds = time.perf_counter() - t0
                break
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                if attempt == 2:
                    raise
        referenced, failed = -1, -1
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            doc = orjson.loads(answer)
            referenced = len(doc.get(REFERENCED_SOP_SEQUENCE, {}).get("Value", []))
            failed = len(doc.get(FAILED_SOP_SEQUENCE, {}).get("Value", []))
        m = self.metric(t, "StowRS", f"{n} instances in 1 request", "inst/s", "higher")
        m.info.setdefault("status", []).append(status)
        m.info.setdefault("referenced", []).append(referenced)
        m.info["expected"] = n
        if failed > 0:
            m.info.setdefault("failed", []).append(failed)
        if status != 200 or referenced != n:
            self.errors.append(
                f"{t.name} StowRS run {rep + 1}: HTTP {status}, {referenced}/{n} referenced, "
                f"{failed} failed: {answer[:200]!r}"
            )
        if status == 200:
            m.samples.append(n / seconds)
        if referenced > 0:
            t.stow_studies[rep] = (self.study_uid(patient), referenced)

    async def sc_study_metadata(self, t: Target, rep: int) -> None:
        """GET /dicom-web/studies/{uid}/metadata of a 500-instance study: cold, then warm."""
        n = METADATA_INSTANCES
        stowed = t.stow_studies.get(rep)
        if stowed and stowed[1] == n:
            study_uid, source = stowed[0], "StowRS"
        else:
            patient = METADATA_PATIENT_BASE + rep
            data = self.study_instances(patient, n, "BENCH^METADATA")
            log(f"  uploading a {n}-instance study through POST /instances (not timed)")
            _, stored = await self.upload_batch(t, data, 8)
            if stored != n:
                self.errors.append(f"{t.name} StudyMetadata run {rep + 1}: {stored}/{n} instances stored")
            study_uid, source = self.study_uid(patient), "POST /instances"
        path = f"/dicom-web/studies/{study_uid}/metadata"
        cold = self.metric(t, "StudyMetadata", f"{n} instances, first request (cold)", "ms", "lower")
        warm = self.metric(t, "StudyMetadata", f"{n} instances, next {METADATA_WARM} (warm)", "ms", "lower")
        counts = []
        for i in range(1 + METADATA_WARM):
            ms, answer = await self.timed(self.get_json(t, path, accept=DICOM_JSON))
            (warm if i else cold).samples.append(ms)
            counts.append(len(answer) if isinstance(answer, list) else -1)
        for m, got in ((cold, counts[:1]), (warm, counts[1:])):
            m.info.update({"items": got[-1], "expected": n, "source": source})
            bad = sum(c != n for c in got)
            if bad:
                m.info["mismatches"] = m.info.get("mismatches", 0) + bad
        if any(c != n for c in counts):
            self.errors.append(f"{t.name} StudyMetadata run {rep + 1}: items {sorted(set(counts))}, expected {n}")

    async def sc_qido_rs(self, t: Target, rep: int) -> None:
        """QIDO-RS GET /dicom-web/studies?PatientName=SMI* on the dataset (same query as ToolsFind)."""
        assert self.dataset is not None
        expected = self.dataset.expected_name_matches()
        m = self.metric(t, "QidoRS", f"PatientName {NAME_QUERY}", "ms", "lower", ("median", "p95"))
        for _ in range(self.args.queries):
            ms, answer = await self.timed(
                self.get_json(t, f"/dicom-web/studies?PatientName={NAME_QUERY}", accept=DICOM_JSON)
            )
            m.samples.append(ms)
            m.info["matches"] = len(answer)
            m.info["expected"] = expected
            if len(answer) != expected:
                m.info["mismatches"] = m.info.get("mismatches", 0) + 1
        if m.info.get("mismatches"):
            self.errors.append(f"{t.name} QidoRS: {m.info['matches']} matches, expected {expected}")
