"""core.md §1.3, §2.2, §13 and §21 checklist items 101-113: multi-model endpoints (SAGEMAKER_MULTI_MODEL=true),
plus the bad inputs and races of a real endpoint: invalid names, urls outside the models folder, failing loads,
concurrent loads and deletes, a delete while requests are in flight, a model server that dies, a load that times
out, and SIGTERM (core §17) with models loaded or loading.

Every test sends real HTTP to a real front started with SAGEMAKER_MULTI_MODEL=true, which loads real models of
the family under test (SMSERVE_TEST_FAMILY) in their own model servers. The models root is the folder handed to
the harness as "model dir", so on the container target it is the bind mount (/opt/ml/model) and every load url is
given as the server sees it (harness.served_path). Tests that read process ids or kill processes run on the host
target only.

TensorFlow's multi-model endpoint answers in AWS's TF bodies and serves SavedModels, not model_fn scripts
(tensorflow.md §12): tensorflow/tests/test_tensorflow_mme.py covers it, and this module skips under that family.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import requests

from ..harness import FAMILY, TARGET, served_path
from ..models import make_dir, write_code
from ..robustness.test_transport import json_error, read_answer
from .core_scripts import default_model, error

TENSORFLOW_OWN_SUITE = "TensorFlow's multi-model endpoint speaks AWS's TF dialect (test_tensorflow_mme.py)"
mme_family = pytest.mark.skipif(FAMILY == "tensorflow", reason=TENSORFLOW_OWN_SUITE)
host_only = pytest.mark.skipif(TARGET != "host", reason="reads or signals model-server processes on the host")

LOAD_TIMEOUT = 120  # seconds a load request may take (framework import, requirements) on a busy 2-core machine

# Reports which model directory model_fn was given, which module answered (TAG), the worker's pid and whether
# the per-model requirement (tabulate) is importable; {"sleep": s} in the body makes the request take s seconds.
REPORT = '''
import json
import os
import time

TAG = %r


def model_fn(model_dir):
    return {"dir": os.path.basename(os.path.normpath(model_dir)), "files": sorted(os.listdir(model_dir))}


def transform_fn(model, body, content_type, accept):
    request = json.loads(body) if body else {}
    time.sleep(float(request.get("sleep", 0)) if isinstance(request, dict) else 0)
    try:
        import tabulate
        version = tabulate.__version__
    except ImportError:
        version = None
    return json.dumps({"tag": TAG, "model_dir": model["dir"], "files": model["files"], "pid": os.getpid(),
                       "tabulate": version}), "application/json"
'''

# An output_fn alone: the family's default model_fn, input_fn and predict_fn run; the answer is tagged.
TAGGING_OUTPUT_FN = '''
import json

import numpy as np


def _plain(value):
    if hasattr(value, "asnumpy"):
        value = value.asnumpy()
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return np.asarray(value).tolist()


def output_fn(prediction, accept):
    return json.dumps({"tag": "per-model output_fn", "result": _plain(prediction)}), "application/json"
'''

FAILING_MODEL_FN = '''
def model_fn(model_dir):
    raise ValueError("model_fn failed on purpose")
'''

MEMORY_ERROR_MODEL_FN = '''
def model_fn(model_dir):
    raise MemoryError("model_fn ran out of memory on purpose")
'''

# What the kernel OOM killer does to a worker that grows past the memory limit, without needing a memory limit.
KILLED_MODEL_FN = '''
import os
import signal


def model_fn(model_dir):
    os.kill(os.getpid(), signal.SIGKILL)
'''

REQUIREMENT = "tabulate==0.9.0"  # a tiny pure-Python package from PyPI that no image or venv carries

# The 'status' of a successful load (core §13.2): TorchServe's text for PyTorch, MMS's for MXNet and Neo.
LOADED_STATUS = {"pytorch": 'Model "{name}" Version: 1.0 registered with {workers} initial workers'}


# ------------------------------------------------------------------------------------------------ helpers
def report_dir(root: Path, name: str, tag: str = "per-model", requirements: str | None = None) -> Path:
    model_dir = make_dir(root, name)
    write_code(model_dir, REPORT % tag)
    if requirements is not None:
        (model_dir / "code" / "requirements.txt").write_text(requirements)
    return model_dir


def script_dir(root: Path, name: str, source: str) -> Path:
    model_dir = make_dir(root, name)
    write_code(model_dir, source)
    return model_dir


def start_mme(module_servers, root: Path, env: dict | None = None):
    """A multi-model front whose models root is `root` (the bind mount on the container target)."""
    return module_servers(root, {"SAGEMAKER_MULTI_MODEL": "true",
                                 "SMSERVE_MME_MODELS_ROOT": str(served_path(root)), **(env or {})})


def url_of(server, folder: Path) -> str:
    """A load url as the server sees it."""
    return str(served_path(server.model_dir, folder))


def load(server, name: str, folder: Path | str, **fields) -> requests.Response:
    url = folder if isinstance(folder, str) else url_of(server, folder)
    return requests.post(server.url + "/models", data=json.dumps({"model_name": name, "url": url, **fields}),
                         headers={"Content-Type": "application/json"}, timeout=LOAD_TIMEOUT)


def loaded(server, name: str, folder: Path) -> dict:
    response = load(server, name, folder)
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def path_of(name: str) -> str:
    return quote(name, safe="")


def invoke(server, name: str, payload=None, timeout: float = 60) -> requests.Response:
    return requests.post(f"{server.url}/models/{path_of(name)}/invoke", data=json.dumps(payload or {}),
                         headers={"Content-Type": "application/json"}, timeout=timeout)


def answer(server, name: str, payload=None):
    response = invoke(server, name, payload)
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def unload(server, name: str) -> requests.Response:
    return requests.delete(f"{server.url}/models/{path_of(name)}", timeout=LOAD_TIMEOUT)


def listed(server) -> list[str]:
    """Every loaded model's name, following nextPageToken."""
    names, token = [], None
    for _ in range(1000):
        params = {"next_page_token": token} if token else {}
        response = requests.get(server.url + "/models", params=params, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        names += [entry["modelName"] for entry in body["models"]]
        token = body.get("nextPageToken")
        if not token:
            return names
    raise AssertionError("GET /models never reached its last page")


def describe(server, name: str) -> dict:
    response = requests.get(f"{server.url}/models/{path_of(name)}", timeout=30)
    assert response.status_code == 200, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, list) and len(body) == 1, body
    return body[0]


