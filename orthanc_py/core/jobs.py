"""The jobs engine (Orthanc's /jobs): long operations run as jobs that can be listed, paused,
resumed, cancelled, resubmitted and deleted, `ConcurrentJobs` at a time, highest priority
first, the last `JobsHistorySize` finished ones kept; with `SaveJobs`, the jobs of types that
can be rebuilt (`register`) are saved in the index and taken up again after a restart.

A job is an `async run(job) -> dict` (merged into its Content). Orthanc runs a job step by step
and pauses or cancels it between two steps; here the steps are the calls of
`job.checkpoint()`: a pause there suspends the coroutine (its worker goes to the next pending
job) until the job is resumed and a worker is free again; a cancel there ends it. State machine
as Orthanc's JobsRegistry (Orthanc Book, "Jobs": Pending, Running, Paused, Success, Failure,
Retry)."""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import heapq
import itertools
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, OrthancError

if TYPE_CHECKING:
    from ..index.base import Index, Transaction

log = logging.getLogger("orthanc_py.jobs")

PENDING = "Pending"
RUNNING = "Running"
PAUSED = "Paused"
SUCCESS = "Success"
FAILURE = "Failure"
RETRY = "Retry"  # Orthanc's state for a job waiting to run again; no job type uses it
FINISHED = (SUCCESS, FAILURE)

SAVE_PERIOD = 10.0
"""Seconds between two saves of the running jobs' progress (Orthanc: every 10 s)."""
SAVE_DELAY = 0.05
"""Seconds from a job's change to its save (Orthanc saves a new job within 100 ms)."""

Run = Callable[["Job"], Awaitable[dict[str, Any]]]
Factory = Callable[[dict[str, Any]], Run]


def utc_timestamp(at: float | None = None) -> str:
    """Orthanc's job times: UTC, to the microsecond (`20190306T095223.753851`)."""
    moment = _dt.datetime.fromtimestamp(time.time() if at is None else at, _dt.UTC)
    return moment.strftime("%Y%m%dT%H%M%S.%f")


def request_priority(body: Any) -> int:
    """The "Priority" of a request that submits a job (0 when absent); Orthanc reads it with
    SerializationToolbox::ReadInteger: anything but an integer is a BadFileFormat."""
    if not isinstance(body, dict) or "Priority" not in body:
        return 0
    value = body["Priority"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Integer value expected in field: Priority")
    return value


def request_synchronous(body: Any, default: bool = True) -> bool:
    """Whether a request that submits a job waits for it (Orthanc's IsSynchronousJobRequest):
    "Synchronous" wins over "Asynchronous"; either must be a Boolean (BadFileFormat)."""
    if isinstance(body, dict):
        for key, synchronous in (("Synchronous", True), ("Asynchronous", False)):
            if key in body:
                value = body[key]
                if not isinstance(value, bool):
                    raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"Boolean value expected in field: {key}")
                return value if synchronous else not value
    return default


class JobCanceled(BaseException):
    """Raised at a checkpoint of a job that was cancelled (a BaseException: a job's own
    `except Exception` does not swallow it)."""


