"""Logging to stdout in text or JSON lines (spec core §18), with a buffered access log off the hot path."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone

from .config import Settings

_worker_label = "supervisor"


_second_cache: list = [-1, ""]


def printable(text: str) -> str:
    """`text` with control characters escaped (a newline as \\n, ESC as \\x1b): a value taken from a request (a
    path with %0A in it) can then never start a forged line in a text log."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _timestamp(created: float) -> str:
    """UTC ISO-8601 with milliseconds; the per-second prefix is cached (the access log calls this per request)."""
    second = int(created)
    if second != _second_cache[0]:
        _second_cache[0] = second
        _second_cache[1] = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{_second_cache[1]}{int(created % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "kv", None) or {}
        line = f"{_timestamp(record.created)} {record.levelname} {_worker_label}[{record.process}] " \
               f"{record.name}: {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": _timestamp(record.created), "level": record.levelname, "logger": record.name,
                 "pid": record.process, "worker": _worker_label, "msg": record.getMessage()}
        entry.update({k: v for k, v in (getattr(record, "kv", None) or {}).items() if v is not None})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _JsonLineWriter(io.TextIOBase):
    """Wraps user print() output as {"logger": "user", ...} lines in JSON mode."""

    def __init__(self, stream):
        self._stream = stream
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            entry = {"ts": _timestamp(time.time()), "level": "INFO", "logger": "user", "pid": os.getpid(),
                     "worker": _worker_label, "msg": line}
            self._stream.write(json.dumps(entry) + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def set_label(label: str) -> None:
    """Which process of the server wrote a record (supervisor, zygote, worker-N, standin)."""
    global _worker_label
    _worker_label = label


def configure(settings: Settings, label: str = "supervisor") -> None:
    set_label(label)
    # configure() runs again in the supervisor and in each worker: log records always go to the real stdout,
    # never through the user-output wrapper installed by an earlier call (that would nest JSON in "msg")
    raw = sys.stdout._stream if isinstance(sys.stdout, _JsonLineWriter) else sys.stdout
    handler = logging.StreamHandler(raw)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # AWS SDK debug records carry request and response bodies (CodeArtifact tokens, signed headers):
    # SMSERVE_LOG_LEVEL=debug must never put credentials in the log.
    for sdk in ("botocore", "boto3", "s3transfer"):
        logging.getLogger(sdk).setLevel(max(logging.INFO, settings.log_level))
    if settings.log_format == "json" and not isinstance(sys.stdout, _JsonLineWriter):
        sys.stdout = _JsonLineWriter(raw)
    logging.captureWarnings(True)


class AccessLog:
    """Collects access lines in memory and writes them in one syscall per flush interval."""

    def __init__(self, settings: Settings, interval: float = 0.2, limit: int = 64 * 1024):
        self.json = settings.log_format == "json"
        self.enabled = settings.access_log
        self.interval = interval
        self.limit = limit
        self._lines: list[str] = []
        self._size = 0
        self._timer = None
        self._loop = None
        self.pid = os.getpid()  # an access log belongs to one worker process

    def bind(self, loop) -> None:
        self._loop = loop

    def record(self, method: str, path: str, status: int, duration_ms: float, request_bytes: int,
               response_bytes: int, request_id: str, model: str) -> None:
        if not self.enabled:
            return
        now = time.time()
        pid = self.pid
        if self.json:
            line = json.dumps({"ts": _timestamp(now), "level": "INFO", "logger": "access", "pid": pid,
                               "worker": _worker_label, "msg": f"{method} {path} {status}",
                               "method": method, "path": path, "status": status,
                               "duration_ms": round(duration_ms, 3), "request_bytes": request_bytes,
                               "response_bytes": response_bytes, "request_id": request_id, "model": model})
        else:
            line = (f"{_timestamp(now)} INFO access[{pid}] {method} {printable(path)} {status} "
                    f"{duration_ms:.2f}ms in={request_bytes} out={response_bytes} request_id={request_id} model={model}")
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.limit:
            self.flush()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = ("\n".join(self._lines) + "\n").encode()
        self._lines.clear()
        self._size = 0
        try:
            sys.stdout.flush()
            os.write(1, data)
        except OSError:
            pass
