"""pytorch.md §11 checklist: the PyTorch family defaults, against real TorchScript, eager, exported models."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from tests.families import require_framework
from tests.harness import FAMILY, TARGET
from tests.models import from_npy, make_dir, npy, write_code

torch = require_framework("torch")

from pytorch_models import MLP, mlp, save_torchscript, torchscript_mlp  # noqa: E402  (needs torch)

pytestmark = pytest.mark.skipif(FAMILY != "pytorch", reason="PyTorch family suite: set SMSERVE_TEST_FAMILY=pytorch")

NPY = "application/x-npy"
NPZ = "application/x-npz"
CUDA = torch.cuda.is_available()
host_only = pytest.mark.skipif(TARGET != "host", reason="reads files the server writes on the host")


# ---------------------------------------------------------------- models built here
class EchoXY(torch.nn.Module):
    """Returns what reached it: x alone, or x - y when called with y (so keyword order is visible)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if y is not None:
            return x - y
        return x


class EchoDtype(torch.nn.Module):
    """Echo whose floating dtype is fixed by a parameter (float16, bfloat16 ...)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Pair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor):
        return x + 1, x * 2


MLP_SOURCE = '''
import torch


class MLP(torch.nn.Module):
    def __init__(self, inputs: int = 4, hidden: int = 8, outputs: int = 2):
        super().__init__()
        self.fc1 = torch.nn.Linear(inputs, hidden)
        self.fc2 = torch.nn.Linear(hidden, outputs)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
'''


def startup_failure(serve, model_dir, env=None) -> str:
    server = serve(model_dir, env or {}, ready=False)
    code = server.wait_exit(90)
    assert code != 0, server.logs()
    return server.logs()


# ---------------------------------------------------------------- shared servers
@pytest.fixture(scope="module")
def mlp_server(module_servers, tmp_path_factory):
    """model.pt (TorchScript MLP, seed 0) next to other.pth (TorchScript MLP, seed 1)."""
    model_dir = make_dir(tmp_path_factory.mktemp("pt-mlp"))
    module = torchscript_mlp(model_dir, "model.pt", seed=0)
    other = torchscript_mlp(model_dir, "other.pth", seed=1)
    server = module_servers(model_dir)
    server.module, server.other = module, other
    return server


@pytest.fixture(scope="module")
def echo_server(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("pt-echo"))
    save_torchscript(EchoXY(), model_dir / "model.pt")
    return module_servers(model_dir)


def echo_dtype_server(module_servers, tmp_path_factory, dtype):
    model_dir = make_dir(tmp_path_factory.mktemp(f"pt-echo-{str(dtype).split('.')[-1]}"))
    save_torchscript(EchoDtype().to(dtype), model_dir / "model.pt")
    return module_servers(model_dir)


PROBE_NET = '''
import torch


class Probe(torch.nn.Module):
    """Linear + Dropout(0.9) that also reports its mode and where it ran."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.drop = torch.nn.Dropout(0.9)

    def forward(self, x):
        return {
            "y": self.drop(self.fc(x)),
            "inference_mode": torch.tensor(torch.is_inference_mode_enabled()),
            "grad_enabled": torch.tensor(torch.is_grad_enabled()),
            "training": torch.tensor(self.training),
            "input_cuda": torch.tensor(x.is_cuda),
            "param_cuda": torch.tensor(self.fc.weight.is_cuda),
        }
'''

PROBE_INFERENCE = '''
import os

import torch

from net import Probe


