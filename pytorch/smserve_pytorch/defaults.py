"""PyTorch default hooks (spec pytorch.md §2–§6). Imported only inside workers."""

from __future__ import annotations

import io
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smserve import codecs
from smserve.batching import NumpyOps
from smserve.config import Settings
from smserve.context import WorkerInfo
from smserve.errors import BadRequest, StartupError, UnsupportedFormatError

log = logging.getLogger("smserve.pytorch")

NUMPY_UNSUPPORTED = {torch.bfloat16} | {getattr(torch, n) for n in dir(torch) if n.startswith("float8_")}


def worker_device() -> torch.device:
    """cuda:0 is the first GPU this worker may see (its pinned set, spec core §15)."""
    return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")


def find_model_file(model_dir: Path) -> tuple[Path, str]:
    """(path, kind) with kind 'torchscript' or 'export', by the rules of pytorch.md §2.1."""
    preferred = model_dir / "model.pt"
    if preferred.is_file():
        return preferred, "torchscript"
    files = sorted(p for p in model_dir.iterdir() if p.is_file())
    weights = [p for p in files if p.suffix in (".pt", ".pth")]
    if len(weights) == 1:
        return weights[0], "torchscript"
    exported = [p for p in files if p.suffix == ".pt2"]
    if not weights and len(exported) == 1:
        return exported[0], "export"
    names = [p.name for p in weights or exported]
    raise StartupError(f"Exactly one .pth or .pt file is required for PyTorch models: {names} in {model_dir}; "
                       f"name the file model.pt, or provide model_fn in code/inference.py")