def not_loaded(server, name: str) -> None:
    """The spec's "nothing registered": not listed, not described, not invocable."""
    assert name not in listed(server)
    error(requests.get(f"{server.url}/models/{path_of(name)}", timeout=30), 404)
    error(invoke(server, name), 404)


def wait_until(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie has exited: it only waits for its parent to read its status)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (a model server and its workers share one)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_members_of_dir(model_dir: Path) -> list[int]:
    """Live processes whose command line names `model_dir` (the model servers started for it; host target)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            try:
                if str(model_dir).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def model_server_group(server, name: str) -> int:
    """The process group of the model server behind `name` (its workers are in it)."""
    workers = [int(worker["id"]) for worker in describe(server, name)["workers"]]
    assert workers, describe(server, name)
    groups = {os.getpgid(pid) for pid in workers}
    assert len(groups) == 1 and os.getpgid(server.proc.pid) not in groups, (groups, workers)
    return groups.pop()


def front_children(server) -> list[int]:
    """Live children of the front (host target): one model server per loaded model."""
    pids = []
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(pid for pid in set(pids) if alive(pid))


def in_parallel(*calls):
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


# ------------------------------------------------------------------------------------------------ servers
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The main endpoint's models root: every model folder the main server's tests load."""
    if FAMILY == "tensorflow":
        pytest.skip(TENSORFLOW_OWN_SUITE)
    root = tmp_path_factory.mktemp("mme-root")
    root.chmod(0o755)
    default = make_dir(root, "default")
    expected = default_model(default)
    tagged = make_dir(root, "tagged")
    default_model(tagged)
    write_code(tagged, TAGGING_OUTPUT_FN)
    report_dir(root, "report")
    report_dir(root, "with-requirements", requirements=REQUIREMENT + "\n")
    report_dir(root, "broken-requirements", requirements="./no-such-package-folder\n")
    script_dir(root, "failing", FAILING_MODEL_FN)
    script_dir(root, "memory-error", MEMORY_ERROR_MODEL_FN)
    script_dir(root, "killed", KILLED_MODEL_FN)
    (root / "a-file").write_text("not a folder\n")
    outside = make_dir(tmp_path_factory.mktemp("outside"), "model")
    write_code(outside, REPORT % "outside")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    return root, expected


@pytest.fixture(scope="module")
def main(module_servers, root):
    """The main endpoint, with two models loaded for the tests that only need something loaded: `dflt` (the
    family's default model, no user code) and `report` (the REPORT script)."""
    folder, _ = root
    server = start_mme(module_servers, folder)
    in_parallel(lambda: loaded(server, "dflt", folder / "default"), lambda: loaded(server, "report", folder / "report"))
    return server


@pytest.fixture(scope="module")
def full(module_servers, tmp_path_factory):
    """An endpoint that never has room for a model: 99 % of the memory must stay free, eviction none."""
    if FAMILY == "tensorflow":
        pytest.skip(TENSORFLOW_OWN_SUITE)
    folder = tmp_path_factory.mktemp("mme-full")
    folder.chmod(0o755)
    report_dir(folder, "report")
    return start_mme(module_servers, folder, {"SMSERVE_MME_MIN_FREE_MEMORY_PCT": "99", "SMSERVE_MME_EVICTION": "none"})


@pytest.fixture(scope="module")
def universal(module_servers, tmp_path_factory):
    """An endpoint with universal code at <models root>/code/inference.py, a model without code/ (`bare`, the
    family's default model files), a model with its own (`own`), and room for two models only (eviction none)."""
    if FAMILY == "tensorflow":
        pytest.skip(TENSORFLOW_OWN_SUITE)
    folder = tmp_path_factory.mktemp("mme-universal")
    folder.chmod(0o755)
    write_code(folder, REPORT % "universal")
    default_model(make_dir(folder, "bare"))
    report_dir(folder, "own", tag="per-model")
    server = start_mme(module_servers, folder, {"SMSERVE_MME_MAX_MODELS": "2", "SMSERVE_MME_EVICTION": "none"})
    in_parallel(lambda: loaded(server, "bare", folder / "bare"), lambda: loaded(server, "own", folder / "own"))
    return server


@pytest.fixture(scope="module")
def lru(module_servers, tmp_path_factory):
    """Room for two models, least recently used idle model evicted to make room."""
    if FAMILY == "tensorflow":
        pytest.skip(TENSORFLOW_OWN_SUITE)
    folder = tmp_path_factory.mktemp("mme-lru")
    folder.chmod(0o755)
    report_dir(folder, "report")
    return start_mme(module_servers, folder, {"SMSERVE_MME_MAX_MODELS": "2", "SMSERVE_MME_EVICTION": "lru"})