def model_fn(model_dir):
    model = Probe()
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    return model.train()  # on the CPU, in train mode: smserve places it and calls eval() once
'''


@pytest.fixture(scope="module")
def probe_server(module_servers, tmp_path_factory):
    """User model_fn returning a CPU, train-mode eager module; default input/predict/output."""
    model_dir = make_dir(tmp_path_factory.mktemp("pt-probe"))
    torch.manual_seed(3)
    linear = torch.nn.Linear(4, 4)
    torch.save({"fc.weight": linear.weight.detach(), "fc.bias": linear.bias.detach()}, model_dir / "model.pth")
    write_code(model_dir, PROBE_NET, "net.py")
    write_code(model_dir, PROBE_INFERENCE)
    server = module_servers(model_dir)
    server.linear = linear.eval()
    return server


# ---------------------------------------------------------------- §2.1 which file
def test_pytorch_1_torchscript_model_pt_matches_local(mlp_server):
    """pytorch §11 item 1: a TorchScript model.pt alone serves JSON [[0,1,2,3]] equal to local jit.load(...)(x)."""
    result = mlp_server.invoke_json([[0, 1, 2, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        local = torch.jit.load(str(mlp_server.model_dir / "model.pt"))
    expected = local(torch.tensor([[0.0, 1, 2, 3]]))
    assert torch.allclose(torch.tensor(result), expected, atol=1e-6)


def test_pytorch_2_single_resnet_pth_loads(serve, tmp_path):
    """pytorch §11 item 2: a single TorchScript resnet.pth (no model.pt) loads with the default model_fn."""
    model_dir = make_dir(tmp_path)
    module = torchscript_mlp(model_dir, "resnet.pth", seed=4)
    server = serve(model_dir)
    result = server.invoke_json([[1, 2, 3, 4]])
    expected = module(torch.tensor([[1.0, 2, 3, 4]]))
    assert torch.allclose(torch.tensor(result), expected, atol=1e-6)


def test_pytorch_3_model_pt_wins_over_other_pth(mlp_server):
    """pytorch §11 item 3: model.pt wins when model.pt and other.pth both exist."""
    x = torch.tensor([[0.5, -1.0, 2.0, 3.0]])
    result = torch.tensor(mlp_server.invoke_json(x.tolist()))
    assert torch.allclose(result, mlp_server.module(x), atol=1e-6)
    assert not torch.allclose(result, mlp_server.other(x), atol=1e-3)


def test_pytorch_4_two_pt_files_startup_error(serve, tmp_path):
    """pytorch §11 item 4: a.pt + b.pt → startup error with the AWS text and both names."""
    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir, "a.pt")
    torchscript_mlp(model_dir, "b.pt")
    logs = startup_failure(serve, model_dir)
    assert "Exactly one .pth or .pt file is required" in logs
    assert "a.pt" in logs and "b.pt" in logs


def export_mlp(path: Path, seed: int = 5) -> MLP:
    module = mlp(seed)
    program = torch.export.export(module, (torch.zeros(1, 4),))
    torch.export.save(program, str(path))
    path.chmod(0o644)
    return module


def test_pytorch_5_lone_pt2_export_serves(serve, tmp_path):
    """pytorch §11 item 5: a lone model.pt2 (torch.export) loads and serves."""
    model_dir = make_dir(tmp_path)
    module = export_mlp(model_dir / "model.pt2")
    server = serve(model_dir)
    result = server.invoke_json([[0, 1, 2, 3]])
    expected = module(torch.tensor([[0.0, 1, 2, 3]]))
    assert torch.allclose(torch.tensor(result), expected, atol=1e-6)


def test_pytorch_6_pickled_eager_module_startup_error(serve, tmp_path):
    """pytorch §11 item 6: a pickled eager module as model.pt without model_fn → startup error saying it is not
    TorchScript and that model_fn is needed."""
    model_dir = make_dir(tmp_path)
    torch.save(mlp(), model_dir / "model.pt")
    (model_dir / "model.pt").chmod(0o644)
    logs = startup_failure(serve, model_dir)
    assert "not TorchScript" in logs
    assert "model_fn" in logs
    assert "pickled nn.Module" in logs


# ---------------------------------------------------------------- §2.2 how it is loaded
RECORDING_INFERENCE = '''
import json
import os

import torch
import torch.serialization

RECORD = os.environ["SMSERVE_TEST_RECORD"]


