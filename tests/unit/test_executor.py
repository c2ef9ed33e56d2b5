"""smserve.executor: the predict threads behind core §16 deadlines (items 86, 87) on real threads and a real loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from smserve.executor import JobExpired, PredictThreads


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_result_and_exception_reach_the_caller():
    threads = PredictThreads(1)

    async def main():
        names = await threads.submit(lambda: threading.current_thread().name, timeout=5).result()
        with pytest.raises(ZeroDivisionError):
            await threads.submit(lambda: 1 / 0, timeout=5).result()
        return names

    assert run(main()) == "predict_0"  # ran on the predict thread, not on the event loop


def test_core_86_deadline_answers_at_once_and_the_thread_serves_on():
    """core §21 items 86-87: the caller gets JobExpired at its deadline while the job still runs; the late result
    is discarded and the same thread then serves the next job."""
    threads = PredictThreads(1)
    release = threading.Event()

    async def main():
        started = time.monotonic()
        with pytest.raises(JobExpired):
            await threads.submit(release.wait, 10, timeout=0.2).result()
        waited = time.monotonic() - started
        release.set()
        return waited, await threads.submit(lambda: "next", timeout=5).result()

    waited, answer = run(main())
    assert 0.15 <= waited < 1.0
    assert answer == "next"


def test_expired_job_still_queued_never_runs():
    """A job whose deadline passed while it waited behind a slow one is skipped: its request already got 504,
    so running the user's hooks for it would only delay the requests behind it."""
    threads = PredictThreads(1)
    release = threading.Event()
    ran: list[str] = []

    async def main():
        slow = threads.submit(release.wait, 10, timeout=0.2)
        queued = threads.submit(ran.append, "queued", timeout=0.2)
        for job in (slow, queued):
            with pytest.raises(JobExpired):
                await job.result()
        release.set()
        return await threads.submit(ran.append, "after", timeout=5).result()

    run(main())
    assert ran == ["after"]


def test_jobs_run_concurrently_up_to_the_thread_count():
    threads = PredictThreads(2)
    barrier = threading.Barrier(2, timeout=5)

    async def main():
        jobs = [threads.submit(barrier.wait, timeout=5) for _ in range(2)]  # deadlock unless both run at once
        return sorted([await job.result() for job in jobs])

    assert run(main()) == [0, 1]
