"""A minimal jobs engine (Orthanc's /jobs): long operations run as asyncio tasks and report their
State and Progress. In memory, like Orthanc with SaveJobs off."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ErrorCode, OrthancError
from .context import now_iso

MAX_JOBS = 100


@dataclass
class Job:
    """One job: what Orthanc reports in /jobs/{id}."""

    id: str
    type: str
    priority: int
    content: dict[str, Any] = field(default_factory=dict)
    state: str = "Pending"
    progress: int = 0
    creation_time: str = field(default_factory=now_iso)
    completion_time: str | None = None
    error_code: int = 0
    error_description: str = "Success"
    error_details: str = ""
    started: float = 0.0
    runtime: float = 0.0
    task: asyncio.Task[Any] | None = field(default=None, repr=False)
    spec: dict[str, Any] | None = None
    """What a job of a registered type needs to run again (SaveJobs, resubmit); JSON-serialisable."""
    user_data: Any = None
    outputs: dict[str, tuple[bytes | Path, str, str]] = field(default_factory=dict, repr=False)
    """Downloadable results, /jobs/{id}/{key}: key -> (body or temporary file, MIME type, file
    name). A temporary file belongs to the engine from then on (deleted with the job)."""

    async def checkpoint(self, progress: int | None = None) -> None:
        """Called by a job between two units of work: records Progress, and is where a job
        waits while paused and stops when cancelled (the engine fills in both)."""
        if progress is not None:
            self.progress = max(0, min(100, int(progress)))
        await asyncio.sleep(0)

    def set_output(self, key: str, body: bytes | Path, mime: str, filename: str = "") -> None:
        """Publish a result the client downloads from /jobs/{id}/{key} (archive, modified file)."""
        self.outputs[key] = (body, mime, filename)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Content": self.content,
            "CreationTime": self.creation_time,
            "EffectiveRuntime": round(self.runtime if self.completion_time else time.monotonic() - self.started, 3)
            if self.started
            else 0.0,
            "ErrorCode": self.error_code,
            "ErrorDescription": self.error_description,
            "ErrorDetails": self.error_details,
            "ID": self.id,
            "Priority": self.priority,
            "Progress": self.progress,
            "State": self.state,
            "Timestamp": now_iso(),
            "Type": self.type,
        }
        if self.completion_time:
            out["CompletionTime"] = self.completion_time
        return out


class JobsEngine:
    """Submits coroutines as jobs and keeps the newest ones."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._factories: dict[str, Callable[[dict[str, Any]], Callable[[Job], Awaitable[dict[str, Any]]]]] = {}
        self.listener: Callable[[str, str], None] | None = None
        """Told of each job event ("Submitted", "Success", "Failure") and the job's ID (Lua)."""

    def register(
        self, job_type: str, factory: Callable[[dict[str, Any]], Callable[[Job], Awaitable[dict[str, Any]]]]
    ) -> None:
        """Declare how to rebuild a job of `job_type` from its spec (SaveJobs after a restart,
        resubmit of a failed job). The engine fills this in."""
        self._factories[job_type] = factory

    def submit(
        self,
        job_type: str,
        run: Callable[[Job], Awaitable[dict[str, Any]]],
        priority: int = 0,
        *,
        spec: dict[str, Any] | None = None,
        user_data: Any = None,
    ) -> Job:
        job = Job(str(uuid.uuid4()), job_type, priority, spec=spec, user_data=user_data)
        self._jobs[job.id] = job
        while len(self._jobs) > MAX_JOBS:
            oldest = next(iter(self._jobs.values()))
            if oldest.state in ("Pending", "Running"):
                break
            self._jobs.popitem(last=False)
        job.task = asyncio.get_running_loop().create_task(self._run(job, run), name=f"job-{job.id}")
        if self.listener is not None:
            self.listener("Submitted", job.id)
        return job

    async def _run(self, job: Job, run: Callable[[Job], Awaitable[dict[str, Any]]]) -> None:
        job.state = "Running"
        job.started = time.monotonic()
        try:
            job.content.update(await run(job))
            job.state = "Success"
            job.progress = 100
        except asyncio.CancelledError:
            job.state = "Failure"
            job.error_code, job.error_description = ErrorCode.CANCELED_JOB.code, ErrorCode.CANCELED_JOB.message
            raise
        except OrthancError as err:
            job.state = "Failure"
            job.error_code, job.error_description = err.code.code, err.code.message
            job.error_details = err.details or ""
        except Exception as exc:
            job.state = "Failure"
            job.error_code, job.error_description = ErrorCode.INTERNAL_ERROR.code, ErrorCode.INTERNAL_ERROR.message
            job.error_details = str(exc)
        finally:
            job.runtime = time.monotonic() - job.started
            job.completion_time = now_iso()
            if self.listener is not None:
                self.listener("Success" if job.state == "Success" else "Failure", job.id)

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE) from None

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    def cancel(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.task is not None and not job.task.done():
            job.task.cancel()

    async def close(self) -> None:
        for job in self._jobs.values():
            if job.task is not None and not job.task.done():
                job.task.cancel()