# ------------------------------------------------------------------------------------------------ checklist
@mme_family
def test_core_101_ping_200_with_no_model_loaded(full):
    response = requests.get(full.url + "/ping", timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "Healthy"}, response.text
    assert requests.post(full.url + "/ping", timeout=5).status_code == 200
    models = requests.get(full.url + "/models", timeout=5)
    assert models.status_code == 200 and models.json() == {"models": []}, models.text


@mme_family
def test_core_102_load_200_then_same_name_409(main, root):
    folder, expected = root
    body = loaded(main, "m102", folder / "default")
    status = LOADED_STATUS.get(FAMILY, "Workers scaled").format(name="m102", workers=1)
    assert body == {"status": status}, body
    expected.check(answer(main, "m102", expected.payload))  # the framework's own result for the family's model
    again = load(main, "m102", folder / "default")
    error(again, 409)
    again = load(main, "m102", folder / "report")  # the name decides, not the url
    error(again, 409)
    expected.check(answer(main, "m102", expected.payload))  # the refused loads left the loaded model alone
    info = describe(main, "m102")
    assert info["modelName"] == "m102" and info["modelUrl"] == url_of(main, folder / "default"), info
    assert info["modelVersion"] == "1.0" and {"loadedAt", "lastUsed"} <= set(info), info
    assert len(info["workers"]) == 1 and {"id", "status", "gpu", "memoryUsage"} <= set(info["workers"][0]), info
    assert unload(main, "m102").status_code == 200


@mme_family
def test_core_103_missing_url_404_missing_url_field_400(main, root):
    folder, _ = root
    error(load(main, "m103", folder / "no-such-model"), 404)
    error(load(main, "m103", folder / "a-file"), 404)  # not a directory
    response = requests.post(main.url + "/models", data=json.dumps({"model_name": "m103"}),
                             headers={"Content-Type": "application/json"}, timeout=30)
    error(response, 400)
    response = requests.post(main.url + "/models", data=json.dumps({"model_name": "m103", "uri": url_of(
        main, folder / "report")}), headers={"Content-Type": "application/json"}, timeout=30)
    error(response, 400)
    response = requests.post(main.url + "/models", data=json.dumps({"url": url_of(main, folder / "report")}),
                             headers={"Content-Type": "application/json"}, timeout=30)
    error(response, 400)  # missing model_name
    response = requests.post(main.url + "/models", data=b'{"model_name": "m103", "url": ', timeout=30,
                             headers={"Content-Type": "application/json"})
    error(response, 400)  # not JSON
    response = requests.post(main.url + "/models", data=b'["m103"]', timeout=30,
                             headers={"Content-Type": "application/json"})
    error(response, 400)  # JSON, not an object
    not_loaded(main, "m103")


@mme_family
def test_core_104_invoke_before_load_and_after_unload_404(main, root):
    folder, _ = root
    body = error(invoke(main, "m104"), 404)
    assert "m104" in body["message"], body
    error(requests.post(main.url + "/invocations", params={"model_name": "m104"}, data=b"{}",
                        headers={"Content-Type": "application/json"}, timeout=30), 404)
    error(requests.post(main.url + "/predictions/m104", data=b"{}", headers={"Content-Type": "application/json"},
                        timeout=30), 404)
    loaded(main, "m104", folder / "report")
    assert answer(main, "m104")["model_dir"] == "report"
    response = unload(main, "m104")
    assert response.status_code == 200 and response.json() == {"status": 'Model "m104" unregistered'}, response.text
    error(invoke(main, "m104"), 404)
    error(requests.post(main.url + "/invocations", params={"model_name": "m104"}, data=b"{}",
                        headers={"Content-Type": "application/json"}, timeout=30), 404)
    error(unload(main, "m104"), 404)  # a second delete: nothing left to delete
    error(requests.get(main.url + "/models/m104", timeout=30), 404)


@pytest.mark.once
@mme_family
def test_core_105_list_paginates_with_limit_and_next_page_token(main):
    everything = requests.get(main.url + "/models", timeout=30)
    assert everything.status_code == 200, everything.text
    every = everything.json()
    names = [entry["modelName"] for entry in every["models"]]
    assert {"dflt", "report"} <= set(names) and names == sorted(names), every
    assert "nextPageToken" not in every, every  # one page holds them all (default limit 100)
    assert all(set(entry) == {"modelName", "modelUrl"} for entry in every["models"]), every
    pages, token = [], None
    for _ in range(len(names) + 1):
        params = {"limit": "1", **({"next_page_token": token} if token else {})}
        response = requests.get(main.url + "/models", params=params, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["models"]) == 1, page
        pages.append(page["models"][0])
        token = page.get("nextPageToken")
        if not token:
            break
        assert isinstance(token, str) and token, page
    assert pages == every["models"], (pages, every)  # each model once, in name order; last page without a token
    response = requests.get(main.url + "/models", params={"limit": str(len(names))}, timeout=30)
    assert response.status_code == 200 and "nextPageToken" not in response.json(), response.text
    for bad in ("0", "101", "-1", "x", "1.5", " 1"):
        error(requests.get(main.url + "/models", params={"limit": bad}, timeout=30), 400)
    error(requests.get(main.url + "/models", params={"next_page_token": "%%%not-a-token"}, timeout=30), 400)


@pytest.mark.once
@mme_family
def test_core_105_empty_limit_400(main):
    """`limit=` names no number from 1 to 100: a bad limit like any other (core §13.2), not the default."""
    error(requests.get(main.url + "/models?limit=", timeout=30), 400)


