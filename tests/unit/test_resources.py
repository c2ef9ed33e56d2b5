"""Unit tests of smserve.resources (core.md §15): CPU quota from a fake cgroup tree, the default worker count,
threads per worker and the per-worker GPU map. core §21 items 95, 97 and 98 need a container CPU quota or
several GPUs; here they are checked on the planning code, and for real in tests/contract/test_core_lifecycle.py
when GPUs are present."""

from __future__ import annotations

from pathlib import Path

import pytest

from smserve import resources
from smserve.config import load_settings

from ..harness import FAMILY


def cgroup_v2(tmp_path: Path, cpu_max: str) -> Path:
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(tmp_path: Path, quota: int, period: int) -> Path:
    root = tmp_path / "cgroup1"
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


# ------------------------------------------------------------------ cgroup CPU quota

def test_cgroup_v2_quota(tmp_path):
    """core §15: cgroup v2 cpu.max `quota period` → quota / period CPUs (`docker run --cpus=2`)."""
    assert resources.cgroup_cpu_limit(cgroup_v2(tmp_path, "200000 100000")) == 2.0


def test_cgroup_v2_unlimited(tmp_path):
    assert resources.cgroup_cpu_limit(cgroup_v2(tmp_path, "max 100000")) is None


def test_cgroup_v1_quota(tmp_path):
    """core §15: cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us."""
    assert resources.cgroup_cpu_limit(cgroup_v1(tmp_path, 150000, 100000)) == 1.5


def test_cgroup_v1_unlimited(tmp_path):
    assert resources.cgroup_cpu_limit(cgroup_v1(tmp_path, -1, 100000)) is None


def test_no_cgroup_files(tmp_path):
    assert resources.cgroup_cpu_limit(tmp_path) is None


def test_available_cpus_is_min_of_affinity_and_ceiled_quota(tmp_path, monkeypatch):
    """core §15: available CPUs = min(affinity count, ceil(quota / period)), at least 1."""
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert resources.available_cpus(cgroup_v2(tmp_path, "200000 100000")) == 2
    assert resources.available_cpus(cgroup_v1(tmp_path, 150000, 100000)) == 2  # 1.5 CPUs → 2
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert resources.available_cpus(tmp_path) == 3  # no quota: the affinity count
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "cpu.max").write_text("10000 100000\n")
    assert resources.available_cpus(tmp_path / "tiny") == 1


# ------------------------------------------------------------------ worker plan

@pytest.fixture
def sixteen_core_host(tmp_path, monkeypatch):
    """A 16-core host running the container with `--cpus=2`, no GPU, plenty of memory."""
    root = cgroup_v2(tmp_path, "200000 100000")
    real = resources.available_cpus
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(resources, "available_cpus", lambda root_=root: real(root_))
    monkeypatch.setattr(resources, "visible_gpus", lambda cuda_visible_devices: [])
    monkeypatch.setattr(resources, "memory_limit_bytes", lambda *a: 64 * 2**30)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.pt").write_bytes(b"x" * 1024)
    return model_dir


def test_core_95_default_workers_follow_cgroup_cpu_quota(sixteen_core_host):
    """core §21 item 95 (§15): PyTorch/MXNet CPU images: default workers = cgroup CPU quota (`--cpus=2` on a
    16-core host → 2 workers), threads per worker = 2 ÷ 2 = 1, and the derivation says where it came from."""
    settings = load_settings({}, family=FAMILY)  # each family environment runs this test
    plan = resources.plan_workers(settings, sixteen_core_host, footprint_mb=300)
    assert plan.workers == 2, plan
    assert plan.cpus == 2 and plan.threads == 1
    assert "CPU" in plan.derivation
    assert plan.gpu_sets == ((), ())


def test_workers_variable_wins_and_threads_divide_cpus(sixteen_core_host):
    """core §15: SAGEMAKER_MODEL_SERVER_WORKERS overrides the default; T = max(1, CPUs ÷ workers)."""
    plan = resources.plan_workers(load_settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}), sixteen_core_host, 300)
    assert plan.workers == 1 and plan.threads == 2
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" in plan.derivation
    plan = resources.plan_workers(load_settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "4"}), sixteen_core_host, 300)
    assert plan.workers == 4 and plan.threads == 1


def test_memory_caps_default_workers(sixteen_core_host, monkeypatch):
    """core §15 (SHOULD): workers × (model size × 1.2 + footprint) stays under 80 % of the memory limit."""
    monkeypatch.setattr(resources, "memory_limit_bytes", lambda *a: 400 * 2**20)
    plan = resources.plan_workers(load_settings({}), sixteen_core_host, footprint_mb=300)
    assert plan.workers == 1
    assert "memory" in plan.derivation


def test_default_workers_equal_visible_gpus(sixteen_core_host, monkeypatch):
    """core §15: with GPUs the default worker count is the number of visible GPUs."""
    monkeypatch.setattr(resources, "visible_gpus", lambda cuda_visible_devices: [0, 1, 2, 3])
    plan = resources.plan_workers(load_settings({}), sixteen_core_host, footprint_mb=300)
    assert plan.workers == 4
    assert plan.gpu_sets == ((0,), (1,), (2,), (3,))