def pre_model_fn(model_dir):
    original = torch.serialization.load

    def recording_load(*args, **kwargs):
        with open(RECORD, "a") as out:
            out.write(json.dumps({"pid": os.getpid(), "weights_only": kwargs.get("weights_only", "unset"),
                                  "file": str(args[0]) if args else str(kwargs.get("f"))}) + "\\n")
        return original(*args, **kwargs)

    torch.load = recording_load
    torch.serialization.load = recording_load
    with open(RECORD, "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "patched": True}) + "\\n")
'''

PICKLED_CLASS = '''
import os

import torch

if os.environ.get("SMSERVE_TEST_MARKER"):
    open(os.environ["SMSERVE_TEST_MARKER"], "a").write("imported by an unpickler\\n")


class Pickled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)
'''


@host_only
@pytest.mark.parametrize("artifact", ["torchscript", "export", "pickled"])
def test_pytorch_7_default_model_fn_never_torch_load_unsafe(serve, tmp_path, artifact):
    """pytorch §11 item 7: the default model_fn never calls torch.load with weights_only=False (torch.load
    patched by a user pre_model_fn in the worker). For a pickled module, nothing unpickles it either (the
    module its class lives in is never imported)."""
    model_dir = make_dir(tmp_path)
    record = tmp_path / "torch_load_calls.jsonl"
    marker = tmp_path / "unpickled"
    write_code(model_dir, RECORDING_INFERENCE)
    env = {"SMSERVE_TEST_RECORD": str(record), "SMSERVE_TEST_MARKER": str(marker)}
    if artifact == "torchscript":
        torchscript_mlp(model_dir, "model.pt")
    elif artifact == "export":
        export_mlp(model_dir / "model.pt2")
    else:
        source = write_code(tmp_path, PICKLED_CLASS, "pickled_net.py", where="pickle_src")
        write_code(model_dir, PICKLED_CLASS, "pickled_net.py")  # importable from code/ in the worker
        sys.path.insert(0, str(source.parent))
        try:
            import pickled_net  # noqa: PLC0415

            torch.save(pickled_net.Pickled(), model_dir / "model.pt")
        finally:
            sys.path.remove(str(source.parent))
            sys.modules.pop("pickled_net", None)
    if artifact == "pickled":
        logs = startup_failure(serve, model_dir, env)
        assert "not TorchScript" in logs
        assert not marker.exists(), "the pickled model was unpickled (its class module was imported)"
    else:
        server = serve(model_dir, env)
        assert server.post(data="[[0,1,2,3]]").status_code == 200
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert any(line.get("patched") for line in lines), "pre_model_fn did not run"
    unsafe = [line for line in lines if line.get("weights_only") is False]
    assert unsafe == [], unsafe


WARNINGS_AS_ERRORS = '''
import warnings


def pre_model_fn(model_dir):
    warnings.simplefilter("error", DeprecationWarning)
'''


def test_pytorch_8_no_jit_deprecation_warning_escapes(serve, tmp_path):
    """pytorch §11 item 8: no DeprecationWarning from torch.jit.load escapes the default load: with
    DeprecationWarning turned into errors by the user's pre_model_fn, the default model_fn still loads."""
    model_dir = make_dir(tmp_path)
    module = torchscript_mlp(model_dir)
    with pytest.warns(DeprecationWarning):  # the premise: torch 2.13 jit.load warns
        warnings.simplefilter("always")
        torch.jit.load(str(model_dir / "model.pt"))
    write_code(model_dir, WARNINGS_AS_ERRORS)
    server = serve(model_dir)
    result = server.invoke_json([[0, 1, 2, 3]])
    assert torch.allclose(torch.tensor(result), module(torch.tensor([[0.0, 1, 2, 3]])), atol=1e-6)
    assert "DeprecationWarning" not in server.logs()


STATE_DICT_INFERENCE = '''
import os

import torch

from net import MLP
from scaler import scale


def model_fn(model_dir):
    model = MLP()
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    return model


def output_fn(prediction, accept):
    import json
    return json.dumps(scale(prediction).tolist()), "application/json"
