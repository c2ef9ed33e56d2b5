"""pytorch/example, the model `make demo` serves: build_model.py writes it, and the server answers with the
example's output_fn (which needs the package from code/requirements.txt) what torch computes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.families import REPO, require_framework
from tests.harness import FAMILY
from tests.models import from_npy, make_dir, npy

torch = require_framework("torch")

from pytorch_models import predict_default  # noqa: E402  (needs torch)

pytestmark = pytest.mark.skipif(FAMILY != "pytorch", reason="PyTorch family suite: set SMSERVE_TEST_FAMILY=pytorch")

ROWS = [[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, 1.0, 1.0]]


@pytest.fixture(scope="module")
def example(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("pytorch-example"))
    subprocess.run([sys.executable, str(REPO / "pytorch" / "example" / "build_model.py"), str(model_dir)],
                   check=True, capture_output=True)
    server = module_servers(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, timeout=240)
    server.expected = np.asarray(predict_default(model_dir, ROWS))
    return server


def test_pytorch_example_json_answer_has_scores_and_table(example):
    body = example.invoke_json(ROWS)
    np.testing.assert_allclose(body["scores"], example.expected, rtol=1e-5)
    assert body["table"].splitlines()[0].split() == ["row", "class_0", "class_1"]


def test_pytorch_example_npy_answer(example):
    response = example.post(data=npy(np.asarray(ROWS, dtype=np.float32)), content_type="application/x-npy",
                            accept="application/x-npy")
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(from_npy(response.content), example.expected, rtol=1e-5)
