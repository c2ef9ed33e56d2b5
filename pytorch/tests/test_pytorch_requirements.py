"""Requirements isolation in the PyTorch family (issue 12; core.md §6): code/requirements.txt pins numpy to
1.26.4 while the image has numpy 2. Served by the image as user 1000 on a read-only root filesystem, the worker
runs the pinned numpy with torch, answers what torch computes, and numpy's BLAS follows the worker's thread plan;
the supervisor, which imports numpy once after the install for its workers to inherit, has the pinned one too.

Found before: pip tried to uninstall the image's numpy (exit 3 as non-root or read-only), and numpy was imported
by the supervisor before the fork, so the pin never took effect and OpenBLAS ran 2 threads although
OPENBLAS_NUM_THREADS=1 was exported for each of the 2 workers.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.families import require_framework
from tests.harness import FAMILY
from tests.models import make_dir, write_code

torch = require_framework("torch")

pytestmark = pytest.mark.skipif(FAMILY != "pytorch", reason="PyTorch family suite: set SMSERVE_TEST_FAMILY=pytorch")

PINNED_NUMPY = "1.26.4"
REQUIREMENTS = f"numpy=={PINNED_NUMPY}\nthreadpoolctl==3.5.0\n"
NON_ROOT_READ_ONLY = ("--user", "1000:1000", "--read-only", "--tmpfs", "/tmp:exec")  # numpy is compiled

NUMPY_WITH_TORCH = '''
import json
import os

import numpy
import threadpoolctl
import torch


def model_fn(model_dir):
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.25, 4.0, -1.0]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))
    return layer.eval()


def transform_fn(model, body, content_type, accept):
    rows = numpy.asarray(json.loads(body), dtype=numpy.float32)
    with torch.no_grad():
        scores = model(torch.from_numpy(rows)).numpy()
    numpy_blas = [info["num_threads"] for info in threadpoolctl.threadpool_info()
                  if info["internal_api"] == "openblas" and "numpy" in info["filepath"]]
    with open(f"/proc/{os.getppid()}/maps") as maps:  # the supervisor, which forked this worker
        numpy_libraries = sorted({line.split()[-1] for line in maps if "/numpy" in line and ".so" in line})
    return json.dumps({"scores": scores.tolist(), "numpy": numpy.__version__, "numpy_file": numpy.__file__,
                       "supervisor_numpy": numpy_libraries,
                       "numpy_blas_threads": numpy_blas, "dot": float(numpy.dot(rows[0], rows[0]))}), \\
        "application/json"
'''


def test_pytorch_user_numpy_pin_wins_in_workers(serve, tmp_path):
    model_dir = make_dir(tmp_path)
    write_code(model_dir, NUMPY_WITH_TORCH)
    write_code(model_dir, REQUIREMENTS, name="requirements.txt")
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SMSERVE_SKIP_REQUIREMENTS": ""},
                   docker_args=NON_ROOT_READ_ONLY, timeout=300)
    threads = int(re.search(r"threads/worker\s+(\d+)", server.logs()).group(1))  # the plan in the summary
    rows = [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]
    for _ in range(4):  # both workers, most likely
        response = server.post(data=json.dumps(rows))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["numpy"] == PINNED_NUMPY, body
        assert "/requirements/" in body["numpy_file"], body
        # the supervisor loads numpy only after the install, so the workers it forks inherit the pinned one
        assert all("/requirements/" in path for path in body["supervisor_numpy"]), body["supervisor_numpy"]
        assert body["numpy_blas_threads"] == [threads], body
        weight = np.array([[1.0, -2.0, 0.5], [0.25, 4.0, -1.0]])
        np.testing.assert_allclose(body["scores"], np.asarray(rows) @ weight.T + [0.5, -0.5], rtol=1e-6)
        assert body["dot"] == 14.0
