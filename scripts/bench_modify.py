"""Modification scenarios of scripts/bench (issue 17): a whole study modified and anonymized.

ModifyStudy     POST /studies/{id}/modify {"Replace": {"PatientName": ...}, "KeepSource": true}
                (synchronous) of one dataset study: seconds and instances/s; in the --ct phase
                that is a 500-instance 512x512 CT study.
AnonymizeStudy  POST /studies/{id}/anonymize {"KeepSource": true} (synchronous), the same figures.

Each run also samples the server's RSS every 50 ms while the job runs: "RSS growth" is the peak
during the job minus the RSS just before it (flat memory: it does not grow with the number of
instances). The copy made by each run is deleted afterwards (untimed), so every run starts from
the same storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench_servers import Target, log, memory_mb


class ModifyScenarios:
    """Mixed into Bench: uses its args, dataset, errors, metric(), get_json() and post_json()."""

    args: Any
    dataset: Any
    errors: list[str]

    def metric(self, *args: Any, **kwargs: Any) -> Any:  # provided by Bench
        raise NotImplementedError

    async def get_json(self, t: Target, path: str, accept: str | None = None) -> Any:  # provided by Bench
        raise NotImplementedError

    async def post_json(self, t: Target, path: str, doc: Any) -> Any:  # provided by Bench
        raise NotImplementedError

    async def _largest_study(self, t: Target) -> tuple[str, int]:
        """The dataset study with the most instances (the source of every run)."""
        best = ("", -1)
        for sid in await self.get_json(t, "/studies"):
            n = len(await self.get_json(t, f"/studies/{sid}/instances?expand=false"))
            if n > best[1]:
                best = (sid, n)
        if not best[0]:
            raise RuntimeError("no study to modify")
        return best

    async def _modify_run(self, t: Target, scenario: str, verb: str, body: dict[str, Any]) -> None:
        study, count = await self._largest_study(t)
        pid = t.pid
        samples: list[float] = []
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                if pid is not None:
                    samples.append(memory_mb(pid, "VmRSS"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)

        before = memory_mb(pid, "VmRSS") if pid is not None else 0.0
        sampler = asyncio.ensure_future(sample())
        t0 = time.perf_counter()
        try:
            answer = await self.post_json(t, f"/studies/{study}/{verb}", body)
        finally:
            seconds = time.perf_counter() - t0
            stop.set()
            await sampler
        label = f"{count} instances, synchronous, KeepSource"
        self.metric(t, scenario, label, "s", "lower").samples.append(seconds)
        self.metric(t, scenario, f"{label} rate", "inst/s", "higher").samples.append(count / max(seconds, 1e-9))
        if samples:
            growth = max(samples) - before
            m = self.metric(t, scenario, "RSS growth during the job", "MB", "lower")
            m.samples.append(growth)
            m.info["rss_before_MB"] = round(before, 1)
        new_id = answer.get("ID") if isinstance(answer, dict) else None
        if not new_id or new_id == study:
            self.errors.append(f"{t.name} {scenario}: unexpected answer {str(answer)[:200]}")
            return
        n = len(await self.get_json(t, f"/studies/{new_id}/instances?expand=false"))
        if n != count:
            self.errors.append(f"{t.name} {scenario}: {n} instances in the copy, {count} expected")
        async with t.http.delete(f"{t.url}/studies/{new_id}", timeout=self.args.request_timeout) as resp:
            await resp.read()
        log(f"  {t.name} {scenario}: {count} instances in {seconds:.2f} s")

    async def sc_modify_study(self, t: Target, rep: int) -> None:
        """POST /studies/{id}/modify (Replace PatientName, KeepSource, synchronous)."""
        body = {"Replace": {"PatientName": f"BENCH^MODIFIED{rep}"}, "KeepSource": True, "Synchronous": True}
        await self._modify_run(t, "ModifyStudy", "modify", body)

    async def sc_anonymize_study(self, t: Target, rep: int) -> None:
        """POST /studies/{id}/anonymize (KeepSource, synchronous)."""
        await self._modify_run(t, "AnonymizeStudy", "anonymize", {"KeepSource": True, "Synchronous": True})
