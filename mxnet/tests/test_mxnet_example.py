"""mxnet/example: build_model.py writes a Module checkpoint classifier, served by the MXNet defaults with the
example's output_fn; each answer row is mxnet's own Module.predict, labelled."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.families import REPO, require_framework
from tests.harness import FAMILY
from tests.models import make_dir

mx = require_framework("mxnet")

from mxnet_models import module_predict  # noqa: E402  (needs mxnet)

pytestmark = pytest.mark.skipif(FAMILY != "mxnet", reason="MXNet family suite: set SMSERVE_TEST_FAMILY=mxnet")

LABELS = ("setosa", "versicolor", "virginica")


def test_mxnet_example_serves_labelled_softmax_scores(serve, tmp_path):
    model_dir = make_dir(tmp_path)
    subprocess.run([sys.executable, str(REPO / "mxnet" / "example" / "build_model.py"), str(model_dir)],
                   check=True, capture_output=True)
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
    expected = module_predict(model_dir, rows)
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    answer = server.invoke_json(rows.tolist())
    assert [item["label"] for item in answer] == [LABELS[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose([item["scores"] for item in answer], expected, atol=1e-6)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-5)  # the softmax head
