"""Predict threads: where a worker runs user hooks, so its event loop keeps answering /ping (core §2.3, §15).

`loop.run_in_executor` goes through concurrent.futures (a Future with its Condition, a work item, chained
callbacks) and `asyncio.wait_for` adds a waiter future, a done-callback and a timer on every call. At thousands
of requests a second that bookkeeping, all of it on the event-loop thread, is a measurable share of a worker's
CPU. Here a job is one object passed through a SimpleQueue; its result comes back with one
call_soon_threadsafe, and its deadline is one loop timer.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable


class JobExpired(Exception):
    """The job's deadline passed before its result arrived; the result, if it comes, is discarded."""


class Job:
    __slots__ = ("fn", "args", "loop", "future", "expired", "_timer")

    def __init__(self, fn: Callable[..., Any], args: tuple, loop: asyncio.AbstractEventLoop, timeout: float):
        self.fn, self.args, self.loop = fn, args, loop
        self.future: asyncio.Future = loop.create_future()
        self.expired = False  # read by the predict thread: an expired job that has not started is skipped
        self._timer = loop.call_later(timeout, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if not self.future.done():
            self.future.set_exception(JobExpired())

    def _settle(self, result: Any, error: BaseException | None) -> None:
        self._timer.cancel()
        if self.future.done():  # expired meanwhile
            return
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)

    async def result(self) -> Any:
        try:
            return await self.future
        finally:
            self._timer.cancel()


_running = threading.local()


def current_job_expired() -> Callable[[], bool]:
    """On a predict thread: a check whether the job it runs has passed its deadline, usable from other threads
    (the batch thread leaves expired requests out of a batch)."""
    job = getattr(_running, "job", None)
    return (lambda: job.expired) if job is not None else (lambda: False)


class PredictThreads:
    """A fixed set of daemon threads taking jobs in arrival order (SMSERVE_WORKER_THREADS of them)."""

    def __init__(self, size: int, name: str = "predict"):
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        for index in range(size):
            threading.Thread(target=self._work, name=f"{name}_{index}", daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Job:
        """Queue fn(*args); call from the event loop. `await job.result()` raises JobExpired after `timeout` s."""
        job = Job(fn, args, asyncio.get_running_loop(), timeout)
        self._jobs.put(job)
        return job

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job.expired:
                continue
            _running.job = job
            try:
                result, error = job.fn(*job.args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request, as concurrent.futures does
                result, error = None, exc
            try:
                job.loop.call_soon_threadsafe(job._settle, result, error)
            except RuntimeError:  # the loop closed while the job ran (worker shutting down)
                pass
            _running.job = None
            del job, result, error