'''


def test_pytorch_9_state_dict_with_user_model_fn(serve, tmp_path):
    """pytorch §11 item 9 (archive case C): model.pth state_dict, code/inference.py model_fn importing net from
    code/ and a helper package from code/lib, loading with weights_only=True, serves correctly."""
    model_dir = make_dir(tmp_path)
    module = mlp(seed=6)
    torch.save(module.state_dict(), model_dir / "model.pth")
    (model_dir / "model.pth").chmod(0o644)
    write_code(model_dir, MLP_SOURCE, "net.py")
    write_code(model_dir, "def scale(t):\n    return t * 2\n", "__init__.py", where="code/lib/scaler")
    write_code(model_dir, STATE_DICT_INFERENCE)
    server = serve(model_dir)
    result = server.invoke_json([[0, 1, 2, 3]])
    expected = module(torch.tensor([[0.0, 1, 2, 3]])) * 2
    assert torch.allclose(torch.tensor(result), expected, atol=1e-6)


# ---------------------------------------------------------------- §3 default input_fn (Echo reports what arrived)
def echoed(server, body, content_type) -> np.ndarray:
    response = server.post(data=body, content_type=content_type, accept=NPY)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith(NPY)
    return from_npy(response.content)


def test_pytorch_10_json_list_is_float32_1d(echo_server):
    """pytorch §11 item 10: JSON [1,2,3] reaches the model as float32 shape (3,)."""
    got = echoed(echo_server, "[1,2,3]", "application/json")
    assert got.dtype == np.float32 and got.shape == (3,)
    assert got.tolist() == [1.0, 2.0, 3.0]


def test_pytorch_11_csv_shapes(echo_server):
    """pytorch §11 item 11: CSV 1,2,3 reaches the model as float32 (3,); 1,2\\n3,4 as (2, 2)."""
    got = echoed(echo_server, "1,2,3", "text/csv")
    assert got.dtype == np.float32 and got.shape == (3,)
    assert got.tolist() == [1.0, 2.0, 3.0]
    got = echoed(echo_server, "1,2\n3,4", "text/csv")
    assert got.dtype == np.float32 and got.shape == (2, 2)
    assert got.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_pytorch_12_csv_mixed_int_float_row(echo_server):
    """pytorch §11 item 12: CSV 1,2.5,3 reaches the model as float32 [1.0, 2.5, 3.0]."""
    got = echoed(echo_server, "1,2.5,3", "text/csv")
    assert got.dtype == np.float32
    assert got.tolist() == [1.0, 2.5, 3.0]


def test_pytorch_13_json_scalar_is_0d_float32(echo_server):
    """pytorch §11 item 13: JSON 5 reaches the model as a 0-d float32 tensor equal to 5.0."""
    got = echoed(echo_server, "5", "application/json")
    assert got.shape == () and got.dtype == np.float32 and float(got) == 5.0
    assert echo_server.invoke_json(5) == 5.0


def test_pytorch_14_json_object_is_400(echo_server):
    """pytorch §11 item 14: JSON {"a": 1} with the default input_fn → 400."""
    response = echo_server.post(data='{"a": 1}')
    assert response.status_code == 400, response.text
    assert "numeric" in response.json()["message"]


def test_pytorch_15_npy_int64_kept(echo_server):
    """pytorch §11 item 15: NPY int64 input keeps int64."""
    got = echoed(echo_server, npy(np.array([1, 2, 3], dtype=np.int64)), NPY)
    assert got.dtype == np.int64 and got.tolist() == [1, 2, 3]


def test_pytorch_16_npy_float64_cast_to_float32(echo_server):
    """pytorch §11 item 16: NPY float64 into a float32 model is cast to float32 and succeeds."""
    array = np.array([[0.1, 2.5], [3.0, -4.0]], dtype=np.float64)
    got = echoed(echo_server, npy(array), NPY)
    assert got.dtype == np.float32
    assert np.array_equal(got, array.astype(np.float32))


def test_pytorch_17_json_into_float16_model(module_servers, tmp_path_factory):
    """pytorch §11 item 17: JSON input into a float16 model is cast to float16."""
    server = echo_dtype_server(module_servers, tmp_path_factory, torch.float16)
    got = echoed(server, "[0.1, 2.0]", "application/json")
    assert got.dtype == np.float16
    assert got.tolist() == np.array([0.1, 2.0], dtype=np.float16).tolist()
    assert server.invoke_json([0.1]) == [float(np.float16(0.1))]  # 0.0999755859375, not 0.1 nor float32(0.1)


def test_pytorch_18_sparse_npz_dense(echo_server):
    """pytorch §11 item 18: a scipy sparse NPZ reaches the model as a dense tensor."""
    import scipy.sparse

    dense = np.array([[0, 1.5, 0], [2, 0, 0]], dtype=np.float32)
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(dense))
    got = echoed(echo_server, buffer.getvalue(), NPZ)
    assert got.shape == (2, 3) and got.dtype == np.float32
    assert np.array_equal(got, dense)


def test_pytorch_19_npz_members_are_keyword_arguments(echo_server):
    """pytorch §11 item 19: a numpy.savez NPZ with members x, y calls model(x=..., y=...) (stored y first, so a
    positional call would give y - x)."""
    x = np.array([10.0, 20.0], dtype=np.float32)
    y = np.array([1.0, 2.0], dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, y=y, x=x)
    got = echoed(echo_server, buffer.getvalue(), NPZ)
    assert got.tolist() == (x - y).tolist()


def test_pytorch_20_unsupported_content_type_415(echo_server):
    """pytorch §11 item 20: Content-Type image/png with the default input_fn → 415."""
    response = echo_server.post(data=b"\x89PNG\r\n\x1a\n", content_type="image/png")
    assert response.status_code == 415, response.text
    assert response.json()["code"] == 415


# ---------------------------------------------------------------- §2.3 / §4 predict
def test_pytorch_21_inference_mode_default_grad_in_user_predict(probe_server, serve, tmp_path):
    """pytorch §11 item 21: the default predict_fn runs under inference mode; a user predict_fn sees
    torch.is_grad_enabled() True."""
    result = probe_server.invoke_json([[0, 1, 2, 3]])
    assert result["inference_mode"] is True and result["grad_enabled"] is False

    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    write_code(model_dir, '''
        import torch


        def predict_fn(data, model):
            y = model(data)
            return {"grad_enabled": torch.is_grad_enabled(),
                    "inference_mode": torch.is_inference_mode_enabled(),
                    "requires_grad": y.requires_grad}
    ''')
    result = serve(model_dir).invoke_json([[0, 1, 2, 3]])
    assert result == {"grad_enabled": True, "inference_mode": False, "requires_grad": True}


def test_pytorch_22_train_mode_module_evaluated_once(probe_server):
    """pytorch §11 item 22: a user model_fn returning a train-mode module (Dropout 0.9) gives the output of its
    eval-mode twin, on every request."""
    x = [[0.5, 1.0, -2.0, 3.0]]
    expected = probe_server.linear(torch.tensor(x))
    for _ in range(5):
        result = probe_server.invoke_json(x)
        assert result["training"] is False
        assert torch.allclose(torch.tensor(result["y"]), expected, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU")
def test_pytorch_23_cpu_module_placed_on_worker_gpu(probe_server):
    """pytorch §11 item 23: a user model_fn returning a CPU module on a GPU host runs on the worker GPU with the
    default predict_fn (parameters and inputs on CUDA)."""
    result = probe_server.invoke_json([[0, 1, 2, 3]])
    assert result["param_cuda"] is True
    assert result["input_cuda"] is True
    expected = probe_server.linear(torch.tensor([[0.0, 1, 2, 3]]))
    assert torch.allclose(torch.tensor(result["y"]), expected, atol=1e-4)


# ---------------------------------------------------------------- §5 default output_fn
def test_pytorch_24_json_equals_aws_output(mlp_server):
    """pytorch §11 item 24: Accept application/json → JSON equal (parsed) to the AWS default output:
    json.dumps(prediction.cpu().numpy().tolist())."""
    x = [[0, 1, 2, 3], [4, 5, 6, 7]]
    response = mlp_server.post(data=json.dumps(x), accept="application/json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    with torch.no_grad():
        aws = json.loads(json.dumps(mlp_server.module(torch.FloatTensor(x)).cpu().numpy().tolist()))
    assert response.json() == aws  # same float32 computation, printed as float64 values like AWS


def test_pytorch_25_csv_1d_one_value_per_line(mlp_server):
    """pytorch §11 item 25: Accept text/csv on a 1-D output → one value per line."""
    x = torch.tensor([0.0, 1, 2, 3])
    response = mlp_server.post(data=json.dumps(x.tolist()), accept="text/csv")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == "text/csv"
    lines = response.text.strip().splitlines()
    expected = mlp_server.module(x).tolist()
    assert len(lines) == 2 and all("," not in line for line in lines)
    assert np.allclose([float(v) for v in lines], expected, atol=1e-6)


def test_pytorch_26_npy_keeps_float32(mlp_server):
    """pytorch §11 item 26: Accept application/x-npy on a float32 output → NPY float32 equal to the JSON values."""
    body = json.dumps([[0, 1, 2, 3], [1, 1, 1, 1]])
    response = mlp_server.post(data=body, accept=NPY)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == NPY
    array = from_npy(response.content)
    assert array.dtype == np.float32
    as_json = mlp_server.post(data=body, accept="application/json").json()
    assert np.array_equal(array, np.array(as_json, dtype=np.float32))
    assert array.astype(np.float64).tolist() == as_json


def test_pytorch_27_bfloat16_output_json_and_npy(module_servers, tmp_path_factory):
    """pytorch §11 item 27: a bfloat16 output encodes as JSON and as NPY (float32)."""
    server = echo_dtype_server(module_servers, tmp_path_factory, torch.bfloat16)
    values = [[1.5, -2.25], [3.0, 0.125]]  # exact in bfloat16
    response = server.post(data=json.dumps(values), accept="application/json")
    assert response.status_code == 200, response.text
    assert response.json() == values
    response = server.post(data=json.dumps(values), accept=NPY)
    assert response.status_code == 200, response.text
    array = from_npy(response.content)
    assert array.dtype == np.float32 and array.tolist() == values


def test_pytorch_28_tuple_output_json(serve, tmp_path):
    """pytorch §11 item 28: a tuple of two tensors encodes as a JSON list of two lists."""
    model_dir = make_dir(tmp_path)
    save_torchscript(Pair(), model_dir / "model.pt")
    result = serve(model_dir).invoke_json([1, 2, 3], accept="application/json")
    assert result == [[2.0, 3.0, 4.0], [2.0, 4.0, 6.0]]


def test_pytorch_29_jsonlines_three_lines(mlp_server):
    """pytorch §11 item 29: Accept application/jsonlines on a (3, 2) output → three lines."""
    x = [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]
    response = mlp_server.post(data=json.dumps(x), accept="application/jsonlines")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == "application/jsonlines"
    lines = response.text.strip().split("\n")
    assert len(lines) == 3
    rows = [json.loads(line) for line in lines]
    assert rows == mlp_server.post(data=json.dumps(x)).json()


def test_pytorch_30_accept_xml_406(mlp_server):
    """pytorch §11 item 30: Accept application/xml → 406."""
    response = mlp_server.post(data="[[0,1,2,3]]", accept="application/xml")
    assert response.status_code == 406, response.text
    assert response.json()["code"] == 406


def test_pytorch_31_content_type_is_chosen_type(mlp_server):
    """pytorch §11 item 31: Content-Type is the chosen type when Accept is `application/json, text/csv`."""
    response = mlp_server.post(data="[[0,1,2,3]]", accept="application/json, text/csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert len(response.json()[0]) == 2


# ---------------------------------------------------------------- §2.2 / §8 GPUs
def gpu_memory_used() -> dict[int, int]:
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    return {int(i): int(m) for i, m in (line.split(",") for line in out.strip().splitlines())}


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two NVIDIA GPUs")
def test_pytorch_32_two_workers_on_two_gpus(serve, tmp_path):
    """pytorch §11 item 32: two workers on a 2-GPU host load on different GPUs (per-device memory grows on
    GPU 0 and GPU 1)."""
    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    before = gpu_memory_used()
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": 2})
    for _ in range(8):
        assert server.post(data="[[0,1,2,3]]").status_code == 200
    after = gpu_memory_used()
    grown = [i for i in (0, 1) if after[i] - before[i] >= 100]
    assert grown == [0, 1], (before, after)


CONTEXT_PROBE = '''
import json
import os
import torch


