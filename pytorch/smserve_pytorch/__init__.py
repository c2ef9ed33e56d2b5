"""The PyTorch family (spec pytorch.md): its declaration for the core. torch is imported only by `defaults`,
inside workers."""

from __future__ import annotations

from smserve.config import parse_bool
from smserve.errors import ConfigError
from smserve.families import Family, FamilyEnv, FamilyOption


def _parse_shape(name: str, value: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ConfigError(name, value, "a comma-separated list of positive integers, e.g. 1,3,224,224") from None
    if not shape or min(shape) < 1:
        raise ConfigError(name, value, "a comma-separated list of positive integers, e.g. 1,3,224,224")
    return shape


class PyTorchFamily(Family):
    name = "pytorch"
    display_name = "PyTorch"
    framework_distribution = "torch"
    expected_files = "model.pt (TorchScript), exactly one .pt/.pth file, or one .pt2 torch.export program"
    footprint_mb = 300
    mme_loaded_status = 'Model "{name}" Version: 1.0 registered with {workers} initial workers'  # TorchServe's
    preload_modules = ("torch", "smserve_pytorch.defaults")  # torch initialises CUDA lazily, at first use
    env = FamilyEnv(
        legacy_prefix="TS",
        worker_vars=("SAGEMAKER_TS_MIN_WORKERS",),
        timeout_vars=("SAGEMAKER_TS_RESPONSE_TIMEOUT",),
        informational_vars=("SAGEMAKER_TS_MAX_WORKERS", "SAGEMAKER_TS_BATCH_SIZE", "SAGEMAKER_TS_MAX_BATCH_DELAY"),
        options=(
            FamilyOption("SMSERVE_TORCH_COMPILE", parse_bool, False,
                         "wrap a .pt2 program loaded by the default model_fn in torch.compile"),
            FamilyOption("SMSERVE_TORCH_COMPILE_SHAPE", _parse_shape, None,
                         "input shape for the torch.compile warm-up call, e.g. 1,4"),
        ),
    )

    def configure_threads(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

    def defaults(self, settings, worker):
        from .defaults import PyTorchDefaults

        return PyTorchDefaults(settings, worker)
