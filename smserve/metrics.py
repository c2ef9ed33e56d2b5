"""Prometheus metrics shared by all worker processes (spec core §19).

prometheus_client's multiprocess mode keeps each process's values in files under the run directory,
so a scrape answered by any worker reports container-wide totals. `prepare()` must run before
prometheus_client is first imported.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import Counter as Tally
from pathlib import Path

SECOND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BYTE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STAGES = ("queue", "decode", "predict", "encode", "transform", "backend")
FLUSH_INTERVAL = 0.05  # seconds observations may wait before they reach the shared metric files


def prepare(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


def _process_id() -> int:
    return _pid


os.register_at_fork(after_in_child=_refresh_pid)


def _use_cached_pid() -> None:
    """prometheus_client checks os.getpid() on every value update, a system call each time (about 15 per
    request). The pid only changes at fork, so it is cached and refreshed there."""
    from prometheus_client import values

    if not getattr(values.ValueClass, "_smserve_cached_pid", False) and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)
        values.ValueClass._smserve_cached_pid = True


class Metrics:
    def __init__(self) -> None:
        _use_cached_pid()
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("smserve_requests_total", "Requests answered", ["route", "method", "status", "model"],
                                registry=None)
        self.duration = Histogram("smserve_request_duration_seconds", "Time from headers to response",
                                  ["route", "model"], buckets=SECOND_BUCKETS, registry=None)
        self.stage = Histogram("smserve_stage_duration_seconds", "Time per pipeline stage", ["stage", "model"],
                               buckets=SECOND_BUCKETS, registry=None)
        self.inflight = Gauge("smserve_inflight_requests", "Requests being processed", ["model"],
                              multiprocess_mode="livesum", registry=None)
        self.request_bytes = Histogram("smserve_request_bytes", "Request body size", ["route"], buckets=BYTE_BUCKETS,
                                       registry=None)
        self.response_bytes = Histogram("smserve_response_bytes", "Response body size", ["route"],
                                        buckets=BYTE_BUCKETS, registry=None)
        self.inflight_child = self.inflight.labels("model")
        self.restarts = Counter("smserve_worker_restarts_total", "Worker restarts", ["reason"], registry=None)
        self.batch_rows = Histogram("smserve_batch_rows", "Rows per predict call with dynamic batching "
                                    "(SMSERVE_BATCH_SIZE)", ["model"], buckets=BATCH_BUCKETS, registry=None)
        self._pending_batches: list[float] = []
        self._user: dict[str, object] = {}
        self._stage_children: dict[tuple[str, str], object] = {}
        self._request_children: dict[tuple, tuple] = {}
        # Observations wait here and are written in aggregate by flush(): a shared-file value update costs
        # a lock and an mmap write, ~15 of them per request when written one by one.
        self._pending_requests: list[tuple] = []
        self._pending_stages: list[tuple] = []
        self._timer = None
        self._loop = None
        self.interval = FLUSH_INTERVAL

    def bind(self, loop) -> None:
        """Flush on this event loop `interval` seconds after the first pending observation."""
        self._loop = loop

    def observe_stage(self, stage: str, seconds: float, model: str = "model") -> None:
        self._pending_stages.append((stage, model, seconds))  # any thread: list.append is atomic

    def observe_batch(self, inputs: int, rows: int) -> None:
        self._pending_batches.append(rows)  # the batch thread; written with the next flush

    def observe_request(self, route: str, method: str, status: int, model: str, seconds: float,
                        request_bytes: int, response_bytes: int) -> None:
        self._pending_requests.append(((route, method, status, model), seconds, request_bytes, response_bytes))
        if self._loop is None:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        requests, self._pending_requests = self._pending_requests, []
        stages, self._pending_stages = self._pending_stages, []
        batches, self._pending_batches = self._pending_batches, []
        if batches:
            _observe_many(self.batch_rows.labels("model"), batches)
        if requests:
            histograms: dict[object, list[float]] = {}
            counts: Tally = Tally()
            for key, seconds, request_bytes, response_bytes in requests:
                children = self._request_children.get(key)
                if children is None:
                    route, method, status, model = key
                    children = self._request_children[key] = (
                        self.requests.labels(route, method, str(status), model), self.duration.labels(route, model),
                        self.request_bytes.labels(route), self.response_bytes.labels(route))
                counts[children[0]] += 1
                histograms.setdefault(children[1], []).append(seconds)
                histograms.setdefault(children[2], []).append(request_bytes)
                histograms.setdefault(children[3], []).append(response_bytes)
            for counter, n in counts.items():
                counter.inc(n)
            for histogram, values in histograms.items():
                _observe_many(histogram, values)
        if stages:
            by_child: dict[object, list[float]] = {}
            for stage, model, seconds in stages:
                child = self._stage_children.get((stage, model))
                if child is None:
                    child = self._stage_children[(stage, model)] = self.stage.labels(stage, model)
                by_child.setdefault(child, []).append(seconds)
            for histogram, values in by_child.items():
                _observe_many(histogram, values)

    def user_metric(self, name: str, value: float, unit: str) -> None:
        from prometheus_client import Counter, Gauge

        metric_name = "smserve_user_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)
        metric = self._user.get(metric_name)
        if metric is None:
            if unit == "count":
                metric = Counter(metric_name, f"user metric {name}", registry=None)
            else:
                metric = Gauge(metric_name, f"user metric {name} ({unit})", multiprocess_mode="mostrecent",
                               registry=None)
            self._user[metric_name] = metric
        if unit == "count":
            metric.inc(value)
        else:
            metric.set(value)

    @staticmethod
    def render(extra_lines: list[str]) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry) + ("\n".join(extra_lines) + "\n").encode()

    @staticmethod
    def process_exited(pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _observe_many(histogram, values: list[float]) -> None:
    """The effect of histogram.observe(v) for every v, with one shared-value write per touched bucket.
    Mirrors prometheus_client's Histogram.observe (non-cumulative bucket values, first bound >= v)."""
    bounds = histogram._upper_bounds
    buckets = Tally(bisect.bisect_left(bounds, value) for value in values)
    histogram._sum.inc(sum(values))
    for index, n in buckets.items():
        histogram._buckets[index].inc(n)