@mme_family
def test_core_106_delete_200_and_the_model_processes_are_gone(main, root):
    folder, _ = root
    loaded(main, "m106", folder / "report")
    workers = [int(worker["id"]) for worker in describe(main, "m106")["workers"]]
    assert answer(main, "m106")["pid"] in workers
    group = model_server_group(main, "m106") if TARGET == "host" else None
    members = group_members(group) if group is not None else []
    response = unload(main, "m106")
    assert response.status_code == 200 and response.json() == {"status": 'Model "m106" unregistered'}, response.text
    if TARGET == "host":  # answered after its processes exited (core §13.2)
        assert len(members) >= 2 and set(workers) <= set(members), (members, workers)  # model server + worker(s)
        assert [pid for pid in members if alive(pid)] == [], members
        assert group_members(group) == [], group
    not_loaded(main, "m106")
    assert answer(main, "report")["model_dir"] == "report"  # the others still serve


def _gpu_free_mib() -> dict[int, int]:
    """{index: free MiB} as nvidia-smi reports it now; {} without GPUs."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(i): int(m) for i, _, m in (line.partition(",") for line in out.splitlines())
            if i.strip().isdigit() and m.strip().isdigit()}


@pytest.mark.gpu
@mme_family
@host_only
@pytest.mark.skipif(not _gpu_free_mib(), reason="needs NVIDIA GPUs (nvidia-smi) on the host")
def test_core_13_5_mme_model_workers_go_to_the_gpu_with_most_free_memory(main, root):
    """core §13.5: each new model's workers go to the visible GPU with the most free memory at its load."""
    folder, _ = root
    free = _gpu_free_mib()
    emptiest = max(free, key=lambda gpu: (free[gpu], -gpu))
    loaded(main, "mgpu", folder / "report")
    try:
        workers = describe(main, "mgpu")["workers"]
        assert workers and all(worker["gpu"] for worker in workers), workers
        for worker in workers:
            environ = Path(f"/proc/{worker['id']}/environ").read_bytes().split(b"\0")
            assert f"CUDA_VISIBLE_DEVICES={emptiest}".encode() in environ, (emptiest, free)
    finally:
        unload(main, "mgpu")


@mme_family
def test_core_107_per_model_code_is_used_for_that_model_only(main, root):
    folder, expected = root
    loaded(main, "m107", folder / "tagged")
    tagged = answer(main, "m107", expected.payload)
    assert isinstance(tagged, dict) and tagged["tag"] == "per-model output_fn", tagged
    assert np.allclose(np.ravel(tagged["result"]), np.ravel(expected.expected), atol=1e-6), (tagged, expected)
    plain = answer(main, "dflt", expected.payload)  # same framework, same defaults, no code/: untagged
    expected.check(plain)
    assert answer(main, "report")["tag"] == "per-model"  # and a third model keeps its own module
    assert unload(main, "m107").status_code == 200


@mme_family
@pytest.mark.slow  # run on the host target (the container run takes `not slow`)
def test_core_108_per_model_requirements_installed_at_load_and_visible_to_that_model_only(main, root):
    folder, _ = root
    loaded(main, "m108", folder / "with-requirements")
    assert answer(main, "m108")["tabulate"] == REQUIREMENT.split("==")[1]
    assert answer(main, "report")["tabulate"] is None  # loaded before: its path did not change
    loaded(main, "m108-after", folder / "report")
    assert answer(main, "m108-after")["tabulate"] is None  # loaded after: never sees another model's packages
    assert in_parallel(lambda: unload(main, "m108").status_code,
                       lambda: unload(main, "m108-after").status_code) == [200, 200]


@mme_family
def test_core_109_universal_code_applies_to_models_without_their_own(universal):
    bare = answer(universal, "bare")
    assert bare["tag"] == "universal", bare
    assert bare["model_dir"] == "bare" and bare["files"] and "code" not in bare["files"], bare  # its own model dir
    own = answer(universal, "own")
    assert own["tag"] == "per-model" and own["model_dir"] == "own", own  # per-model code wins over universal


@pytest.mark.once
@mme_family
def test_core_110_load_that_does_not_fit_507(full, universal):
    response = load(full, "m110", Path(full.model_dir) / "report")
    body = error(response, 507, "InsufficientMemory")
    assert body["message"], body
    not_loaded(full, "m110")
    assert requests.get(full.url + "/ping", timeout=5).status_code == 200
    # SMSERVE_MME_MAX_MODELS=2 is reached on the universal endpoint: 507, the two loaded models untouched
    error(load(universal, "third", Path(universal.model_dir) / "own"), 507, "InsufficientMemory")
    not_loaded(universal, "third")
    assert sorted(listed(universal)) == ["bare", "own"]
    assert answer(universal, "bare")["tag"] == "universal"


@pytest.mark.once
@mme_family
def test_core_111_lru_evicts_the_least_recently_used_idle_model(lru):
    folder = Path(lru.model_dir) / "report"
    in_parallel(lambda: loaded(lru, "lru-a", folder), lambda: loaded(lru, "lru-b", folder))
    time.sleep(0.05)
    answer(lru, "lru-a")  # lru-b is now the least recently used
    loaded(lru, "lru-c", folder)
    assert sorted(listed(lru)) == ["lru-a", "lru-c"]
    assert answer(lru, "lru-a")["model_dir"] == "report"
    assert answer(lru, "lru-c")["model_dir"] == "report"
    error(invoke(lru, "lru-b"), 404)
    error(requests.get(lru.url + "/models/lru-b", timeout=30), 404)
    assert any("evict" in line.lower() and "lru-b" in line for line in lru.logs().splitlines()), lru.logs()[-3000:]
    metrics = requests.get(lru.url + "/metrics", timeout=30)
    assert metrics.status_code == 200, metrics.text