def describe_non_torchscript(path: Path) -> str:
    """Say what a file that torch.jit.load refused actually is, and what to do."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return (f"{path} is not a TorchScript archive (not a zip file: an old pickle format or another format); "
                f"save the model with torch.jit.script(model).save(...) or provide model_fn in code/inference.py")
    has_pickle = any(n.endswith("/data.pkl") or n == "data.pkl" for n in names)
    has_code = any("/code/" in n for n in names)
    if has_pickle and not has_code:
        return (f"{path} is a pickled nn.Module or state_dict, not TorchScript; eager models need model_fn in "
                f"code/inference.py that builds the module and loads the weights with "
                f"torch.load(path, weights_only=True)")
    return f"{path} could not be loaded as TorchScript; provide model_fn in code/inference.py"


def model_float_dtype(model: Any) -> torch.dtype | None:
    for getter in ("parameters", "buffers"):
        items = getattr(model, getter, None)
        if items is None:
            continue
        try:
            for tensor in items():
                if tensor.is_floating_point():
                    return tensor.dtype
        except Exception:  # foreign objects with a parameters() of another meaning
            return None
    return None


def _tensor_from_array(array: np.ndarray) -> torch.Tensor:
    if array.dtype.names:
        array = codecs.as_float32(array)
    if array.dtype.kind in "OUSV":
        raise BadRequest(f"the default input_fn cannot turn {array.dtype} data into a tensor; provide input_fn")
    if not array.flags.writeable or not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="), copy=True)
    try:
        return torch.from_numpy(array)
    except TypeError as exc:
        raise BadRequest(f"the default input_fn cannot turn {array.dtype} data into a tensor: {exc}") from None


def to_numpy_tree(value: Any) -> Any:
    """Tensors (nested in tuples, lists, dicts) to numpy arrays on the CPU, keeping their dtype."""
    if isinstance(value, torch.Tensor):
        # detach()/cpu() are torch ops that release and re-take the GIL: skip them when they would not change
        # anything (each re-take waits on the event-loop thread under load)
        tensor = value.detach() if value.requires_grad else value
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if tensor.dtype in NUMPY_UNSUPPORTED:
            tensor = tensor.to(torch.float32)
        return tensor.numpy()
    if isinstance(value, (list, tuple)):
        return [to_numpy_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: to_numpy_tree(v) for k, v in value.items()}
    return value


class TorchBatchOps(NumpyOps):
    """Merging and splitting for dynamic batching (smserve/batching.py): tensors by torch, arrays by numpy."""

    def accepts(self, data: Any) -> bool:
        return isinstance(data, torch.Tensor) or super().accepts(data)

    def concatenate(self, items: list[Any]) -> Any:
        return torch.cat(items, dim=0) if isinstance(items[0], torch.Tensor) else super().concatenate(items)

    def split(self, prediction: Any, counts: list[int]) -> list[Any] | None:
        if isinstance(prediction, torch.Tensor):
            return list(torch.split(prediction, counts, dim=0))
        return super().split(prediction, counts)


class PyTorchDefaults:
    supported_accept = (codecs.JSON, codecs.CSV, codecs.NPY, codecs.JSONLINES)
    batch_ops = TorchBatchOps()  # the default predict_fn, model(tensor), keeps dimension 0

    def __init__(self, settings: Settings, worker: WorkerInfo):
        self.settings = settings
        self.device = worker_device()
        self.float_dtype: torch.dtype | None = None

    # ---- model
    def model_fn(self, model_dir: str) -> Any:
        path, kind = find_model_file(Path(model_dir))
        if kind == "export":
            program = torch.export.load(str(path))
            module = program.module()
            if self.settings.family_options.get("SMSERVE_TORCH_COMPILE"):
                module = self._compile(module)
            return module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                module = torch.jit.load(str(path), map_location=self.device)
            except RuntimeError:
                raise StartupError(describe_non_torchscript(path)) from None
        return module.eval()

    def _compile(self, module: Any) -> Any:
        compiled = torch.compile(module)
        shape = self.settings.family_options.get("SMSERVE_TORCH_COMPILE_SHAPE")
        if shape:
            dtype = model_float_dtype(module) or torch.float32
            with torch.inference_mode():
                compiled(torch.zeros(shape, dtype=dtype, device=self.device))
        return compiled

    def prepare_model(self, model: Any, default_predict: bool) -> Any:
        """Place and switch to eval mode once at load, not per request (pytorch.md §2.3)."""
        if default_predict and hasattr(model, "to") and hasattr(model, "eval"):
            model = model.to(self.device)
            try:
                model.eval()
            except NotImplementedError:  # torch.export modules: mode fixed at export, eval() unsupported
                pass
        self.float_dtype = model_float_dtype(model)
        return model

    # ---- request path
    def input_fn(self, body: Any, content_type: str | None) -> Any:
        bare, _ = codecs.media_type(content_type)
        if bare in (codecs.JSON, codecs.CSV, codecs.JSONLINES):
            tensor = _tensor_from_array(codecs.as_float32(codecs.decode(body, bare)))
        elif bare == codecs.NPY:
            tensor = _tensor_from_array(codecs.decode_npy(body))
        elif bare == codecs.NPZ:
            return self._from_npz(codecs.decode_npz(body), len(body))
        else:
            raise UnsupportedFormatError(content_type or "(none)",
                                         f"Content-Type {content_type or '(missing)'} is not supported by the default "
                                         f"input_fn; send application/json, text/csv, application/x-npy, "
                                         f"application/x-npz or application/jsonlines, or provide input_fn")
        return self._place(tensor)

    def _place(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.float_dtype is not None and tensor.dtype.is_floating_point and tensor.dtype != self.float_dtype:
            tensor = tensor.to(self.float_dtype)
        return tensor.to(self.device) if self.device.type != "cpu" else tensor

    def _from_npz(self, decoded: Any, body_size: int) -> Any:
        if isinstance(decoded, dict):
            tensors = {name: self._place(_tensor_from_array(array)) for name, array in decoded.items()}
            if len(tensors) == 1:
                return next(iter(tensors.values()))
            return tensors
        return self._place(_tensor_from_array(codecs.dense(decoded, body_size)))

    def predict_fn(self, data: Any, model: Any) -> Any:
        with torch.inference_mode():
            if isinstance(data, dict):
                return model(**data)
            return model(data)

    def encode(self, prediction: Any, media_type: str) -> bytes:
        return codecs.encode(to_numpy_tree(prediction), media_type)

    def encode_object(self, value: Any) -> bytes | None:
        """A bare tensor returned by user code is written with torch.save, as TorchServe does."""
        if isinstance(value, torch.Tensor):
            buffer = io.BytesIO()
            torch.save(value, buffer)
            return buffer.getvalue()
        return None
