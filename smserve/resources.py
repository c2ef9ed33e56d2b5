"""CPU, GPU and memory discovery and the worker plan (spec core §15)."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from .config import Settings

CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """CPUs allowed by the cgroup quota (v2 cpu.max, v1 cfs quota/period), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus(root: Path = CGROUP) -> int:
    count = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)


def memory_limit_bytes(root: Path = CGROUP) -> int | None:
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            value = path.read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 1 << 60:
            return int(value)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


_UUID = re.compile(r"\(UUID: (GPU-[0-9a-fA-F-]+)\)")


def visible_gpus(cuda_visible_devices: str | None) -> list[int]:
    """Host indices of the GPUs this container may use (nvidia-smi -L, restricted by CUDA_VISIBLE_DEVICES)."""
    if cuda_visible_devices is not None and cuda_visible_devices.strip() in ("", "-1", "none", "void"):
        return []
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [line for line in out.splitlines() if line.startswith("GPU ")]
    host = list(range(len(lines)))
    uuids = [match.group(1) if (match := _UUID.search(line)) else "" for line in lines]
    if cuda_visible_devices:
        wanted = []
        for item in cuda_visible_devices.split(","):
            item = item.strip()
            if item.isdigit() and int(item) in host:
                wanted.append(int(item))
            elif item.startswith("GPU-"):  # a UUID, or a unique prefix of one, as CUDA accepts them
                matches = [index for index, uuid in enumerate(uuids) if uuid.startswith(item)]
                if len(matches) == 1:
                    wanted.append(matches[0])
        return wanted
    return host


def parse_gpu_free(text: str) -> dict[int, int]:
    """{host index: free MiB} from `nvidia-smi --query-gpu=index,memory.free --format=csv,noheader,nounits`."""
    free = {}
    for line in text.splitlines():
        index, _, mib = line.partition(",")
        if index.strip().isdigit() and mib.strip().isdigit():
            free[int(index)] = int(mib)
    return free


def emptiest_gpu(gpus: list[int], free: dict[int, int]) -> int | None:
    """The GPU of `gpus` with the most free memory (the lowest index on a tie); None when none is known."""
    known = [gpu for gpu in gpus if gpu in free]
    return max(known, key=lambda gpu: (free[gpu], -gpu)) if known else None


def gpu_free_memory() -> dict[int, int]:
    """Free memory of every GPU in MiB, now ({} without nvidia-smi): where a multi-model endpoint puts the next
    model (core §13.5)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {}
    try:
        out = subprocess.run([smi, "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_gpu_free(out)


def directory_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    threads: int
    cpus: int
    gpus: tuple[int, ...]
    gpu_sets: tuple[tuple[int, ...], ...]  # per worker slot: host GPU indices it sees (empty on CPU)
    derivation: str


def worker_environment(plan: WorkerPlan, slot: int, settings: Settings,
                       family_thread_env: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """What a worker exports before its first import of a numeric library: BLAS and OpenMP read their thread
    counts once, when they load, and CUDA its visible devices when it initialises."""
    from .config import THREAD_VARS

    env = {name: str(plan.threads) for name in THREAD_VARS if name not in settings.user_thread_vars}
    # a family may set the shared thread variables differently (unless the user did); its own only when unset
    env.update((name, value) for name, value in family_thread_env
               if ((name in env) if name in THREAD_VARS else (name not in os.environ)))
    if plan.gpus and slot < len(plan.gpu_sets):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in plan.gpu_sets[slot])
    return env


def gpu_sets(workers: int, gpus: list[int], pinning: bool) -> tuple[tuple[int, ...], ...]:
    """W >= G: worker i sees GPU i mod G; W < G: contiguous groups, one per worker."""
    if not gpus:
        return tuple(() for _ in range(workers))
    if not pinning:
        return tuple(tuple(gpus) for _ in range(workers))
    if workers >= len(gpus):
        return tuple((gpus[i % len(gpus)],) for i in range(workers))
    size, extra = divmod(len(gpus), workers)
    sets, start = [], 0
    for i in range(workers):
        end = start + size + (1 if i < extra else 0)
        sets.append(tuple(gpus[start:end]))
        start = end
    return tuple(sets)


def plan_workers(settings: Settings, model_dir: Path, footprint_mb: int,
                 family_default: Callable[[int], tuple[int, str] | None] = lambda cpus: None) -> WorkerPlan:
    cpus = available_cpus()
    gpus = visible_gpus(settings.cuda_visible_devices)
    preferred = None if gpus else family_default(cpus)
    if settings.workers is not None:
        workers = settings.workers.value
        derivation = f"{settings.workers.source}={workers}"
    elif preferred is not None:
        workers, derivation = preferred
    else:
        workers = len(gpus) or cpus
        derivation = f"{len(gpus)} visible GPUs" if gpus else f"{cpus} available CPUs (affinity and cgroup quota)"
    if settings.workers is None:
        limit = memory_limit_bytes()
        if limit:
            per_worker = directory_size(model_dir) * 1.2 + footprint_mb * 1024 * 1024
            cap = max(1, int(limit * 0.8 // per_worker))
            if cap < workers:
                workers = cap
                derivation += f", capped to {cap} by memory ({limit // 2**20} MiB limit)"
    threads = max(1, cpus // workers)
    return WorkerPlan(workers, threads, cpus, tuple(gpus), gpu_sets(workers, gpus, settings.gpu_pinning), derivation)
