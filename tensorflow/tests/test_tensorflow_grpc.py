"""tensorflow.md §5 (last bullet): the backend's gRPC side, called with the official tensorflow-serving-api stubs.

Handler code gets `context.channel` and talks to the backend with PredictionServiceStub / ModelServiceStub, so the
built-in backend must answer those RPCs as `tensorflow_model_server` does. Every test runs against the built-in
backend process and, when the binary is on PATH, against the real server started the same way.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.families import require_framework
from tests.harness import free_port

tf = require_framework("tensorflow")

import grpc  # noqa: E402  (comes with tensorflow)
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,  # noqa: E402
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

import tf_models  # noqa: E402

TENSORFLOW_DIR = Path(__file__).resolve().parent.parent
MODELS = {"half_plus_three": (123, 124), "classifier": (1,), "strings": (1,), "arithmetic": (1,)}
BIG = 4 * 1024 * 1024  # past gRPC's default 4 MB limit


def model_config(root: Path) -> str:
    """The text-format ModelServerConfig smserve writes for the real binary (§3): specific versions."""
    entries = []
    for name, versions in MODELS.items():
        policy = " ".join(f"versions: {v}" for v in versions)
        entries.append(f'  config {{\n    name: "{name}"\n    base_path: "{root / name}"\n'
                       f'    model_platform: "tensorflow"\n'
                       f"    model_version_policy {{ specific {{ {policy} }} }}\n  }}")
    return "model_config_list {\n" + "\n".join(entries) + "\n}\n"


class Backend:
    """One backend process (built-in or real) serving MODELS on free loopback ports."""

    def __init__(self, kind: str, root: Path, extra: tuple[str, ...] = ()):
        self.kind = kind
        self.grpc_port, self.rest_port = free_port(), free_port()
        config = root / "models.config"
        config.write_text(model_config(root))
        flags = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
                 f"--model_config_file={config}", *extra]
        if kind == "builtin":
            command = [sys.executable, "-m", "smserve_tensorflow.backend", *flags]
        else:
            command = [shutil.which("tensorflow_model_server"), "--max_num_load_retries=0", *flags]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TENSORFLOW_DIR), env.get("PYTHONPATH")) if p)
        self.log = tempfile.NamedTemporaryFile(prefix=f"tf-backend-{kind}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.channel = grpc.insecure_channel(f"localhost:{self.grpc_port}",
                                             options=[("grpc.max_receive_message_length", -1),
                                                      ("grpc.max_send_message_length", -1)])
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = set(MODELS)
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.kind} backend exited {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.kind} backend not ready in {timeout:.0f} s:\n{self.output()}")
            for name in sorted(pending):
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = name
                try:
                    states = self.models.GetModelStatus(request, timeout=2).model_version_status
                except grpc.RpcError:
                    break
                if len(states) == len(MODELS[name]) and all(s.state == s.AVAILABLE for s in states):
                    pending.discard(name)
            else:
                continue
            time.sleep(0.25)

    def stop(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture(scope="module")
def model_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tf-grpc-models")
    for name in MODELS:
        tf_models.ALL_BUILDERS[name](root)
    return root


@pytest.fixture(scope="module", params=["builtin", "tfs"])
def backend(request, model_root):
    if request.param == "tfs" and shutil.which("tensorflow_model_server") is None:
        pytest.skip("tensorflow_model_server is not on PATH")
    server = Backend(request.param, model_root)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def predict_request(name: str = "half_plus_three", values=(1.0, 2.0, 5.0), **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "signature_name" in spec:
        request.model_spec.signature_name = spec["signature_name"]
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(values, dtype=np.float32)))
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    return caught.value


# ---------------------------------------------------------------- Predict
def test_grpc_predict_half_plus_three(backend):
    response = backend.predict.Predict(predict_request(), timeout=10)
    y = response.outputs["y"]
    assert tf.make_ndarray(y).tolist() == [3.5, 4.0, 5.5]
    assert list(y.float_val) == [3.5, 4.0, 5.5]  # typed repeated field, as clients read it directly
    assert y.dtype == tf.float32.as_datatype_enum and [d.size for d in y.tensor_shape.dim] == [3]
    assert response.model_spec.name == "half_plus_three"
    assert response.model_spec.version.value == 124  # the latest version answers
    assert response.model_spec.signature_name == "serving_default"


def test_grpc_predict_named_version_and_signature(backend):
    response = backend.predict.Predict(predict_request(version=123, signature_name="serving_default"), timeout=10)
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs["y"].float_val) == [3.5, 4.0, 5.5]


def test_grpc_predict_several_inputs_and_output_filter(backend):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "arithmetic"
    request.inputs["a"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 1.0], np.float32)))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto(np.array([10.0, 3.0], np.float32)))
    full = backend.predict.Predict(request, timeout=10)
    assert set(full.outputs) == {"sum", "product", "quotient"}
    request.output_filter.append("quotient")
    filtered = backend.predict.Predict(request, timeout=10)
    assert set(filtered.outputs) == {"quotient"}
    assert list(filtered.outputs["quotient"].float_val) == pytest.approx([0.1, 1 / 3], rel=1e-6)


def test_grpc_predict_strings(backend):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "strings"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([b"ab", b"c"]))
    response = backend.predict.Predict(request, timeout=10)
    assert list(response.outputs["upper"].string_val) == [b"AB", b"C"]
    assert list(response.outputs["img_bytes"].string_val) == [b"ab\xff\x00", b"c\xff\x00"]
    assert list(response.outputs["length"].int_val) == [2, 1]


def test_grpc_predict_past_default_message_limit(backend):
    values = np.arange(BIG // 4 + 10, dtype=np.float32)
    response = backend.predict.Predict(predict_request(values=values), timeout=60)
    out = tf.make_ndarray(response.outputs["y"])
    assert out.shape == values.shape and out[-1] == pytest.approx(0.5 * values[-1] + 3)


# ---------------------------------------------------------------- errors
def test_grpc_unknown_model_is_not_found(backend):
    error = rpc_error(backend.predict.Predict, predict_request("no_such_model"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Servable not found for request: Latest(no_such_model)"
    error = rpc_error(backend.predict.Predict, predict_request(version=7))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Servable not found for request: Specific(half_plus_three, 7)"


def test_grpc_predict_errors(backend):
    error = rpc_error(backend.predict.Predict, predict_request(signature_name="nope"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == 'Serving signature key "nope" not found.'

    wrong_type = predict_request()
    wrong_type.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1, 2], np.int32)))
    error = rpc_error(backend.predict.Predict, wrong_type)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Expects arg[0] to be float but int32 is provided"

    extra = predict_request()
    extra.inputs["z"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    error = rpc_error(backend.predict.Predict, extra)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("input size does not match signature: 2!=1 len({x,z}) != len({x}).")

    unknown_output = predict_request()
    unknown_output.output_filter.append("nope")
    error = rpc_error(backend.predict.Predict, unknown_output)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "output tensor alias not found in signature: nope Outputs expected to be in the set {y}."

    error = rpc_error(backend.predict.Predict, predict_pb2.PredictRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Missing ModelSpec"

    labelled = predict_request()
    labelled.model_spec.version_label = "stable"
    error = rpc_error(backend.predict.Predict, labelled)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Unrecognized servable version label: stable"


# ---------------------------------------------------------------- Classify and Regress
def test_grpc_regress(backend):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_three"
    request.model_spec.signature_name = "tensorflow/serving/regress"
    for value in (1.0, 2.0):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(value)
    response = backend.predict.Regress(request, timeout=10)
    assert [r.value for r in response.result.regressions] == [3.5, 4.0]
    assert response.model_spec.name == "half_plus_three"
    assert response.model_spec.version.value == 124
    assert response.model_spec.signature_name == "tensorflow/serving/regress"


def test_grpc_regress_with_context_and_errors(backend):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_three"
    request.model_spec.signature_name = "tensorflow/serving/regress"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.append(1.0)
    with_context.examples.add()  # takes x from the context
    with_context.examples.add().features.feature["x"].float_list.value.append(5.0)  # overrides it
    response = backend.predict.Regress(request, timeout=10)
    assert [r.value for r in response.result.regressions] == [3.5, 5.5]

    empty = regression_pb2.RegressionRequest()
    empty.model_spec.name = "half_plus_three"
    empty.model_spec.signature_name = "tensorflow/serving/regress"
    error = rpc_error(backend.predict.Regress, empty)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")

    default = regression_pb2.RegressionRequest()
    default.model_spec.name = "half_plus_three"
    default.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
    error = rpc_error(backend.predict.Regress, default)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == ("Expected regression signature method_name to be tensorflow/serving/regress. "
                               "Was: tensorflow/serving/predict")


def test_grpc_classify(backend):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "classifier"
    for value in (0.0, 100.0):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(value)
    response = backend.predict.Classify(request, timeout=10)
    rows = [[(c.label, round(c.score, 4)) for c in item.classes] for item in response.result.classifications]
    assert rows == [[("negative", 0.5), ("positive", 0.5)], [("negative", 0.0), ("positive", 1.0)]]
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value == 1


# ---------------------------------------------------------------- metadata and status
def test_grpc_get_model_metadata(backend):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_three"
    request.metadata_field.append("signature_def")
    response = backend.predict.GetModelMetadata(request, timeout=10)
    assert response.model_spec.name == "half_plus_three"
    assert response.model_spec.version.value == 124
    assert response.model_spec.signature_name == ""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert {"serving_default", "tensorflow/serving/regress"} <= set(signature_map.signature_def)
    serving = signature_map.signature_def["serving_default"]
    assert serving.method_name == "tensorflow/serving/predict"
    assert serving.inputs["x"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in serving.inputs["x"].tensor_shape.dim] == [-1]
    assert set(serving.outputs) == {"y"}

    request.metadata_field.append("other")
    error = rpc_error(backend.predict.GetModelMetadata, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "Metadata field other is not supported")


def test_grpc_get_model_status(backend):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_three"
    response = backend.models.GetModelStatus(request, timeout=10)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (124, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (123, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    assert all(s.status.error_code == 0 and s.status.error_message == "" for s in response.model_version_status)

    request.model_spec.version.value = 123
    response = backend.models.GetModelStatus(request, timeout=10)
    assert [s.version for s in response.model_version_status] == [123]

    request.model_spec.name = "no_such_model"
    request.model_spec.ClearField("version")
    error = rpc_error(backend.models.GetModelStatus, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND,
                                               "Could not find any versions of model no_such_model")


# ---------------------------------------------------------------- transport
def test_grpc_listens_on_loopback_only(backend):
    """The gRPC port is bound to 127.0.0.1 (and ::1), never to a wildcard or an external address."""
    if backend.kind != "builtin":
        pytest.skip("the real server binds 0.0.0.0; smserve keeps it unreachable from outside otherwise")
    local = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if int(port, 16) == backend.grpc_port and fields[3] == "0A":  # LISTEN
                local.add(address)
    assert local, "no listening socket found for the gRPC port"
    loopback = {"0100007F", "00000000000000000000000001000000",  # 127.0.0.1, ::1
                "0000000000000000FFFF00000100007F"}  # ::ffff:127.0.0.1 (gRPC's dual-stack socket for 127.0.0.1)
    assert local <= loopback, local


def test_grpc_predict_latency(backend, record_property):
    """p50 of a Predict round trip on half_plus_three (reported, with a loose bound against regressions)."""
    request = predict_request()
    for _ in range(20):
        backend.predict.Predict(request, timeout=10)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        backend.predict.Predict(request, timeout=10)
        times.append(time.perf_counter() - start)
    p50 = statistics.median(times) * 1000
    record_property(f"grpc_predict_p50_ms_{backend.kind}", round(p50, 3))
    print(f"\n{backend.kind} gRPC Predict half_plus_three p50 {p50:.3f} ms")
    assert p50 < 50


# ---------------------------------------------------------------- batching (in process)
def test_grpc_predict_goes_through_the_batcher(model_root):
    """With a batcher (--enable_batching), concurrent Predicts share signature runs and each gets its own rows."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from smserve_tensorflow.backend.batching import RequestBatcher
    from smserve_tensorflow.backend.grpc_service import start_grpc
    from smserve_tensorflow.backend.servables import ModelConfig, ModelStore

    store = ModelStore([ModelConfig("half_plus_three", str(model_root / "half_plus_three"), versions=(124,))])
    store.load_all()
    runs: list[tuple[int, int]] = []
    batcher = RequestBatcher(SimpleNamespace(max_batch_size=16, batch_timeout_micros=100000, num_batch_threads=2,
                                             max_enqueued_batches=100),
                             observe=lambda requests, rows: runs.append((requests, rows)))
    server = start_grpc(store, 0, batcher=batcher)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.smserve_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    barrier = threading.Barrier(12)

    def call(i: int):
        values = [10.0 * i + r for r in range(1 + i % 3)]
        barrier.wait()
        return values, stub.Predict(predict_request(values=values), timeout=30)

    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(call, range(12)))
    finally:
        channel.close()
        server.stop(0)
        batcher.close()
    for values, response in results:
        assert list(response.outputs["y"].float_val) == [0.5 * v + 3 for v in values]
        assert response.model_spec.version.value == 124
    assert sum(requests for requests, _ in runs) == 12
    assert len(runs) < 12, runs