@dataclass(eq=False)
class Job:
    """One job: what Orthanc reports in /jobs/{id}, and what the engine needs to run it."""

    id: str
    type: str
    priority: int
    content: dict[str, Any] = field(default_factory=dict)
    state: str = PENDING
    progress: int = 0
    """Percent, as Orthanc shows it (rounded)."""
    creation_time: str = field(default_factory=utc_timestamp)
    completion_time: str | None = None
    error_code: int = 0
    error_description: str = "Success"
    error_details: str = ""
    runtime: float = 0.0
    """Seconds spent Running before the current run (EffectiveRuntime)."""
    task: asyncio.Task[Any] | None = field(default=None, repr=False)
    spec: dict[str, Any] | None = None
    """What a job of a registered type needs to run again (SaveJobs, resubmit); JSON-serialisable.
    A job may update it as it goes (e.g. its position): it is saved with the job."""
    user_data: Any = None
    outputs: dict[str, tuple[bytes | Path, str, str]] = field(default_factory=dict, repr=False)
    """Downloadable results, /jobs/{id}/{key}: key -> (body or temporary file, MIME type, file
    name). A temporary file belongs to the engine from then on (deleted with the job)."""
    last_change: float = field(default_factory=time.time, repr=False)
    _since: float | None = field(default=None, repr=False)
    _run: Run | None = field(default=None, repr=False)
    _engine: JobsEngine | None = field(default=None, repr=False)
    _ticket: int = field(default=0, repr=False)
    _generation: int = field(default=0, repr=False)
    _pause_requested: bool = field(default=False, repr=False)
    _cancel_requested: bool = field(default=False, repr=False)
    _checkpointed: bool = field(default=False, repr=False)
    _go: asyncio.Event | None = field(default=None, repr=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def checkpoint(self, progress: float | None = None) -> None:
        """Called by a job between two units of work: records Progress (percent), and is where
        a job waits while paused and stops (JobCanceled) when cancelled."""
        if progress is not None:
            self.progress = max(0, min(100, round(progress)))
        engine = self._engine
        if engine is None:
            await asyncio.sleep(0)
            return
        self._checkpointed = True
        generation = self._generation
        if self._cancel_requested:
            raise JobCanceled
        if self._pause_requested:
            go = self._go = asyncio.Event()
            engine._suspend(self)
            await go.wait()
            if self._go is go:
                self._go = None
            if self._generation != generation or self.state != RUNNING:
                raise JobCanceled
        else:
            await asyncio.sleep(0)

    def set_output(self, key: str, body: bytes | Path, mime: str, filename: str = "") -> None:
        """Publish a result the client downloads from /jobs/{id}/{key} (archive, modified file)."""
        old = self.outputs.get(key)
        self.outputs[key] = (body, mime, filename)
        if old is not None and isinstance(old[0], Path) and old[0] != body:
            _remove_file(old[0])

    def delete_output(self, key: str) -> bool:
        """DELETE /jobs/{id}/{key}: forget the output (its temporary file removed)."""
        item = self.outputs.pop(key, None)
        if item is None:
            return False
        if isinstance(item[0], Path):
            _remove_file(item[0])
        return True

    def delete_outputs(self) -> None:
        for key in list(self.outputs):
            self.delete_output(key)

    async def wait(self) -> Job:
        """Until the job has finished (Success or Failure); the job."""
        await self._done.wait()
        return self

    async def answer(self, synchronous: bool) -> dict[str, Any]:
        """Orthanc's answer to a request that submitted this job: its ID and path at once, or
        (SubmitAndWait) its Content once it succeeded, its error as an OrthancError if not."""
        if not synchronous:
            return {"ID": self.id, "Path": f"/jobs/{self.id}"}
        await self.wait()
        if self.state != "Success":
            try:
                code = ErrorCode.from_code(self.error_code)
            except ValueError:
                code = ErrorCode.INTERNAL_ERROR
            raise OrthancError(code, self.error_details or None)
        return dict(self.content)

    def effective_runtime(self) -> float:
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return self.runtime + running

    def to_json(self) -> dict[str, Any]:
        """GET /jobs/{id}, keys and formats as Orthanc's JobInfo::Format."""
        now = time.time()
        runtime = int(self.effective_runtime() * 1000) / 1000
        out: dict[str, Any] = {
            "Content": self.content,
            "CreationTime": self.creation_time,
            "EffectiveRuntime": runtime,
            "ErrorCode": self.error_code,
            "ErrorDescription": self.error_description,
            "ErrorDetails": self.error_details,
            "ID": self.id,
            "Priority": self.priority,
            "Progress": self.progress,
            "State": self.state,
            "Timestamp": utc_timestamp(now),
            "Type": self.type,
        }
        if self.state == RUNNING and self.progress > 0 and runtime > 0:
            fraction = self.progress / 100
            out["EstimatedTimeOfArrival"] = utc_timestamp(now + runtime / fraction * (1 - fraction))
        if self.state in FINISHED:
            out["CompletionTime"] = self.completion_time or utc_timestamp(self.last_change)
        if self.user_data is not None:  # Orthanc 1.12.9: the "UserData" of the request
            out["UserData"] = self.user_data
        return out

    # --- persistence (SaveJobs) ------------------------------------------------------------

    def serialize(self) -> str:
        return json.dumps(
            {
                "Type": self.type,
                "Spec": self.spec,
                "Priority": self.priority,
                "State": self.state,
                "CreationTime": self.creation_time,
                "CompletionTime": self.completion_time,
                "LastChange": self.last_change,
                "Runtime": self.effective_runtime(),
                "Progress": self.progress,
                "ErrorCode": self.error_code,
                "ErrorDescription": self.error_description,
                "ErrorDetails": self.error_details,
                "Content": self.content,
                "UserData": self.user_data,
            },
            default=str,
        )

    @classmethod
    def unserialize(cls, job_id: str, text: str) -> Job:
        d = json.loads(text)
        return cls(
            job_id,
            str(d["Type"]),
            int(d.get("Priority", 0)),
            content=dict(d.get("Content") or {}),
            state=str(d.get("State", PENDING)),
            progress=int(d.get("Progress", 0)),
            creation_time=str(d.get("CreationTime") or utc_timestamp()),
            completion_time=d.get("CompletionTime"),
            error_code=int(d.get("ErrorCode", 0)),
            error_description=str(d.get("ErrorDescription", "Success")),
            error_details=str(d.get("ErrorDetails", "")),
            runtime=float(d.get("Runtime", 0.0)),
            spec=d.get("Spec"),
            user_data=d.get("UserData"),
            last_change=float(d.get("LastChange", time.time())),
        )


def _write_jobs(txn: Transaction, rows: list[tuple[str, str]], gone: list[str]) -> None:
    if rows:
        txn.save_jobs(rows)
    if gone:
        txn.delete_jobs(gone)


def _remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove the job output %s: %s", path, exc)


class JobsEngine:
    """The registry of jobs and the workers that run them."""

    def __init__(self, concurrent_jobs: int = 2, history_size: int = 10) -> None:
        self._jobs: dict[str, Job] = {}
        self._pending: list[tuple[int, int, int, Job]] = []  # (-priority, order, ticket, job)
        self._order = itertools.count()
        self._completed: deque[Job] = deque()
        self._running = 0
        self._factories: dict[str, Factory] = {}
        self._waiting_type: dict[str, list[Job]] = {}
        self._index: Index | None = None
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._saver: asyncio.Task[None] | None = None
        self._closing = False
        self.workers = 1
        self.history_size = 10
        self.configure(concurrent_jobs, history_size)
        self.listener: Callable[[str, str], None] | None = None
        """Told of each job event ("Submitted", "Success", "Failure") and the job's ID (Lua)."""

    def configure(self, concurrent_jobs: int, history_size: int) -> None:
        """ConcurrentJobs (0: one per CPU core, as Orthanc) and JobsHistorySize."""
        self.workers = max(1, concurrent_jobs or (os.cpu_count() or 1))
        self.history_size = max(0, history_size)
        self._forget_old()

    def factory(self, job_type: str) -> Factory | None:
        """The factory registered for `job_type` (rest.lazy's stand-in replaces itself with it)."""
        return self._factories.get(job_type)

    def register(self, job_type: str, factory: Factory) -> None:
        """Declare how to rebuild a job of `job_type` from its spec (SaveJobs after a restart,
        resubmit). Saved jobs of that type that were waiting for it become runnable."""
        self._factories[job_type] = factory
        for job in self._waiting_type.pop(job_type, []):
            if job.state == PENDING:
                self._push(job)
        self._dispatch()

    # --- submitting and scheduling ---------------------------------------------------------

    def submit(
        self,
        job_type: str,
        run: Run,
        priority: int = 0,
        *,
        spec: dict[str, Any] | None = None,
        user_data: Any = None,
    ) -> Job:
        """Queue a job (it starts as soon as a worker is free and no job of higher priority
        waits); its id is /jobs/{id}."""
        job = Job(str(uuid.uuid4()), job_type, int(priority), spec=spec, user_data=user_data)
        job._run = run
        job._engine = self
        self._jobs[job.id] = job
        self._push(job)
        self._save(job)
        self._signal("Submitted", job)
        self._dispatch()
        return job

    def _signal(self, event: str, job: Job) -> None:
        """Tell the listener (Lua's OnJob* callbacks); its failure is not the job's."""
        if self.listener is not None:
            try:
                self.listener(event, job.id)
            except Exception:
                log.exception("job listener failed on %s of %s", event, job.id)

    def _push(self, job: Job) -> None:
        job._ticket += 1
        heapq.heappush(self._pending, (-job.priority, next(self._order), job._ticket, job))

    def _dispatch(self) -> None:
        """Start pending jobs, highest priority first (then oldest), while workers are free."""
        while self._running < self.workers and self._pending and not self._closing:
            _prio, _order, ticket, job = heapq.heappop(self._pending)
            if ticket != job._ticket or job.state != PENDING:
                continue  # paused, cancelled or re-queued since
            self._running += 1
            self._set_state(job, RUNNING)
            job._since = time.monotonic()
            job.error_code, job.error_description, job.error_details = 0, "Success", ""
            job._pause_requested = job._cancel_requested = False
            if job._go is not None:  # a job paused at a checkpoint, resumed
                job._go.set()
            else:
                job.task = asyncio.get_running_loop().create_task(self._execute(job), name=f"job-{job.id}")

    def _set_state(self, job: Job, state: str) -> None:
        if job._since is not None:  # leaving Running: Orthanc counts the runtime in that state
            job.runtime += time.monotonic() - job._since
            job._since = None
        job.state = state
        job.last_change = time.time()
        self._save(job)

    def _release(self) -> None:
        self._running -= 1
        self._dispatch()

    def _suspend(self, job: Job) -> None:
        """A pause taking effect at a checkpoint: the worker goes to another job."""
        job._pause_requested = False
        self._set_state(job, PAUSED)
        self._release()

    async def _execute(self, job: Job) -> None:
        generation = job._generation
        run = job._run
        if run is None:
            factory = self._factories.get(job.type)
            if factory is None or job.spec is None:
                self._finish(job, generation, ErrorCode.INTERNAL_ERROR, f"Cannot run a job of type {job.type}")
                return
            try:
                run = job._run = factory(job.spec)
            except Exception as exc:  # a spec this version cannot run (saved by another one)
                log.warning("cannot rebuild job %s (%s): %s", job.id, job.type, exc)
                self._finish(job, generation, ErrorCode.BAD_FILE_FORMAT, str(exc))
                return
        try:
            result = await run(job)
        except JobCanceled:
            self._finish(job, generation, ErrorCode.CANCELED_JOB)
        except asyncio.CancelledError:
            if self._closing:
                raise  # stopping: the job stays as it was (saved, taken up at the next start)
            self._finish(job, generation, ErrorCode.CANCELED_JOB)
        except OrthancError as err:
            self._finish(job, generation, err.code, err.details or "")
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.type)
            self._finish(job, generation, ErrorCode.INTERNAL_ERROR, str(exc))
        else:
            if isinstance(result, dict) and result is not job.content:
                job.content.update(result)
            self._finish(job, generation, ErrorCode.SUCCESS)

    def _finish(self, job: Job, generation: int, code: ErrorCode, details: str = "") -> None:
        """The end of a run: Success or Failure, a worker freed, the history trimmed."""
        if generation != job._generation or job.state in FINISHED:
            return  # a run abandoned by a cancel or a resubmit
        held = job.state == RUNNING
        if code is ErrorCode.SUCCESS:
            job.progress = 100
        self._complete(job, code, details)
        self._signal("Success" if code is ErrorCode.SUCCESS else "Failure", job)
        if held:
            self._release()

    def _complete(self, job: Job, code: ErrorCode, details: str = "") -> None:
        job.error_code, job.error_description, job.error_details = code.code, code.message, details
        self._set_state(job, SUCCESS if code is ErrorCode.SUCCESS else FAILURE)
        job.completion_time = utc_timestamp(job.last_change)
        job._pause_requested = job._cancel_requested = False
        if job.spec is not None and job.type in self._factories:
            job._run = None  # rebuilt from the spec if resubmitted: the history holds no closures
        self._completed.append(job)
        job._done.set()
        if job._go is not None:  # a suspended run: let it end
            job._generation += 1
            job._go.set()
        self._forget_old()

    def _forget_old(self) -> None:
        """JobsHistorySize: the oldest finished jobs leave the registry (their outputs too)."""
        while len(self._completed) > self.history_size:
            self._forget(self._completed.popleft())

    def _forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        job.delete_outputs()
        self._unsave(job)

    # --- the REST actions (False: Orthanc answers an empty 400) ----------------------------

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE) from None

    def find(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        """Every job of the registry, oldest first (/jobs sorts them by id, as Orthanc)."""
        return list(self._jobs.values())

    def pause(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if job.state in (PENDING, RETRY):
            job._ticket += 1
            self._set_state(job, PAUSED)
        elif job.state == RUNNING:
            job._pause_requested = True  # takes effect at the job's next checkpoint
        return True

    def resume(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state != PAUSED:
            return False
        self._set_state(job, PENDING)
        self._queue(job)
        return True

    def _queue(self, job: Job) -> None:
        """Pending: in the queue, or, for a saved job whose type is not registered yet, aside
        until it is."""
        if job._run is None and job._go is None and job.type not in self._factories:
            waiting = self._waiting_type.setdefault(job.type, [])
            if job not in waiting:
                waiting.append(job)
            return
        self._push(job)
        self._dispatch()

    def cancel(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if job.state in (PENDING, RETRY, PAUSED):
            job._ticket += 1
            self._complete(job, ErrorCode.CANCELED_JOB)
        elif job.state == RUNNING:
            if job._checkpointed or job.task is None:
                job._cancel_requested = True  # takes effect at the job's next checkpoint
            else:  # a job that never reaches a checkpoint is stopped where it waits
                job.task.cancel()
        return True

    def resubmit(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state != FAILURE:
            return False
        if job._run is None and (job.spec is None or job.type not in self._factories):
            return False
        try:
            self._completed.remove(job)
        except ValueError:
            pass
        job._generation += 1
        job._go = None
        job._done = asyncio.Event()
        job.runtime = 0.0
        job.progress = 0
        job.completion_time = None
        job._checkpointed = False
        if job.spec is not None and job.type in self._factories:
            job._run = None  # rebuilt from the spec: a fresh start
        self._set_state(job, PENDING)
        self._queue(job)
        return True

    def delete(self, job_id: str) -> bool:
        """DELETE /jobs/{id} (Orthanc 1.12.2): only a finished job leaves the history."""
        job = self._jobs.get(job_id)
        if job is None or job.state not in FINISHED:
            return False
        try:
            self._completed.remove(job)
        except ValueError:
            pass
        self._forget(job)
        return True

    def output(self, job_id: str, key: str) -> tuple[bytes | Path, str, str] | None:
        """An output of a successful job, or None."""
        job = self._jobs.get(job_id)
        if job is None or job.state != SUCCESS:
            return None
        return job.outputs.get(key)

    def delete_output(self, job_id: str, key: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state != SUCCESS:
            return False
        return job.delete_output(key)

    # --- SaveJobs ---------------------------------------------------------------------------

    async def start(self, index: Index | None) -> None:
        """With an index (SaveJobs): take up the jobs saved by the previous run (pending and
        running ones are queued again, paused ones stay paused, finished ones return to the
        history) and save the jobs of registered types from now on."""
        if index is None:
            return
        rows = await index.read(lambda txn: txn.saved_jobs())
        restored: list[Job] = []
        for job_id, text in rows:
            try:
                job = Job.unserialize(job_id, text)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("cannot take up a job saved by the previous run, skipping it: %s", exc)
                continue
            if job.id in self._jobs:
                continue
            restored.append(job)
        self._index = index
        for job in sorted(restored, key=lambda j: j.last_change):
            job._engine = self
            self._jobs[job.id] = job
            if job.state in FINISHED:
                job._done.set()
                self._completed.append(job)
            elif job.state == PAUSED:
                pass
            else:
                job.state = PENDING
                self._queue(job)
        self._forget_old()
        self._schedule_flush()
        self._saver = asyncio.get_running_loop().create_task(self._save_periodically(), name="jobs-save")
        self._dispatch()

    def _savable(self, job: Job) -> bool:
        return self._index is not None and job.spec is not None

    def _save(self, job: Job) -> None:
        if self._savable(job):
            self._dirty.add(job.id)
            self._schedule_flush()

    def _unsave(self, job: Job) -> None:
        if self._savable(job):
            self._dirty.discard(job.id)
            self._gone.add(job.id)
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._index is None or (self._flusher is not None and not self._flusher.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._flusher = loop.create_task(self._flush(), name="jobs-flush")

    async def _flush(self) -> None:
        """Write the jobs changed since the last write, in one transaction, SAVE_DELAY after the
        first change (the changes of a burst of short jobs go together)."""
        index = self._index
        if not self._closing:
            await asyncio.sleep(SAVE_DELAY)
        while index is not None and (self._dirty or self._gone):
            rows = [(i, self._jobs[i].serialize()) for i in sorted(self._dirty) if i in self._jobs]
            gone = sorted(self._gone)
            self._dirty.clear()
            self._gone.clear()

            try:
                await index.write(functools.partial(_write_jobs, rows=rows, gone=gone))
            except Exception:
                log.exception("cannot save the jobs")
                return

    async def _save_periodically(self) -> None:
        """The running jobs' progress, content and spec, every SAVE_PERIOD seconds."""
        while True:
            await asyncio.sleep(SAVE_PERIOD)
            for job in self._jobs.values():
                if job.state == RUNNING:
                    self._save(job)

    async def close(self) -> None:
        """Stop the workers; with SaveJobs, the jobs are saved as they are (a running job runs
        again at the next start). Outputs are not kept (as Orthanc's, in its temporary folder)."""
        self._closing = True
        if self._saver is not None:
            self._saver.cancel()
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for job in self._jobs.values():
            if job.state == RUNNING:
                self._save(job)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._flusher is not None:
            try:
                await self._flusher
            except (asyncio.CancelledError, Exception):
                pass
        if self._index is not None and (self._dirty or self._gone):
            await self._flush()
        for job in self._jobs.values():  # outputs are not saved: their temporary files go
            job.delete_outputs()