@mme_family
def test_core_112_memory_error_in_model_fn_during_load_507_nothing_registered(main, root):
    folder, _ = root
    body = error(load(main, "m112", folder / "memory-error"), 507, "InsufficientMemory")
    assert "m112" in body["message"], body
    not_loaded(main, "m112")
    assert answer(main, "report")["model_dir"] == "report"


@pytest.mark.once
@mme_family
@pytest.mark.slow  # run on the host target (the container run takes `not slow`)
def test_core_112_worker_killed_by_signal_9_during_load_fails_nothing_registered(main, root):
    """A model_fn that SIGKILLs its own worker stands in for the kernel OOM killer (signal 9): 507 (spec §13.5),
    nothing registered, no process left."""
    folder, _ = root
    response = load(main, "m112-killed", folder / "killed")
    error(response, 507)
    not_loaded(main, "m112-killed")
    if TARGET == "host":
        assert len(front_children(main)) == len(listed(main)), (front_children(main), listed(main))
    assert answer(main, "report")["model_dir"] == "report"


@pytest.mark.once
@mme_family
def test_core_113_invocations_needs_model_name(main, root):
    _, expected = root
    headers = {"Content-Type": "application/json"}
    body = error(requests.post(main.url + "/invocations", data=b"{}", headers=headers, timeout=30), 400)
    assert "model_name" in body["message"], body
    routed = requests.post(main.url + "/invocations", params={"model_name": "report"}, data=b"{}", headers=headers,
                           timeout=30)
    assert routed.status_code == 200 and routed.json()["model_dir"] == "report", routed.text
    routed = requests.post(main.url + "/invocations", params={"model_name": "dflt"},
                           data=json.dumps(expected.payload), headers=headers, timeout=30)
    assert routed.status_code == 200, routed.text
    expected.check(routed.json())
    alias = requests.post(main.url + "/predictions/report", data=b"{}", headers=headers, timeout=30)
    assert alias.status_code == 200 and alias.json()["model_dir"] == "report", alias.text
    error(requests.post(main.url + "/invocations", params={"model_name": "nobody"}, data=b"{}", headers=headers,
                        timeout=30), 404)


# ------------------------------------------------------------------------------------------------ bad input
BAD_NAMES = ["..", ".", "a/b", "../report", "bad\x01name", "tab\tname", "new\nline", "del\x7f", "x" * 256, ""]


@pytest.mark.once
@mme_family
@pytest.mark.parametrize("name", BAD_NAMES, ids=["dotdot", "dot", "slash", "dotdot-slash", "ctrl-01", "tab",
                                                 "newline", "del", "256-chars", "empty"])
def test_core_mme_bad_model_name_400(main, root, name):
    folder, _ = root
    url = url_of(main, folder / "report")
    error(load(main, name, url), 400)
    # the same name as query parameters (a load without a JSON body), URL-encoded
    response = requests.post(f"{main.url}/models?model_name={quote(name, safe='')}&url={quote(url, safe='')}",
                             timeout=30)
    error(response, 400)
    assert name not in listed(main)


@pytest.mark.once
@mme_family
@pytest.mark.parametrize("name", ["a/b", "..", "bad\x01name", "x" * 256],
                         ids=["slash", "dotdot", "ctrl-01", "256-chars"])
def test_core_mme_bad_model_name_in_the_path_refused(main, name):
    """A name outside the rules of core §13.2, URL-encoded into one path segment of GET, DELETE and invoke: never
    a model, never another route. The spec gives 400 for such names at load and 404 for a name not loaded on these
    routes; either JSON error is accepted here (the front answers 404 ModelNotFound)."""
    segment = quote(name, safe="").replace(".", "%2E")  # %2E%2E: no client or server folds it into the parent
    for response in (requests.get(f"{main.url}/models/{segment}", timeout=30),
                     requests.delete(f"{main.url}/models/{segment}", timeout=30),
                     requests.post(f"{main.url}/models/{segment}/invoke", data=b"{}",
                                   headers={"Content-Type": "application/json"}, timeout=30)):
        body = error(response, response.status_code)
        assert response.status_code == 400 or (response.status_code == 404 and body["type"] == "ModelNotFound"), (
            response.request.method, response.request.url, response.status_code, body)


@pytest.mark.once
@mme_family
def test_core_mme_255_character_name_is_accepted_by_the_name_check(full):
    """255 characters pass the name rule (the `full` endpoint then refuses the load itself for memory: 507)."""
    error(load(full, "x" * 255, Path(full.model_dir) / "report"), 507)


@pytest.mark.once
@mme_family
def test_core_mme_url_outside_the_models_root_400(main, root):
    folder, _ = root
    for url in ("/tmp", "/", url_of(main, folder / "report") + "/../..", str(folder.parent),
                url_of(main, folder) + "/escape"):  # escape: a link inside the root to a model outside (not
        # resolved here: on the container target its target is not in the bind mount)
        error(load(main, "m-outside", url), 400)
    error(load(main, "m-outside", "report"), 400)  # relative: not under the root as given
    not_loaded(main, "m-outside")


@mme_family
def test_core_mme_model_fn_failure_500_nothing_registered_and_others_serve(main, root):
    folder, _ = root
    body = error(load(main, "m-failing", folder / "failing"), 500)
    assert "m-failing" in body["message"] and "Traceback" not in body["message"], body
    not_loaded(main, "m-failing")
    assert "m-failing" in main.logs() and "model_fn failed on purpose" in main.logs()  # the traceback is logged
    assert answer(main, "report")["model_dir"] == "report"
    assert requests.get(main.url + "/ping", timeout=5).status_code == 200
    if TARGET == "host":
        assert len(front_children(main)) == len(listed(main)), (front_children(main), listed(main))


