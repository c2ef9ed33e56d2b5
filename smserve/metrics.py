"""Prometheus metrics shared by all worker processes (spec core §19).

prometheus_client's multiprocess mode keeps each process's values in files under the run directory,
so a scrape answered by any worker reports container-wide totals. `prepare()` must run before
prometheus_client is first imported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SECOND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BYTE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
STAGES = ("queue", "decode", "predict", "encode", "transform", "backend")


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
        self._user: dict[str, object] = {}
        self._stage_children: dict[tuple[str, str], object] = {}
        self._request_children: dict[tuple, tuple] = {}

    def observe_stage(self, stage: str, seconds: float, model: str = "model") -> None:
        child = self._stage_children.get((stage, model))
        if child is None:
            child = self._stage_children[(stage, model)] = self.stage.labels(stage, model)
        child.observe(seconds)

    def observe_request(self, route: str, method: str, status: int, model: str, seconds: float,
                        request_bytes: int, response_bytes: int) -> None:
        key = (route, method, status, model)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(route, method, str(status), model), self.duration.labels(route, model),
                self.request_bytes.labels(route), self.response_bytes.labels(route))
        children[0].inc()
        children[1].observe(seconds)
        children[2].observe(request_bytes)
        children[3].observe(response_bytes)

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