def transform_fn(model, body, content_type, accept, context):
    props = context.system_properties
    return json.dumps({"pid": os.getpid(), "gpu_id": props.get("gpu_id"),
                       "physical_gpu_id": props.get("physical_gpu_id"),
                       "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                       "device_count": torch.cuda.device_count(),
                       "model_device": str(next(model.parameters()).device)})
'''


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU")
def test_pytorch_33_context_gpu_id_zero_physical_pinned(serve, tmp_path):
    """pytorch §11 item 33: context.system_properties["gpu_id"] is 0 and physical_gpu_id is the pinned GPU."""
    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    write_code(model_dir, CONTEXT_PROBE)
    count = torch.cuda.device_count()
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": min(count, 2)})
    seen = {}
    for _ in range(20):
        response = server.post(data="[]")
        assert response.status_code == 200, response.text
        props = response.json()
        seen[props["pid"]] = props
    for props in seen.values():
        assert props["gpu_id"] == 0, props
        assert props["model_device"] == "cuda:0", props
        physical = props["physical_gpu_id"]
        assert isinstance(physical, int) and 0 <= physical < count, props
        if props["visible"]:
            assert int(props["visible"].split(",")[0]) == physical, props
    if count >= 2 and len(seen) == 2:
        assert {p["physical_gpu_id"] for p in seen.values()} == {0, 1}


# ---------------------------------------------------------------- §7 environment variables
def wait_workers(server, count: int, timeout: float = 60) -> list[int]:
    end = time.monotonic() + timeout
    pids: list[int] = []
    while time.monotonic() < end:
        pids = server.worker_pids()
        if len(pids) >= count:
            time.sleep(1.0)  # no further worker appears
            return server.worker_pids()
        time.sleep(0.2)
    return pids


PID_PROBE = '''
import json
import os