@pytest.mark.once
@mme_family
@pytest.mark.slow  # run on the host target (the container run takes `not slow`)
def test_core_mme_requirements_install_failure_500_nothing_registered(main, root):
    folder, _ = root
    body = error(load(main, "m-badreq", folder / "broken-requirements"), 500, "RequirementsInstallError")
    assert "no-such-package-folder" in body["message"], body  # the pip output tail
    not_loaded(main, "m-badreq")
    assert answer(main, "report")["model_dir"] == "report"


@pytest.mark.once
@mme_family
def test_core_mme_concurrent_loads_of_one_name_one_200_one_409(main, root):
    folder, _ = root
    first, second = in_parallel(lambda: load(main, "m-race", folder / "report"),
                                lambda: load(main, "m-race", folder / "report"))
    assert sorted([first.status_code, second.status_code]) == [200, 409], (first.text, second.text)
    error(first if first.status_code == 409 else second, 409)
    assert listed(main).count("m-race") == 1
    assert len(describe(main, "m-race")["workers"]) == 1
    assert answer(main, "m-race")["model_dir"] == "report"
    assert unload(main, "m-race").status_code == 200


@pytest.mark.once
@mme_family
@pytest.mark.slow  # run on the host target (the container run takes `not slow`)
def test_core_mme_delete_waits_for_in_flight_requests(main, root):
    folder, _ = root
    loaded(main, "m-slow", folder / "report")
    finished: dict[str, float] = {}

    def slow(key):
        response = invoke(main, "m-slow", {"sleep": 1.5})
        finished[key] = time.monotonic()
        return response

    with ThreadPoolExecutor(max_workers=2) as pool:
        requests_in_flight = [pool.submit(slow, key) for key in ("first", "second")]
        time.sleep(0.5)  # both are with the model now (one worker: the second waits in its queue)
        deleted = unload(main, "m-slow")
        finished["delete"] = time.monotonic()
        answers = [future.result() for future in requests_in_flight]
    for response in answers:
        assert response.status_code == 200 and response.json()["model_dir"] == "report", response.text
    assert deleted.status_code == 200, deleted.text
    assert finished["delete"] >= max(finished["first"], finished["second"]), finished
    not_loaded(main, "m-slow")


RACE_TIMEOUT = 45  # seconds: a load takes 3-8 s here even while others run; past this it is stuck


def timed(call) -> tuple[int | str, str]:
    """(status, body), or ("timeout", ...) when the endpoint did not answer within RACE_TIMEOUT."""
    try:
        response = call()
    except requests.Timeout as exc:
        return "timeout", str(exc)
    return response.status_code, response.text


@pytest.mark.once
@mme_family
@pytest.mark.slow  # run on the host target (the container run takes `not slow`)
def test_core_mme_load_right_after_delete_of_the_same_name(main, root):
    """A platform unloads a model and loads it again at once (an update): the load must not get lost in the
    unload still under way (serialised per name, core §13.3) — it answers, and the model then serves."""
    folder, _ = root
    loaded(main, "m-reload", folder / "report")
    with ThreadPoolExecutor(max_workers=2) as pool:
        deleting = pool.submit(timed, lambda: requests.delete(main.url + "/models/m-reload", timeout=RACE_TIMEOUT))
        time.sleep(0.05)  # the delete is under way: out of the table, its model server stopping
        loading = pool.submit(timed, lambda: requests.post(
            main.url + "/models", data=json.dumps({"model_name": "m-reload", "url": url_of(main, folder / "report")}),
            headers={"Content-Type": "application/json"}, timeout=RACE_TIMEOUT))
        deleted, reloaded = deleting.result(), loading.result()
    assert deleted[0] == 200, deleted
    assert reloaded[0] in (200, 409), reloaded
    if reloaded[0] == 200:
        assert answer(main, "m-reload")["model_dir"] == "report"
        assert "m-reload" in listed(main)
        assert unload(main, "m-reload").status_code == 200
    else:
        not_loaded(main, "m-reload")


@pytest.mark.once
@mme_family
@pytest.mark.slow  # run on the host target (the container run takes `not slow`)
def test_core_mme_concurrent_loads_and_deletes_stay_consistent(main, root):
    folder, _ = root
    names = ("m-mix-1", "m-mix-2")
    allowed = {200, 404, 409}  # loaded/deleted, nothing to delete, loaded or loading already
    outcomes: list[tuple[str, str, int | str, str]] = []
    lock = threading.Lock()

    def do(op, name):
        if op == "load":
            status, text = timed(lambda: requests.post(
                main.url + "/models", data=json.dumps({"model_name": name, "url": url_of(main, folder / "report")}),
                headers={"Content-Type": "application/json"}, timeout=RACE_TIMEOUT))
        else:
            status, text = timed(lambda: requests.delete(f"{main.url}/models/{name}", timeout=RACE_TIMEOUT))
        with lock:
            outcomes.append((op, name, status, text))

    rounds = [[("load", names[0]), ("load", names[0]), ("delete", names[0]), ("load", names[1]),
               ("delete", names[1])],
              [("delete", names[0]), ("load", names[0]), ("delete", names[1]), ("load", names[1]),
               ("load", names[1])],
              [("delete", names[0]), ("delete", names[0]), ("load", names[1])]]
    for ops in rounds:
        in_parallel(*[lambda op=op, name=name: do(op, name) for op, name in ops])
    bad = [entry for entry in outcomes if entry[2] not in allowed]
    assert not bad, bad
    for op, name, status, text in outcomes:
        if status != 200:
            assert json.loads(text)["code"] == status, text
    present = set(listed(main))
    for name in names:
        if name in present:
            assert describe(main, name)["modelName"] == name
            assert answer(main, name)["model_dir"] == "report"
        else:
            error(requests.get(f"{main.url}/models/{name}", timeout=30), 404)
            error(invoke(main, name), 404)
    if TARGET == "host":  # one model server per listed model, no orphan left by a lost race
        assert len(front_children(main)) == len(listed(main)), (front_children(main), listed(main))
    for name in names:
        unload(main, name)
    assert not set(names).intersection(listed(main))