# ------------------------------------------------------------------ GPU map

def test_core_97_four_workers_four_gpus_one_each():
    """core §21 item 97 (§15): 4 workers on a 4-GPU host → worker i sees only GPU i (so its gpu_id is 0)."""
    assert resources.gpu_sets(4, [0, 1, 2, 3], True) == ((0,), (1,), (2,), (3,))


def test_core_98_one_worker_sees_all_gpus():
    """core §21 item 98 (§15): 1 worker on a 4-GPU host sees all 4 GPUs."""
    assert resources.gpu_sets(1, [0, 1, 2, 3], True) == ((0, 1, 2, 3),)


def test_gpu_sets_more_workers_than_gpus_round_robin():
    """core §15: W ≥ G → worker i sees GPU i mod G."""
    assert resources.gpu_sets(5, [0, 1], True) == ((0,), (1,), (0,), (1,), (0,))


def test_gpu_sets_fewer_workers_contiguous_groups():
    """core §15: W < G → contiguous groups, one per worker."""
    assert resources.gpu_sets(2, [0, 1, 2, 3], True) == ((0, 1), (2, 3))
    assert resources.gpu_sets(3, [0, 1, 2, 3, 4, 5, 6, 7], True) == ((0, 1, 2), (3, 4, 5), (6, 7))


def test_gpu_sets_follow_host_indices_from_cuda_visible_devices():
    """core §15: the distributed GPUs are the host indices left by CUDA_VISIBLE_DEVICES."""
    assert resources.gpu_sets(2, [2, 5], True) == ((2,), (5,))


def test_gpu_sets_pinning_off_and_cpu():
    """core §15: SMSERVE_GPU_PINNING=false → every worker sees every GPU; no GPU → empty sets."""
    assert resources.gpu_sets(3, [0, 1], False) == ((0, 1), (0, 1), (0, 1))
    assert resources.gpu_sets(2, [], True) == ((), ())


def test_visible_gpus_restricted_by_cuda_visible_devices(monkeypatch):
    """core §15: visible GPUs from `nvidia-smi -L`, restricted by CUDA_VISIBLE_DEVICES."""
    listing = "".join(f"GPU {i}: NVIDIA H100 (UUID: GPU-{i})\n" for i in range(4))

    class Done:
        stdout = listing

    monkeypatch.setattr(resources.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(resources.subprocess, "run", lambda *a, **k: Done())
    assert resources.visible_gpus(None) == [0, 1, 2, 3]
    assert resources.visible_gpus("1,3") == [1, 3]
    assert resources.visible_gpus("") == []
    assert resources.visible_gpus("-1") == []


def test_visible_gpus_given_as_uuids(monkeypatch):
    """core §15: CUDA_VISIBLE_DEVICES may name GPUs by UUID or by a unique UUID prefix, as CUDA accepts them
    (found: UUIDs turned GPU planning off, issue 12)."""
    uuids = ["GPU-8932f937-d72c-4106-c12f-20bd9faed9f6", "GPU-1c9d4f7a-0b5e-4c3e-9a77-1f0c2d3e4b5a",
             "GPU-1c0a7e6b-11aa-42bb-8ccd-2e3f4a5b6c7d"]
    listing = "".join(f"GPU {i}: NVIDIA H200 (UUID: {uuid})\n" for i, uuid in enumerate(uuids))

    class Done:
        stdout = listing

    monkeypatch.setattr(resources.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(resources.subprocess, "run", lambda *a, **k: Done())
    assert resources.visible_gpus(f"{uuids[2]},{uuids[0]}") == [2, 0]
    assert resources.visible_gpus("GPU-8932f937") == [0]
    assert resources.visible_gpus("GPU-1c") == []  # ambiguous prefix: no device, as CUDA
    assert resources.visible_gpus("GPU-1c9d,0") == [1, 0]  # UUIDs and indices mixed


# ---------------------------------------------------------------- multi-model GPU placement (core §13.5)

def test_core_13_5_mme_gpu_free_memory_parsed_from_nvidia_smi():
    """core §13.5: nvidia-smi's `index, memory.free` lines give each GPU's free MiB; other lines are ignored."""
    text = "0, 80511\n1, 1024\n\n2, [N/A]\nNo devices were found\n"
    assert resources.parse_gpu_free(text) == {0: 80511, 1: 1024}


@pytest.mark.parametrize("gpus, free, chosen", [
    ([0, 1, 2], {0: 100, 1: 900, 2: 500}, 1),   # the most free memory
    ([0, 2], {0: 100, 1: 900, 2: 500}, 2),      # only visible GPUs count
    ([0, 1], {0: 700, 1: 700}, 0),              # a tie goes to the lowest index
    ([3], {0: 100}, None),                      # no figure for a visible GPU: no choice
    ([], {0: 100}, None),
])
def test_core_13_5_mme_model_goes_to_the_visible_gpu_with_most_free_memory(gpus, free, chosen):
    """core §13.5: each new model's workers go to the visible GPU with the most free memory."""
    assert resources.emptiest_gpu(gpus, free) == chosen