def transform_fn(model, body, content_type, accept):
    return json.dumps({"pid": os.getpid()})
'''


@host_only
def test_pytorch_34_ts_min_workers(serve, tmp_path):
    """pytorch §11 item 34: SAGEMAKER_TS_MIN_WORKERS=3 without SAGEMAKER_MODEL_SERVER_WORKERS starts 3 workers."""
    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    write_code(model_dir, PID_PROBE)
    env = {"SAGEMAKER_TS_MIN_WORKERS": 3}
    server = serve(model_dir, env)
    assert len(wait_workers(server, 3)) == 3
    assert "workers           3" in server.logs()


@host_only
def test_pytorch_35_workers_with_ts_batch_size(serve, tmp_path):
    """pytorch §11 item 35: SAGEMAKER_MODEL_SERVER_WORKERS=2 plus SAGEMAKER_TS_BATCH_SIZE=4 starts 2 workers."""
    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": 2, "SAGEMAKER_TS_BATCH_SIZE": 4})
    assert len(wait_workers(server, 2)) == 2
    assert "workers           2" in server.logs()
    for _ in range(3):
        assert server.post(data="[[0,1,2,3]]").status_code == 200


def test_pytorch_36_ts_response_timeout_504(serve, tmp_path):
    """pytorch §11 item 36: SAGEMAKER_TS_RESPONSE_TIMEOUT=2 gives 504 for a 3-s handler."""
    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    write_code(model_dir, '''
        import time


        def predict_fn(data, model):
            time.sleep(3)
            return model(data)
    ''')
    server = serve(model_dir, {"SAGEMAKER_TS_RESPONSE_TIMEOUT": 2})
    started = time.monotonic()
    response = server.post(data="[[0,1,2,3]]")
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert elapsed < 2.9, elapsed


def test_pytorch_37_ts_max_request_size_alone(serve, tmp_path):
    """pytorch §11 item 37: TS_MAX_REQUEST_SIZE=20000000 alone accepts a 15 MB body."""
    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    write_code(model_dir, '''
        def predict_fn(data, model):
            return {"shape": list(data.shape), "dtype": str(data.dtype)}
    ''')
    server = serve(model_dir, {"TS_MAX_REQUEST_SIZE": 20000000})
    array = np.zeros(15_000_000 // 4, dtype=np.float32)
    body = npy(array)
    assert 15_000_000 <= len(body) < 20_000_000
    response = server.post(data=body, content_type=NPY, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"shape": [array.size], "dtype": "torch.float32"}


def test_pytorch_38_nested_model_dir_served_with_warning(serve, tmp_path):
    """pytorch §11 item 38: archive case E (model/model.pt, model/code/inference.py) serves, with a warning that
    shows the re-pack command."""
    root = make_dir(tmp_path)
    nested = root / "model"
    nested.mkdir()
    module = torchscript_mlp(nested)
    write_code(nested, '''
        import json


        def output_fn(prediction, accept):
            return json.dumps({"nested": prediction.tolist()}), "application/json"
    ''')
    server = serve(root)
    result = server.invoke_json([[0, 1, 2, 3]])
    expected = module(torch.tensor([[0.0, 1, 2, 3]]))
    assert torch.allclose(torch.tensor(result["nested"]), expected, atol=1e-6)
    logs = server.logs()
    assert "single top-level directory" in logs or "nested" in logs.lower()
    assert "tar " in logs


COMPILE_PROBE = '''
import json

