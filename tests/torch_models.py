"""PyTorch test models (torch is imported only by tests that use it)."""

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
