"""Real PyTorch test models, and the PyTorch side of the family test interface that the shared suites use
(tests/families.py): ECHO_SCRIPT, write_echo_model, write_default_model, predict_default.

Only PyTorch test code imports this file; it lives in pytorch/tests, which pytest puts on sys.path."""

from __future__ import annotations

from pathlib import Path

import torch


class MLP(torch.nn.Module):
    def __init__(self, inputs: int = 4, hidden: int = 8, outputs: int = 2):
        super().__init__()
        self.fc1 = torch.nn.Linear(inputs, hidden)
        self.fc2 = torch.nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class DropoutNet(torch.nn.Module):
    """Train mode changes its output; eval mode does not."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.drop = torch.nn.Dropout(0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc(x))


class Echo(torch.nn.Module):
    """Returns its input with the dtype it arrived in, plus a float parameter that fixes the model dtype."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class TwoInputs(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


def mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP().eval()


def save_torchscript(module: torch.nn.Module, path: Path) -> Path:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    path.chmod(0o644)
    return path


def torchscript_mlp(model_dir: Path, name: str = "model.pt", seed: int = 0) -> MLP:
    module = mlp(seed)
    save_torchscript(module, Path(model_dir) / name)
    return module


# ---------------------------------------------------------------- family test interface (tests/families.py)
# The family parts of the shared echo script (tests/contract/core_scripts.py ECHO_PREDICT_TEMPLATE).
ECHO_SCRIPT = {"framework": "torch", "f32_tensor": "torch.tensor([0.1], dtype=torch.float32)",
               "forward": "    with torch.inference_mode():\n        return model(data)"}


def write_echo_model(model_dir: Path) -> None:
    """An Echo TorchScript model (float32 parameter) for the default model_fn."""
    save_torchscript(Echo(), Path(model_dir) / "model.pt")


def write_default_model(model_dir: Path) -> None:
    """A TorchScript MLP 4 -> 8 -> 2 as model.pt, served entirely by the family defaults (pytorch.md §11 item 1)."""
    torchscript_mlp(model_dir)


def predict_default(model_dir: Path, rows: list) -> list:
    """What torch itself computes for `rows` with the model write_default_model wrote."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's deprecation notice
        module = torch.jit.load(str(Path(model_dir) / "model.pt"))
    with torch.inference_mode():
        return module(torch.tensor(rows, dtype=torch.float32)).tolist()
