"""The jobs engine's state machine without the network: checkpoints, the history, and SaveJobs
rows in a real SQLite index (a job type registered after the restart still runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from orthanc_py.core.jobs import Job, JobsEngine
from orthanc_py.index.sqlite import SqliteIndex


async def until(predicate: Any) -> None:
    """Let the loop run until `predicate()` holds (a few hundred turns at most)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def test_pause_cancel_and_resubmit_at_checkpoints() -> None:
    async def main() -> None:
        engine = JobsEngine(concurrent_jobs=1, history_size=10)
        steps: list[int] = []
        gate = asyncio.Event()

        async def run(job: Job) -> dict[str, Any]:
            for i in range(5):
                await job.checkpoint(i * 20)
                steps.append(i)
                if i == 1:
                    await gate.wait()
            return {"Steps": len(steps)}

        job = engine.submit("Test", run)
        other = engine.submit("Test", run)
        await until(lambda: len(steps) >= 2)
        assert (job.state, other.state) == ("Running", "Pending")
        assert engine.pause(job.id)
        gate.set()
        await until(lambda: job.state == "Paused")
        assert steps == [0, 1]  # paused at the checkpoint before step 2
        await other.wait()  # the worker went to the next job
        assert engine.resume(job.id)
        await job.wait()
        assert job.state == "Success" and steps[-3:] == [2, 3, 4] and job.progress == 100

        steps.clear()
        gate.clear()
        third = engine.submit("Test", run)
        await until(lambda: len(steps) >= 2)
        assert engine.cancel(third.id)
        gate.set()
        await third.wait()
        assert (third.state, third.error_code, steps) == ("Failure", 37, [0, 1])
        assert engine.resubmit(third.id) and third.state in ("Pending", "Running")
        await third.wait()
        assert third.state == "Success" and third.content == {"Steps": 7}
        await engine.close()

    asyncio.run(main())


def test_history_of_zero_forgets_at_once() -> None:
    async def main() -> None:
        engine = JobsEngine(history_size=0)

        async def run(job: Job) -> dict[str, Any]:
            return {"Done": True}

        job = engine.submit("Test", run)
        assert (await job.wait()).state == "Success"
        assert engine.find(job.id) is None and engine.all() == []
        await engine.close()

    asyncio.run(main())


def test_saved_jobs_are_taken_up(tmp_path: Path) -> None:
    index = SqliteIndex(tmp_path / "index.sqlite")
    ran: list[dict[str, Any]] = []

    def factory(spec: dict[str, Any]) -> Any:
        async def run(job: Job) -> dict[str, Any]:
            await job.checkpoint(50)
            ran.append(spec)
            return {"Value": spec["Value"]}

        return run

    async def first() -> tuple[str, str, str]:
        engine = JobsEngine(concurrent_jobs=1)
        engine.register("Rebuildable", factory)
        await engine.start(index)
        block = asyncio.Event()

        async def blocking(job: Job) -> dict[str, Any]:
            await block.wait()
            return {}

        engine.submit("NotSaved", blocking)  # no spec: never saved
        pending = engine.submit("Rebuildable", factory({"Value": 1}), 3, spec={"Value": 1}, user_data=[1])
        paused = engine.submit("Rebuildable", factory({"Value": 2}), spec={"Value": 2})
        engine.pause(paused.id)
        await asyncio.sleep(0.05)
        await engine.close()  # a clean stop: what is not finished is saved as it is
        return pending.id, paused.id, pending.creation_time

    async def second(ids: tuple[str, str, str]) -> None:
        engine = JobsEngine()
        await engine.start(index)
        pending = engine.get(ids[0])
        paused = engine.get(ids[1])
        assert [j.type for j in engine.all()] == ["Rebuildable", "Rebuildable"]
        assert (pending.state, pending.priority, pending.user_data, pending.creation_time) == (
            "Pending",
            3,
            [1],
            ids[2],
        )
        assert paused.state == "Paused"
        assert engine.resume(paused.id)
        await asyncio.sleep(0.05)
        assert (pending.state, paused.state) == ("Pending", "Pending")  # their type is not known yet
        engine.register("Rebuildable", factory)
        await pending.wait()
        await paused.wait()
        assert pending.content == {"Value": 1} and sorted(r["Value"] for r in ran) == [1, 2]
        assert engine.delete(paused.id)
        await engine.close()
        rows = await index.read(lambda txn: txn.saved_jobs())
        assert [r[0] for r in rows] == [pending.id]  # a deleted job leaves the index

    asyncio.run(second(asyncio.run(first())))
    asyncio.run(index.close())


def test_cancel_a_job_suspended_at_a_checkpoint() -> None:
    """A job paused at a checkpoint (its coroutine waiting) is cancelled: Failure at once, its
    coroutine ends there; the same after it was resumed but waits for a worker."""

    async def main() -> None:
        engine = JobsEngine(concurrent_jobs=1)
        reached: list[str] = []
        gates = {name: asyncio.Event() for name in ("a", "b", "blocker")}

        def make(name: str) -> Any:
            async def run(job: Job) -> dict[str, Any]:
                await job.checkpoint(10)
                reached.append(f"{name} started")
                await gates[name].wait()
                await job.checkpoint(50)
                reached.append(f"{name} went on")
                return {}

            return run

        a = engine.submit("Test", make("a"))
        await until(lambda: "a started" in reached)
        engine.pause(a.id)
        gates["a"].set()
        await until(lambda: a.state == "Paused")
        assert engine.cancel(a.id) and (a.state, a.error_code) == ("Failure", 37)
        await a.task  # the suspended coroutine ended
        assert "a went on" not in reached

        b = engine.submit("Test", make("b"))
        await until(lambda: "b started" in reached)
        engine.pause(b.id)
        gates["b"].set()
        await until(lambda: b.state == "Paused")
        blocker = engine.submit("Test", make("blocker"))
        await until(lambda: "blocker started" in reached)
        assert engine.resume(b.id) and b.state == "Pending"  # the only worker is busy
        assert engine.cancel(b.id) and b.state == "Failure"
        await b.task
        gates["blocker"].set()
        await blocker.wait()
        assert blocker.state == "Success" and "b went on" not in reached
        assert engine.resubmit(b.id)  # runs again from its start
        await until(lambda: reached.count("b started") == 2)
        await b.wait()
        assert b.state == "Success" and reached[-1] == "b went on"
        await engine.close()

    asyncio.run(main())