SEEN = {}


def model_warmup_fn(model_dir, model):
    SEEN["model_type"] = type(model).__name__


def output_fn(prediction, accept):  # default input_fn and predict_fn stay in use
    return json.dumps({"model_type": SEEN["model_type"], "y": prediction.tolist()}), "application/json"
'''


@pytest.mark.slow
def test_pytorch_39_torch_compile_pt2_before_ready(serve, tmp_path):
    """pytorch §11 item 39: SMSERVE_TORCH_COMPILE=true on a .pt2 model compiles during startup (warm-up call on
    SMSERVE_TORCH_COMPILE_SHAPE) and /ping turns 200 only afterwards: 503 while compiling, then a compiled
    module whose first request is fast."""
    model_dir = make_dir(tmp_path)
    module = export_mlp(model_dir / "model.pt2")
    write_code(model_dir, COMPILE_PROBE)
    started = time.monotonic()
    server = serve(model_dir, {"SMSERVE_TORCH_COMPILE": "true", "SMSERVE_TORCH_COMPILE_SHAPE": "1,4"},
                   ready=False)
    statuses = set()
    end = started + 300
    while time.monotonic() < end:
        assert server.poll() is None, server.logs()
        try:
            status = server.get("/ping", timeout=2).status_code
        except Exception:  # noqa: BLE001 not listening yet
            status = None
        statuses.add(status)
        if status == 200:
            break
        time.sleep(0.2)
    ready_after = time.monotonic() - started
    assert 200 in statuses, server.logs()
    assert 503 in statuses  # the listener answered "not ready" while compiling
    t0 = time.monotonic()
    result = server.invoke_json([[0, 1, 2, 3]])
    first_request = time.monotonic() - t0
    assert result["model_type"] == "OptimizedModule"
    expected = module(torch.tensor([[0.0, 1, 2, 3]]))
    assert torch.allclose(torch.tensor(result["y"]), expected, atol=1e-5)
    assert first_request < 2.0, (first_request, ready_after)  # compiled at startup, not on the first request


# ---------------------------------------------------------------- §1 pkg_resources
IMPORT_HOOK = '''
import os
import sys


