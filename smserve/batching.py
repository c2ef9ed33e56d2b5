"""Dynamic batching inside a worker: concurrent requests' decoded inputs merged along dimension 0, one predict call.

A model that costs more than the HTTP layer per call (an MLP 512->2048->2048->10 takes about 1 ms here) serves
several times more requests when N requests share one call. Opt-in (SMSERVE_BATCH_SIZE, or the family's
SAGEMAKER_TS_BATCH_SIZE / SAGEMAKER_TS_MAX_BATCH_DELAY) and only for a batch-aware predict: the family defaults,
or a user predict_fn marked with `predict_fn.batch_aware = True`.

Each request still decodes and encodes on its own predict thread (input_fn and output_fn see one request). Its
decoded input goes to this worker's batch thread, which waits for the first input, then at most `max_delay` for
more with the same per-item shape and dtype, up to `max_size` rows, runs predict once and hands every caller its
own rows. Inputs with other shapes wait for a batch of their own. What stays per request: the deadline (an input
whose request expired before its batch formed is left out), the queue limit (admission happens before decoding),
errors (a batch whose predict fails, or whose output does not have one row per input row, is run again item by
item, so only the failing request fails).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

log = logging.getLogger("smserve.batching")


@dataclass(frozen=True)
class BatchSettings:
    max_size: int  # rows per predict call; batching is off below 2
    max_delay: float  # seconds the first input of a batch waits for more


class TensorOps(Protocol):
    """How a family's tensors are merged and split (numpy arrays need nothing from the family)."""

    def accepts(self, data: Any) -> bool: ...

    def concatenate(self, items: list[Any]) -> Any: ...

    def split(self, prediction: Any, counts: list[int]) -> list[Any] | None: ...


class NumpyOps:
    def accepts(self, data: Any) -> bool:
        return isinstance(data, np.ndarray)

    def concatenate(self, items: list[Any]) -> Any:
        return np.concatenate(items, axis=0)

    def split(self, prediction: Any, counts: list[int]) -> list[Any] | None:
        if not isinstance(prediction, np.ndarray):
            return None
        return np.split(prediction, np.cumsum(counts)[:-1], axis=0)


def batch_key(data: Any) -> tuple | None:
    """What inputs must share to be merged: their type, dtype and shape after dimension 0. None: never merged
    (no batch dimension, a dict or a list of tensors, a scalar)."""
    shape = getattr(data, "shape", None)
    dtype = getattr(data, "dtype", None)
    if shape is None or dtype is None or len(shape) == 0 or shape[0] == 0:
        return None
    return type(data), str(dtype), tuple(shape[1:]), str(getattr(data, "device", ""))


def rows_of(prediction: Any) -> int | None:
    shape = getattr(prediction, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 else None


@dataclass(eq=False)
class _Input:
    data: Any
    rows: int
    key: tuple
    expired: Callable[[], bool]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class InputExpired(Exception):
    """The request's deadline passed before its batch formed: it was left out (its 504 is already sent)."""


class Batcher:
    """One per worker; `predict` is called from the predict threads, the model runs on the batch thread."""

    def __init__(self, predict: Callable[[Any], Any], settings: BatchSettings, ops: TensorOps,
                 observe: Callable[[int, int], None] | None = None):
        self._predict = predict
        self.settings = settings
        self._ops = ops
        self._observe = observe or (lambda inputs, rows: None)
        self._incoming: queue.SimpleQueue[_Input] = queue.SimpleQueue()
        self._waiting: list[_Input] = []  # taken from the queue, not in a batch yet (other shapes)
        self._unsplittable_warned = False
        threading.Thread(target=self._run, name="batcher", daemon=True).start()

    def predict(self, data: Any, expired: Callable[[], bool] = lambda: False) -> Any:
        """The prediction for `data` alone: its own rows of a merged call when it can be merged."""
        key = batch_key(data) if self._ops.accepts(data) else None
        if key is None or int(data.shape[0]) > self.settings.max_size:
            return self._predict(data)
        item = _Input(data, int(data.shape[0]), key, expired)
        self._incoming.put(item)
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    # ------------------------------------------------------------ batch thread
    def _run(self) -> None:
        while True:
            if not self._waiting:
                self._waiting.append(self._incoming.get())
            batch = self._collect()
            if batch:
                self._execute(batch)

    def _collect(self) -> list[_Input]:
        """The oldest waiting input and the ones that can join it, after waiting up to max_delay for more."""
        first = self._waiting[0]
        deadline = time.monotonic() + self.settings.max_delay
        while self._rows(first.key) < self.settings.max_size:
            remaining = deadline - time.monotonic()
            try:
                self._waiting.append(self._incoming.get(timeout=remaining) if remaining > 0
                                     else self._incoming.get_nowait())
            except queue.Empty:
                break
        batch, rows, left = [], 0, []
        for item in self._waiting:
            if item.key != first.key or rows + item.rows > self.settings.max_size:
                left.append(item)
            elif item.expired():
                item.error = InputExpired()
                item.done.set()
            else:
                batch.append(item)
                rows += item.rows
        self._waiting = left
        return batch

    def _rows(self, key: tuple) -> int:
        return sum(item.rows for item in self._waiting if item.key == key)

    def _execute(self, batch: list[_Input]) -> None:
        if len(batch) == 1:
            self._alone(batch[0])
            return
        counts = [item.rows for item in batch]
        try:
            prediction = self._predict(self._ops.concatenate([item.data for item in batch]))
            parts = self._ops.split(prediction, counts) if rows_of(prediction) == sum(counts) else None
        except BaseException as exc:  # noqa: BLE001 - item by item below: only the failing request gets an error,
            # and nothing a hook raises may end the batch thread
            log.debug("batched predict of %d inputs failed (%s: %s); predicting them one by one",
                      len(batch), type(exc).__name__, exc)
            parts = None
        else:
            if parts is None and not self._unsplittable_warned:
                self._unsplittable_warned = True
                log.warning("the batched prediction does not have one row per input row (%s rows for %d); "
                            "predicting such inputs one by one. Mark predict_fn batch_aware only if it keeps "
                            "dimension 0", rows_of(prediction), sum(counts))
        if parts is None:
            for item in batch:
                self._alone(item)
            return
        self._observe(len(batch), sum(counts))
        for item, part in zip(batch, parts):
            item.result = part
            item.done.set()

    def _alone(self, item: _Input) -> None:
        try:
            item.result = self._predict(item.data)
        except BaseException as exc:  # noqa: BLE001 - raised in the request's own thread
            item.error = exc
        self._observe(1, item.rows)
        item.done.set()
