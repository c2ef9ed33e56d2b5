"""Request batching for the built-in backend (spec tensorflow.md §10), shaped like TF Serving's batch scheduler.

A SavedModel call costs far more per call than per row, so concurrent row-format predict requests to the same
model, version and signature whose inputs agree in dtype and per-item shape are merged along dimension 0, run once
through `Signature.run`, and split back: each caller gets exactly the rows it sent. As in TF Serving's shared
batch scheduler, every (model, version, signature, input layout) has its own queue of batches; a batch is run
when it holds `max_batch_size` rows, when the next request does not fit in it, or `batch_timeout_micros` after
its first request; `num_batch_threads` threads run batches; a request that would need a new batch in a queue
already holding `max_enqueued_batches` is refused with UNAVAILABLE (503 over REST), as TF Serving refuses it.

Unlike TF Serving (which rejects a request larger than `max_batch_size` unless large-batch splitting is on), a
larger request runs alone in the caller's thread. A merged run that fails, or whose outputs do not all keep one row
per input row, is run again request by request so that only a failing request sees an error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Protocol

import numpy as np

from .errors import BackendError, Code
from .tensors import RequestFormat

log = logging.getLogger("smserve.tensorflow.batching")

# TF Serving's text for a full queue (tensorflow/core/kernels/batching_util/shared_batch_scheduler.h).
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class BatchingParams(Protocol):
    """The four TF Serving batching parameters (the backend's parsed --batching_parameters_file; None: not
    given)."""

    max_batch_size: int | None
    batch_timeout_micros: int | None
    num_batch_threads: int | None
    max_enqueued_batches: int | None


class _Runnable(Protocol):
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def _unavailable(message: str) -> BackendError:
    """UNAVAILABLE: REST answers 503 and gRPC UNAVAILABLE, as TF Serving does for a full batch queue."""
    return BackendError(Code.UNAVAILABLE, message)


def layout_of(inputs: Mapping[str, np.ndarray]) -> tuple | None:
    """What requests must share to be merged: input names, dtypes and per-item shapes. None when the request has
    no common dimension 0 (a scalar input, inputs with different row counts, or no rows)."""
    rows = None
    layout = []
    for name in sorted(inputs):
        array = inputs[name]
        shape = getattr(array, "shape", None)
        if not isinstance(array, np.ndarray) or shape is None or len(shape) == 0:
            return None
        if rows is None:
            rows = shape[0]
        elif shape[0] != rows:
            return None
        layout.append((name, array.dtype.str, tuple(shape[1:])))
    if not rows:
        return None
    return tuple(layout)


def rows_of(inputs: Mapping[str, np.ndarray]) -> int:
    return int(next(iter(inputs.values())).shape[0])


@dataclass(eq=False)
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Batch:
    queue_key: Hashable
    signature: _Runnable
    deadline: float
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0


class RequestBatcher:
    """Merges concurrent `run` calls; thread-safe. One per backend process, shared by REST and gRPC."""

    def __init__(self, params: BatchingParams, observe: Callable[[int, int], None] | None = None):
        def value(name: str, default: int) -> int:
            given = getattr(params, name, None)
            return default if given is None else int(given)

        # A parameter left out of the file takes TF Serving's default (BasicBatchScheduler::Options).
        self.max_batch_size = max(1, value("max_batch_size", 1000))
        self.timeout = max(0, value("batch_timeout_micros", 0)) / 1e6
        self.max_enqueued_batches = max(1, value("max_enqueued_batches", 10))
        self.num_threads = max(1, value("num_batch_threads", os.cpu_count() or 1))
        # observe(requests, rows) after each signature call made by a batch thread (tests and metrics)
        self._observe = observe or (lambda requests, rows: None)
        self._cond = threading.Condition()
        self._queues: dict[Hashable, deque[_Batch]] = {}
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"tf-batch-{i}", daemon=True)
                         for i in range(self.num_threads)]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------ caller side
    def run(self, signature: _Runnable, inputs: dict[str, np.ndarray], key: Hashable = None) -> dict[str, np.ndarray]:
        """`signature.run(inputs)`, merged with concurrent calls that share `key` (model, version, signature
        name; `id(signature)` when None) and the input layout. Blocks until this caller's rows are back."""
        layout = layout_of(inputs)
        rows = rows_of(inputs) if layout is not None else 0
        if layout is None or rows > self.max_batch_size:
            return signature.run(inputs)
        task = _Task(dict(inputs), rows)
        queue_key = (id(signature) if key is None else key, layout)
        with self._cond:
            closed = self._closed
            if not closed:
                self._enqueue(signature, task, queue_key)
        if closed:
            return signature.run(inputs)
        task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.result is not None
        return task.result

    def _enqueue(self, signature: _Runnable, task: _Task, queue_key: Hashable) -> None:
        """Add `task` to the open batch of its queue, or to a new batch when it does not fit. Lock held."""
        rows = task.rows
        queue = self._queues.get(queue_key)
        if queue is None:
            queue = self._queues[queue_key] = deque()
        last = queue[-1] if queue else None
        if last is None or last.rows + rows > self.max_batch_size:
            if len(queue) >= self.max_enqueued_batches:
                raise _unavailable(QUEUE_FULL)
            last = _Batch(queue_key, signature, time.monotonic() + self.timeout)
            queue.append(last)
        last.tasks.append(task)
        last.rows += rows
        # a waiting thread may now have a full batch, or a new deadline to wait for
        self._cond.notify()

    def run_predict(self, servable: Any, signature: Any, inputs: Mapping[str, np.ndarray],
                    request_format: RequestFormat) -> dict[str, np.ndarray]:
        """RestApi's `run_predict` hook: row-format requests (`instances`) are merged per model, version and
        signature (§10); columnar ones (`inputs`, whose inputs may differ in dimension 0) run alone."""
        if request_format is not RequestFormat.ROW:
            return signature.run(inputs)
        key = (servable.model_name, servable.version, signature.name)
        return self.run(signature, dict(inputs), key)

    def close(self) -> None:
        """Stop taking new batches (later calls run alone); queued batches still run, then the threads end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def pending(self) -> int:
        """Batches queued and not yet taken by a batch thread."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    # ------------------------------------------------------------ batch threads
    def _take(self) -> _Batch | None:
        """The next batch that is ready (full, followed by another, timed out, or closing), oldest deadline first;
        waits for one. None when closed and empty. Called with the lock held."""
        while True:
            now = time.monotonic()
            ready: _Batch | None = None
            next_deadline: float | None = None
            for queue in self._queues.values():
                head = queue[0]
                if (head.rows >= self.max_batch_size or len(queue) > 1 or head.deadline <= now
                        or self._closed):
                    if ready is None or head.deadline < ready.deadline:
                        ready = head
                elif next_deadline is None or head.deadline < next_deadline:
                    next_deadline = head.deadline
            if ready is not None:
                queue = self._queues[ready.queue_key]
                queue.popleft()
                if not queue:
                    del self._queues[ready.queue_key]
                if self._queues:
                    self._cond.notify()  # another batch may be ready for another thread
                return ready
            if self._closed:
                return None
            self._cond.wait(None if next_deadline is None else max(0.0, next_deadline - now))

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
            if batch is None:
                return
            try:
                self._execute(batch)
            except BaseException as exc:  # noqa: BLE001 - a batch thread must survive anything and release callers
                for task in batch.tasks:
                    if not task.done.is_set():
                        task.error = exc
                        task.done.set()

    def _execute(self, batch: _Batch) -> None:
        tasks = batch.tasks
        if len(tasks) == 1:
            self._alone(batch.signature, tasks[0])
            return
        counts = [task.rows for task in tasks]
        total = sum(counts)
        try:
            merged = {name: np.concatenate([task.inputs[name] for task in tasks], axis=0)
                      for name in tasks[0].inputs}
            outputs = batch.signature.run(merged)
        except BaseException as exc:  # noqa: BLE001 - rerun one by one: only the failing request gets the error
            log.debug("merged run of %d requests failed (%s: %s); running them one by one",
                      len(tasks), type(exc).__name__, exc)
            outputs = None
        if outputs is not None and not all(isinstance(v, np.ndarray) and v.ndim > 0 and v.shape[0] == total
                                           for v in outputs.values()):
            log.debug("an output of the merged run does not keep dimension 0; running requests one by one")
            outputs = None
        if outputs is None:
            for task in tasks:
                self._alone(batch.signature, task)
            return
        self._observe(len(tasks), total)
        bounds = np.cumsum(counts)[:-1]
        parts = {name: np.split(value, bounds, axis=0) for name, value in outputs.items()}
        for i, task in enumerate(tasks):
            task.result = {name: pieces[i] for name, pieces in parts.items()}
            task.done.set()

    def _alone(self, signature: _Runnable, task: _Task) -> None:
        try:
            task.result = signature.run(task.inputs)
            self._observe(1, task.rows)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            task.error = exc
        task.done.set()
