"""tensorflow.md §10: the built-in backend's request batching (RequestBatcher) against a real SavedModel signature,
and checklist item 46 through the backend process.

The unit tests run the batcher in-process on a small dense SavedModel: the values each caller sends identify it,
so a caller that got another caller's rows, or rows in the wrong order, fails the check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.families import require_framework

tf = require_framework("tensorflow")

from smserve_tensorflow.backend.batching import QUEUE_FULL, RequestBatcher  # noqa: E402  (needs tensorflow)
from smserve_tensorflow.backend.errors import BackendError, Code  # noqa: E402

WIDTH = 4


@dataclass
class Params:
    max_batch_size: int = 8
    batch_timeout_micros: int = 20000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100


class Dense(tf.Module):
    """y = x @ W + b with a fixed W (row i of y depends only on row i of x); `total` has no batch dimension."""

    def __init__(self):
        super().__init__()
        self.w = tf.constant(np.arange(WIDTH * 3, dtype=np.float32).reshape(WIDTH, 3) / 10)
        self.b = tf.constant([1.0, 2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.matmul(x, self.w) + self.b, "double": x * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
    def echo(self, x):
        return {"double": x * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
    def total(self, x):
        return {"total": tf.reduce_sum(x), "rows": tf.shape(x)[0]}


def expected_y(x: np.ndarray) -> np.ndarray:
    w = np.arange(WIDTH * 3, dtype=np.float32).reshape(WIDTH, 3) / 10
    return x @ w + np.array([1.0, 2.0, 3.0], dtype=np.float32)


class Sig:
    """A signature with `.run`, recording the rows of every call (what the batcher merged)."""

    def __init__(self, fn, gate: threading.Event | None = None, fail_on_negative: bool = False):
        self.fn = fn
        self.calls: list[int] = []
        self.lock = threading.Lock()
        self.gate = gate
        self.fail_on_negative = fail_on_negative

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            self.calls.append(int(inputs["x"].shape[0]))
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail_on_negative and (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {k: v.numpy() for k, v in self.fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = tmp_path_factory.mktemp("dense") / "1"
    module = Dense()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve, "total": module.total,
                                                        "echo": module.echo})
    return tf.saved_model.load(str(path))


def rows_for(caller: int, count: int) -> np.ndarray:
    """Rows whose values name the caller and the row: caller 7, row 2 -> [7.2, 7.2, ...] + column offsets."""
    return np.array([[caller + r / 10 + c / 1000 for c in range(WIDTH)] for r in range(count)], dtype=np.float32)


def concurrently(count: int, fn) -> list:
    barrier = threading.Barrier(count)

    def call(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_each_caller_gets_exactly_its_rows(loaded):
    sig = Sig(loaded.signatures["serving_default"])
    batcher = RequestBatcher(Params(max_batch_size=8))
    try:
        sizes = [1 + i % 3 for i in range(24)]
        sent = [rows_for(i, sizes[i]) for i in range(24)]
        got = concurrently(24, lambda i: batcher.run(sig, {"x": sent[i]}, key=("m", 1, "serving_default")))
    finally:
        batcher.close()
    for i, out in enumerate(got):
        assert set(out) == {"y", "double"}
        assert out["double"].shape == (sizes[i], WIDTH)
        np.testing.assert_array_equal(out["double"], sent[i] * 2)
        np.testing.assert_allclose(out["y"], expected_y(sent[i]), rtol=1e-6)
    assert sum(sig.calls) == sum(sizes)
    assert len(sig.calls) < 24, sig.calls
    assert max(sig.calls) <= 8


def test_max_batch_size_is_respected(loaded):
    sig = Sig(loaded.signatures["serving_default"])
    batcher = RequestBatcher(Params(max_batch_size=3, batch_timeout_micros=50000, num_batch_threads=1))
    try:
        got = concurrently(16, lambda i: batcher.run(sig, {"x": rows_for(i, 1 + i % 2)}, key="k"))
    finally:
        batcher.close()
    for i, out in enumerate(got):
        np.testing.assert_array_equal(out["double"], rows_for(i, 1 + i % 2) * 2)
    assert max(sig.calls) <= 3
    assert max(sig.calls) > 1, sig.calls  # something was merged
    assert sum(sig.calls) == sum(1 + i % 2 for i in range(16))


def test_request_larger_than_max_batch_size_runs_alone(loaded):
    sig = Sig(loaded.signatures["serving_default"])
    batcher = RequestBatcher(Params(max_batch_size=4))
    try:
        out = batcher.run(sig, {"x": rows_for(1, 6)}, key="k")
    finally:
        batcher.close()
    np.testing.assert_array_equal(out["double"], rows_for(1, 6) * 2)
    assert sig.calls == [6]


def test_full_queue_is_unavailable(loaded):
    gate = threading.Event()
    sig = Sig(loaded.signatures["serving_default"], gate=gate)
    batcher = RequestBatcher(Params(max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1,
                                    max_enqueued_batches=1))
    results: dict[str, object] = {}

    def call(name, caller):
        try:
            results[name] = batcher.run(sig, {"x": rows_for(caller, 1)}, key="k")
        except Exception as exc:  # noqa: BLE001
            results[name] = exc

    try:
        first = threading.Thread(target=call, args=("first", 1))
        first.start()
        deadline = time.monotonic() + 10
        while not sig.calls and time.monotonic() < deadline:  # the only batch thread is busy with `first`
            time.sleep(0.005)
        second = threading.Thread(target=call, args=("second", 2))
        second.start()
        while batcher.pending() < 1 and time.monotonic() < deadline:  # `second` fills the one queue slot
            time.sleep(0.005)
        call("third", 3)  # needs a second batch in a queue that holds one: refused at once
        gate.set()
        first.join(10)
        second.join(10)
    finally:
        gate.set()
        batcher.close()
    error = results["third"]
    assert isinstance(error, Exception) and not isinstance(error, AssertionError), error
    assert isinstance(error, BackendError) and error.code is Code.UNAVAILABLE and error.http_status == 503, error
    assert QUEUE_FULL in str(error)
    np.testing.assert_array_equal(results["first"]["double"], rows_for(1, 1) * 2)
    np.testing.assert_array_equal(results["second"]["double"], rows_for(2, 1) * 2)


def test_failing_request_fails_alone(loaded):
    sig = Sig(loaded.signatures["serving_default"], fail_on_negative=True)
    batcher = RequestBatcher(Params(max_batch_size=16, batch_timeout_micros=50000))

    def call(i):
        x = rows_for(i, 1) * (-1 if i == 3 else 1)
        try:
            return batcher.run(sig, {"x": x}, key="k")
        except ValueError as exc:
            return exc

    try:
        got = concurrently(8, call)
    finally:
        batcher.close()
    for i, out in enumerate(got):
        if i == 3:
            assert isinstance(out, ValueError)
        else:
            np.testing.assert_array_equal(out["double"], rows_for(i, 1) * 2)


def test_output_without_batch_dimension_runs_each_request(loaded):
    sig = Sig(loaded.signatures["total"])
    batcher = RequestBatcher(Params(max_batch_size=16, batch_timeout_micros=50000))
    try:
        got = concurrently(6, lambda i: batcher.run(sig, {"x": rows_for(i, 2)}, key="t"))
    finally:
        batcher.close()
    for i, out in enumerate(got):
        assert float(out["total"]) == pytest.approx(float(rows_for(i, 2).sum()), rel=1e-6)
        assert int(out["rows"]) == 2


def test_different_item_shapes_are_not_merged(loaded):
    sig = Sig(loaded.signatures["echo"])
    runs: list[tuple[int, int]] = []
    batcher = RequestBatcher(Params(max_batch_size=16, batch_timeout_micros=50000),
                             observe=lambda requests, rows: runs.append((requests, rows)))
    sent = [np.full((1, 2 + i % 2), i, np.float32) for i in range(8)]
    try:
        got = concurrently(8, lambda i: batcher.run(sig, {"x": sent[i]}, key="e"))
    finally:
        batcher.close()
    for i, out in enumerate(got):
        np.testing.assert_array_equal(out["double"], sent[i] * 2)
    # widths 2 and 3 queue apart: merged runs happen, and never a failed concatenation that falls back
    assert len(sig.calls) == len(runs) < 8, (sig.calls, runs)


# ---------------------------------------------------------------- the REST hook
class FakeServable:
    model_name = "m"
    version = 1


def test_run_predict_merges_row_requests_only(loaded):
    from smserve_tensorflow.backend.tensors import RequestFormat

    sig = Sig(loaded.signatures["serving_default"])
    sig.name = "serving_default"
    runs: list[tuple[int, int]] = []
    batcher = RequestBatcher(Params(max_batch_size=8, batch_timeout_micros=50000),
                             observe=lambda requests, rows: runs.append((requests, rows)))
    try:
        rows = concurrently(6, lambda i: batcher.run_predict(FakeServable(), sig, {"x": rows_for(i, 1)},
                                                             RequestFormat.ROW))
        merged_runs = len(sig.calls)
        columns = concurrently(4, lambda i: batcher.run_predict(FakeServable(), sig, {"x": rows_for(i, 1)},
                                                                RequestFormat.COLUMNAR))
    finally:
        batcher.close()
    for i, out in enumerate(rows + columns):
        np.testing.assert_array_equal(out["double"], rows_for(i % 6 if i < 6 else i - 6, 1) * 2)
    assert merged_runs < 6
    assert len(sig.calls) - merged_runs == 4  # columnar requests never wait for company
    assert sum(requests for requests, _ in runs) == 6  # only the row requests went through the batcher


# ---------------------------------------------------------------- checklist 46, through the backend process
def test_tf_46_concurrent_single_row_requests_get_their_own_rows(tmp_path):
    """8 concurrent single-row predicts with batching on: each gets 0.5x + 3 of its own x. The batch timeout is
    long (3 s) and max_batch_size is 8, so a lone request waits the whole timeout (batching is really on) while
    the 8 concurrent ones fill one batch and come back at once (they were merged)."""
    import requests

    import tf_models
    from tests.harness import free_port

    tf_models.half_plus_three(tmp_path)
    config = tmp_path / "models.config"
    config.write_text('model_config_list {\n  config {\n    name: "half_plus_three"\n'
                      f'    base_path: "{tmp_path / "half_plus_three"}"\n    model_platform: "tensorflow"\n'
                      "    model_version_policy { specific { versions: 123 versions: 124 } }\n  }\n}\n")
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 3000000 }\n"
                        "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 100 }\n")
    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parent.parent),
                                                     os.environ.get("PYTHONPATH")) if p)}
    log = tmp_path / "backend.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "smserve_tensorflow.backend", f"--port={grpc_port}",
                                 f"--rest_api_port={rest_port}", f"--model_config_file={config}",
                                 "--enable_batching=true", f"--batching_parameters_file={batching}"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{rest_port}/v1/models/half_plus_three"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.25)

        start = time.monotonic()
        lone = requests.post(url + ":predict", json={"instances": [1.0]}, timeout=30)
        lone_seconds = time.monotonic() - start
        assert lone.status_code == 200 and lone.json() == {"predictions": [3.5]}

        values = [float(10 * i + 1) for i in range(8)]
        start = time.monotonic()
        answers = concurrently(8, lambda i: requests.post(url + ":predict", json={"instances": [values[i]]},
                                                          timeout=30))
        together_seconds = time.monotonic() - start
        for value, answer in zip(values, answers):
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"predictions": [0.5 * value + 3]}
        assert lone_seconds >= 2.9, f"a lone request came back in {lone_seconds:.2f} s: batching is not on"
        assert together_seconds < 2.5, f"8 concurrent requests took {together_seconds:.2f} s: not one full batch"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