# ------------------------------------------------------------------------------------------------ model server death
@pytest.mark.once
@mme_family
@host_only
def test_core_mme_idle_model_server_killed_unregisters_the_model_and_reload_works(main, root):
    """core §13.3: a model whose server dies while idle is unregistered (404, so the platform reloads it), and
    loading it again works."""
    folder, _ = root
    loaded(main, "m-dies", folder / "report")
    group = model_server_group(main, "m-dies")
    os.killpg(group, signal.SIGKILL)
    wait_until(lambda: invoke(main, "m-dies").status_code == 404, 10, "invoke of a dead model answers 404")
    not_loaded(main, "m-dies")
    assert answer(main, "report")["model_dir"] == "report"
    loaded(main, "m-dies", folder / "report")
    assert answer(main, "m-dies")["model_dir"] == "report"
    assert unload(main, "m-dies").status_code == 200


@pytest.mark.once
@mme_family
@host_only
def test_core_mme_model_server_killed_under_a_request_500_worker_died(main, root):
    """core §13.3: "A request in flight on it gets 500 `WorkerDied`"; the model is then unregistered."""
    folder, _ = root
    loaded(main, "m-dies-busy", folder / "report")
    group = model_server_group(main, "m-dies-busy")
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(invoke, main, "m-dies-busy", {"sleep": 5})
        time.sleep(0.7)
        os.killpg(group, signal.SIGKILL)
        response = in_flight.result()
    error(response, 500, "WorkerDied")
    wait_until(lambda: invoke(main, "m-dies-busy").status_code == 404, 10, "invoke of a dead model answers 404")
    not_loaded(main, "m-dies-busy")
    assert answer(main, "report")["model_dir"] == "report"


@pytest.mark.once
@mme_family
@host_only
def test_core_mme_idle_worker_killed_unregisters_the_model(main, root):
    """core §13.3: "A worker of a loaded model that dies while idle: the model is unregistered and later invokes
    get 404, so the platform reloads it"."""
    folder, _ = root
    loaded(main, "m-idle", folder / "report")
    worker = answer(main, "m-idle")["pid"]
    group = model_server_group(main, "m-idle")
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: invoke(main, "m-idle").status_code == 404, 10, "invoke after the idle worker died is 404")
    not_loaded(main, "m-idle")
    wait_until(lambda: not group_members(group), 30, "the model server's processes exit")
    loaded(main, "m-idle", folder / "report")
    assert answer(main, "m-idle")["model_dir"] == "report"
    assert unload(main, "m-idle").status_code == 200


# ------------------------------------------------------------------------------------------------ shutdown
SLOW_MODEL_FN = (REPORT % "slow-load").replace("def model_fn(model_dir):\n",
                                               "def model_fn(model_dir):\n    time.sleep(20)\n")


def mme_env(root: Path, **extra) -> dict:
    return {"SAGEMAKER_MULTI_MODEL": "true", "SMSERVE_MME_MODELS_ROOT": str(served_path(root)), **extra}