class _RecordPkgResources:
    def find_spec(self, name, path=None, target=None):
        if name == "pkg_resources" or name.startswith("pkg_resources."):
            with open(os.environ["SMSERVE_TEST_IMPORT_RECORD"], "a") as out:
                out.write(f"{os.getpid()} {name}\\n")
        return None


if os.environ.get("SMSERVE_TEST_IMPORT_RECORD"):
    sys.meta_path.insert(0, _RecordPkgResources())
'''


@host_only
def test_pytorch_40_pkg_resources_never_imported(serve, tmp_path):
    """pytorch §11 item 40: `import pkg_resources` is never executed by smserve: an import hook installed by a
    sitecustomize on PYTHONPATH (so in the supervisor and every forked worker) records no attempt across startup,
    requests of every default codec, and shutdown; importing smserve's modules in a fresh interpreter leaves
    pkg_resources out of sys.modules."""
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(IMPORT_HOOK)
    record = tmp_path / "pkg_resources_imports"
    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    pythonpath = os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")]))
    server = serve(model_dir, {"PYTHONPATH": pythonpath, "SMSERVE_TEST_IMPORT_RECORD": str(record),
                               "SAGEMAKER_MODEL_SERVER_WORKERS": 2})
    for accept in ("application/json", "text/csv", NPY, "application/jsonlines"):
        assert server.post(data="[[0,1,2,3]]", accept=accept).status_code == 200
    assert server.post(data=npy(np.ones((1, 4), np.float32)), content_type=NPY).status_code == 200
    assert server.get("/metrics").status_code in (200, 404)
    server.stop()
    assert not record.exists(), record.read_text()

    # The hook itself works (positive control), then smserve's modules in a fresh interpreter.
    probe = textwrap.dedent('''
        import importlib, sys
        try:
            import pkg_resources  # noqa: F401  (the control: recorded even when absent)
        except ImportError:
            pass
        sys.modules.pop("pkg_resources", None)
        for name in ("smserve", "smserve.cli", "smserve.supervisor", "smserve.worker", "smserve.server",
                     "smserve.pipeline", "smserve.requirements", "smserve_pytorch",
                     "smserve_pytorch.defaults"):
            importlib.import_module(name)
        print(sorted(m for m in sys.modules if m.split(".")[0] == "pkg_resources"))
    ''')
    env = {**os.environ, "PYTHONPATH": pythonpath, "SMSERVE_TEST_IMPORT_RECORD": str(record)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    lines = record.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" pkg_resources"), lines  # only the control import


def test_pytorch_default_handlers_batch_concurrent_requests(serve, tmp_path):
    """Dynamic batching with the default handlers (SMSERVE_BATCH_SIZE=8): 32 clients at once, JSON and NPY
    bodies of 1 or 2 rows, each answer equals what torch computes for that client's rows alone, and
    /metrics shows predict calls that merged several requests (smserve_batch_rows)."""
    import threading

    import requests

    from pytorch_models import predict_default

    model_dir = make_dir(tmp_path)
    torchscript_mlp(model_dir)
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMSERVE_BATCH_SIZE": "8",
                               "SMSERVE_BATCH_DELAY_MS": "20"})
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((1 + i % 2, 4)).astype(np.float32) for i in range(32)]
    answers: list = [None] * 32
    barrier = threading.Barrier(32)

    def call(i: int) -> None:
        barrier.wait()
        if i % 2:
            body, content_type = npy(inputs[i]), "application/x-npy"
        else:
            body, content_type = json.dumps(inputs[i].tolist()), "application/json"
        answers[i] = requests.post(server.url + "/invocations", data=body, timeout=60,
                                   headers={"Content-Type": content_type, "Accept": "application/json"})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for i, response in enumerate(answers):
        assert response.status_code == 200, response.text
        expected = np.array(predict_default(model_dir, inputs[i].tolist()))
        assert np.allclose(np.array(response.json()), expected, atol=1e-5), i
    metrics = server.get("/metrics").text
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("smserve_batch_rows_count")))
    rows = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("smserve_batch_rows_sum")))
    assert rows == sum(len(x) for x in inputs)
    assert count < 32, f"every request was predicted alone ({count:g} calls)"
