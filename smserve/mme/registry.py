"""The multi-model endpoint's bookkeeping (spec core §13): model names, what is loaded or loading, paging,
memory headroom and which idle model gives way under LRU. No I/O besides reading memory figures."""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import BadRequest
from .servers import ModelServer

MAX_NAME = 255
PAGE_LIMIT = 100


def check_name(name: object) -> str:
    """1-255 characters, no `/`, no control characters, not `.` or `..` (core §13.2)."""
    if not isinstance(name, str) or not name:
        raise BadRequest("model_name is required: a non-empty string")
    if len(name) > MAX_NAME:
        raise BadRequest(f"model_name is {len(name)} characters long; at most {MAX_NAME} are allowed")
    if "/" in name or name in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest(f"model_name {name!r} is not allowed: no '/', no control characters, not '.' or '..'")
    return name


@dataclass(frozen=True)
class Reservation:
    """What a family's dialect (dialect.py) set aside for one model while it loads and while it is loaded: `env`
    reaches the model's server, `detail` stays with the model for the dialect's own answers (TensorFlow: ports)."""

    env: Mapping[str, str] = field(default_factory=dict)
    detail: Any = None


NOTHING_RESERVED = Reservation()


@dataclass
class Model:
    name: str
    url: str
    server: ModelServer
    reservation: Reservation = NOTHING_RESERVED
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    inflight: int = 0
    unloading: bool = False


def page(names: list[str], limit_raw: str | None, token_raw: str | None) -> tuple[list[str], str | None]:
    """One page of sorted names and the token of the next one (an opaque base64 of the last name served)."""
    limit = PAGE_LIMIT
    if limit_raw is not None:
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= PAGE_LIMIT:
            raise BadRequest(f"limit must be an integer from 1 to {PAGE_LIMIT}, got {limit_raw!r}")
        limit = int(limit_raw)
    after = None
    if token_raw is not None:
        try:
            after = base64.urlsafe_b64decode(token_raw.encode("ascii")).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise BadRequest(f"nextPageToken {token_raw!r} is not one this endpoint gave") from None
    ordered = sorted(names)
    if after is not None:
        ordered = [name for name in ordered if name > after]
    chosen = ordered[:limit]
    more = len(ordered) > limit
    token = base64.urlsafe_b64encode(chosen[-1].encode()).decode("ascii") if more and chosen else None
    return chosen, token


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def memory_figures() -> tuple[int, int]:
    """(available bytes, the container's limit in bytes): cgroup v2, then v1, else /proc/meminfo."""
    limit, current = _read("/sys/fs/cgroup/memory.max"), _read("/sys/fs/cgroup/memory.current")
    if limit is None:
        limit, current = (_read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                          _read("/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    meminfo = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, value = line.partition(":")
        meminfo[key] = int(value.split()[0]) * 1024 if value.split() else 0
    host_total, host_available = meminfo.get("MemTotal", 0), meminfo.get("MemAvailable", 0)
    if limit and limit.isdigit() and int(limit) < host_total and current and current.isdigit():
        return max(0, int(limit) - int(current)), int(limit)
    return host_available, host_total