@pytest.mark.once
@mme_family
def test_core_mme_front_guards_its_connections_like_a_worker(serve, tmp_path):
    """The front is what faces the network on a multi-model endpoint, so it has the workers' connection limits
    (docs/security.md): an oversized header gets 431, headers that never end get 408 after SMSERVE_HEADER_TIMEOUT,
    a body trickled past the request deadline gets 504, and the endpoint keeps serving its model meanwhile."""
    root = tmp_path / "models"
    folder = report_dir(root, "guarded")
    server = serve(root, {"SAGEMAKER_MULTI_MODEL": "true", "SMSERVE_MME_MODELS_ROOT": str(served_path(root)),
                          "SMSERVE_HEADER_TIMEOUT": "1.5", "SMSERVE_MAX_HEADER_BYTES": "8192",
                          "SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"})
    loaded(server, "guarded", folder)

    def connection():
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.settimeout(10)
        return sock

    big = connection()
    big.sendall(b"GET /models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert json_error(read_answer(big), 431)["type"] == "RequestHeaderFieldsTooLarge"
    slow = connection()
    slow.sendall(b"GET /models HTTP/1.1\r\nHost: x\r\n")  # and nothing more
    started = time.monotonic()
    assert json_error(read_answer(slow), 408)["code"] == 408
    assert 1.0 < time.monotonic() - started < 6
    trickle = connection()
    trickle.sendall(b"POST /models/guarded/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{")
    started = time.monotonic()
    raw = b""
    while b"\r\n\r\n" not in raw and time.monotonic() - started < 8:
        try:
            trickle.sendall(b" ")
        except OSError:
            pass
        time.sleep(0.2)
        trickle.setblocking(False)
        try:
            raw += trickle.recv(65536)
        except BlockingIOError:
            pass
        trickle.setblocking(True)
    trickle.close()
    assert raw.startswith(b"HTTP/1.1 504 "), raw[:300]
    assert time.monotonic() - started < 6
    assert answer(server, "guarded")["tag"] == "per-model"
    for sock in (big, slow):
        sock.close()


@pytest.mark.once
@mme_family
def test_core_mme_sigterm_exits_0_and_stops_every_model_server(serve, tmp_path):
    """core §17 on a multi-model endpoint: SIGTERM drains, the model servers exit, then the front exits 0."""
    folder = make_dir(tmp_path, "models")
    report_dir(folder, "report")
    server = serve(folder, mme_env(folder, SMSERVE_GRACEFUL_TIMEOUT="3"))
    loaded(server, "m-term", folder / "report")
    group = model_server_group(server, "m-term") if TARGET == "host" else None
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    status = server.wait_exit(30)
    assert status == 0, (status, server.logs()[-3000:])
    assert time.monotonic() - started < 3 + 5
    if group is not None:
        time.sleep(0.5)
        assert group_members(group) == [], group  # no model server outlives the front


@pytest.mark.once
@mme_family
@pytest.mark.slow  # run on the host target (the container run takes `not slow`)
def test_core_mme_sigterm_during_a_load_exits_within_the_graceful_timeout(serve, tmp_path):
    """core §17: everything finishes within SMSERVE_GRACEFUL_TIMEOUT, also while a load (a model_fn of 20 s) is
    under way; the load is not completed and no model server outlives the front."""
    folder = make_dir(tmp_path, "models")
    script_dir(folder, "slow-load", SLOW_MODEL_FN)
    server = serve(folder, mme_env(folder, SMSERVE_GRACEFUL_TIMEOUT="3"))
    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(timed, lambda: load(server, "m-slow-load", folder / "slow-load"))
        time.sleep(4)  # its model server is up and inside model_fn
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        try:
            status = server.wait_exit(40)
        finally:
            took = time.monotonic() - started
        answered = loading.result()
    assert took < 3 + 5, (took, server.logs()[-3000:])
    assert status == 0, (status, server.logs()[-3000:])
    assert answered[0] != 200, answered  # a load cut short by the shutdown is not reported as loaded
    if TARGET == "host":
        time.sleep(0.5)
        assert group_members_of_dir(folder / "slow-load") == []



@pytest.mark.once
@mme_family
@pytest.mark.slow  # run on the host target (the container run takes `not slow`)
def test_core_mme_load_timeout_408_processes_stopped_nothing_registered(serve, tmp_path):
    """core §13.3: a load that is not ready within SAGEMAKER_STARTUP_TIMEOUT → 408, its processes killed."""
    folder = make_dir(tmp_path, "models")
    script_dir(folder, "slow-load", SLOW_MODEL_FN)
    server = serve(folder, mme_env(folder, SAGEMAKER_STARTUP_TIMEOUT="4"))
    started = time.monotonic()
    body = error(load(server, "m-408", folder / "slow-load"), 408)
    assert time.monotonic() - started < 4 + 8, body
    not_loaded(server, "m-408")
    if TARGET == "host":
        wait_until(lambda: not group_members_of_dir(folder / "slow-load"), 5, "the timed-out load's processes exit")
        assert front_children(server) == []


@mme_family
@pytest.mark.slow
@pytest.mark.skipif(FAMILY != "neo", reason="hundreds of model-server starts: run where one starts in ~0.5 s "
                                             "(the front, its routing and eviction do not depend on the family)")
def test_core_mme_mixed_workload_20_models_lru_no_cross_talk(serve, tmp_path):
    """Issue 10 item 3: 20 models loaded and invoked in random order by 4 clients under SMSERVE_MME_EVICTION=lru
    with room for 4. Every answer belongs to the model asked (its folder, as its model_fn saw it); nothing is
    lost: a request gets its model's answer, or a 404 that a reload fixes (a 409 while another client loads it)."""
    root = tmp_path / "models"
    root.mkdir()
    for path in (tmp_path, root):
        path.chmod(0o755)
    names = [f"mix{i:02d}" for i in range(20)]
    for name in names:
        report_dir(root, name)
    server = serve(root, {"SAGEMAKER_MULTI_MODEL": "true", "SMSERVE_MME_MODELS_ROOT": str(served_path(root)),
                          "SMSERVE_MME_MAX_MODELS": "4", "SMSERVE_MME_EVICTION": "lru"})
    statuses: dict[int, int] = {}
    wrong: list = []
    lock = threading.Lock()

    def client(seed: int) -> int:
        rng = np.random.default_rng(seed)
        served = 0
        for _ in range(30):
            name = names[int(rng.integers(len(names)))]
            for _attempt in range(20):
                response = invoke(server, name)
                with lock:
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    if response.json()["model_dir"] != name:
                        wrong.append((name, response.json()))
                    served += 1
                    break
                assert response.status_code == 404, (name, response.status_code, response.text)
                loading = load(server, name, root / name)
                assert loading.status_code in (200, 409, 507), (name, loading.status_code, loading.text)
                if loading.status_code != 200:
                    time.sleep(0.2)  # another client is loading it, or every model is busy right now
            else:
                raise AssertionError(f"{name} could not be served in 20 attempts: {statuses}")
        return served

    served = sum(in_parallel(*[lambda seed=seed: client(seed) for seed in range(4)]))
    assert served == 120 and not wrong, (served, wrong[:3])
    assert len(listed(server)) <= 4, listed(server)
    assert statuses.get(200) == 120 and set(statuses) <= {200, 404}, statuses
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    evictions = next(line for line in metrics.splitlines() if line.startswith("smserve_mme_evictions_total "))
    assert float(evictions.split()[1]) > 0, metrics  # 20 models through room for 4: LRU made room
