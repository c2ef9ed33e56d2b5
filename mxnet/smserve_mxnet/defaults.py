"""MXNet default hooks (spec mxnet.md §3–§6). Imported only inside workers, after fork.

One `MXNetDefaults` per worker. `prepare_model` runs once after `model_fn` and selects the handler by the
model's type (mxnet.md §6): Module defaults for `mx.module.BaseModule`, Gluon defaults for
`mx.gluon.Block`, Gluon-style input/output for any other object when the user supplies `predict_fn`.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from smserve import codecs
from smserve.config import Settings
from smserve.context import WorkerInfo
from smserve.errors import BadRequest, EncodeError, StartupError, UnsupportedFormatError

log = logging.getLogger("smserve.mxnet")

SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"
SHAPES_FILE = "model-shapes.json"
EXPECTED_FILES = [SYMBOL_FILE, PARAMS_FILE, SHAPES_FILE]
CHECKPOINT_PREFIX = "model"

MODULE, GLUON, OTHER = "module", "gluon", "other"
DEFAULT_INPUT_TYPES = (codecs.JSON, codecs.CSV, codecs.NPY, codecs.JSONLINES)


def worker_context() -> "mx.Context":
    """mx.gpu(0) is the first GPU of the worker's pinned set (core §15); CPU builds report no GPU."""
    try:
        gpus = mx.context.num_gpus()
    except Exception:  # CUDA build on a host without a driver
        gpus = 0
    return mx.gpu(0) if gpus > 0 else mx.cpu()


def read_shapes(path: Path, batch: int) -> tuple[list[str], list[tuple[int, ...]]]:
    """model-shapes.json: [{"name": <data name>, "shape": [d0, d1, ...]}, ...]; d0 becomes the batch size B."""
    accepted = 'a JSON list of {"name": <data input name>, "shape": [d0, d1, ...]}, one per data input'
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StartupError(f"{path} cannot be read as JSON ({exc}); it must be {accepted}") from None
    names, shapes = [], []
    if not isinstance(entries, list) or not entries:
        raise StartupError(f"{path} must be {accepted}; got {type(entries).__name__}")
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (not isinstance(name, str) or not isinstance(shape, list) or not shape
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise StartupError(f"{path}: entry {entry!r} is not valid; the file must be {accepted}")
        names.append(name)
        shapes.append((batch, *shape[1:]))
    return names, shapes


def to_ndarray(array: np.ndarray, ctx: "mx.Context") -> "mx.nd.NDArray":
    """float32 NDArray on ctx, as mx.nd.array makes it (mxnet.md §4.1), without its slow slice assignment."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim == 0 or array.size == 0:
        return mx.nd.array(array, ctx=ctx)
    out = mx.nd.empty(array.shape, ctx=ctx, dtype=np.float32)
    out._sync_copyfrom(array)
    return out


def _unsupported(content_type: str | None, types: tuple[str, ...]) -> UnsupportedFormatError:
    return UnsupportedFormatError(content_type or "(none)",
                                  f"Content-Type {content_type or '(missing)'} is not supported by the default "
                                  f"MXNet input_fn; send {', '.join(types)}, or provide input_fn")


def to_numpy(value: Any) -> Any:
    """NDArrays (also nested in lists, tuples and dicts) to numpy arrays, keeping their dtype."""
    if isinstance(value, mx.nd.NDArray):
        return value.asnumpy()
    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    return value


def _holds_ndarray(value: Any) -> bool:
    if isinstance(value, mx.nd.NDArray):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_ndarray(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_ndarray(v) for v in value.values())
    return False


def _block_context(block: Any) -> "mx.Context | None":
    try:
        for param in block.collect_params().values():
            contexts = param.list_ctx()
            if contexts:
                return contexts[0]
    except Exception:  # parameters not initialised yet, or a Block with unusual parameters
        return None
    return None


class OrderedNDArrayIter(mx.io.NDArrayIter):
    """NDArrayIter that keeps the Module's data-input order (NDArrayIter sorts inputs by name, but
    Module loads batches positionally in bind order)."""

    def __init__(self, pairs: list[tuple[str, Any]], batch_size: int):
        super().__init__(dict(pairs), batch_size=batch_size, last_batch_handle="pad")
        order = {name: i for i, (name, _) in enumerate(pairs)}
        self.data.sort(key=lambda item: order[item[0]])
        self.data_list = [x[1] for x in self.data] + [x[1] for x in self.label]


def module_predict(module: Any, iterator: OrderedNDArrayIter) -> Any:
    """What Module.predict(iterator) returns (one merged NDArray per output, padded rows removed), without its
    per-request iterator and slicing overhead: forward B rows at a time, zero-pad only the last batch and drop
    exactly those rows (mxnet.md §4.2)."""
    arrays = [array for _, array in iterator.data]
    rows, batch = iterator.num_data, iterator.batch_size
    per_output: list[list[Any]] = []
    for start in range(0, rows, batch):
        stop = min(start + batch, rows)
        pad = batch - (stop - start)
        if start == 0 and stop == rows and pad == 0:
            inputs = arrays
        else:
            inputs = [array[start:stop] for array in arrays]
            if pad:
                inputs = [mx.nd.concat(part, mx.nd.zeros((pad,) + part.shape[1:], ctx=part.context,
                                                         dtype=part.dtype), dim=0) for part in inputs]
        module.forward(mx.io.DataBatch(inputs, pad=pad), is_train=False)
        outputs = module.get_outputs()
        if not per_output:
            per_output = [[] for _ in outputs]
        for collected, output in zip(per_output, outputs):
            collected.append(output[0:output.shape[0] - pad].copy() if pad else output.copy())
    merged = [parts[0] if len(parts) == 1 else mx.nd.concat(*parts, dim=0) for parts in per_output]
    return merged[0] if len(merged) == 1 else merged


class MXNetDefaults:
    supported_accept = (codecs.JSON, codecs.CSV, codecs.NPY, codecs.JSONLINES)

    def __init__(self, settings: Settings, worker: WorkerInfo):
        self.settings = settings
        self.ctx = worker_context()
        self.batch = int(settings.family_options.get("SAGEMAKER_DEFAULT_MODEL_FIRST_DIMENSION_SIZE") or 1)
        self.kind = OTHER
        self.model_ctx = self.ctx
        self.data_names: list[str] = []
        self.data_tail: tuple[int, ...] = ()  # data shape without its batch dimension (single-input Module)
        self.module_batch = self.batch

    # ------------------------------------------------------------ model (once per worker)
    def model_fn(self, model_dir: str) -> Any:
        directory = Path(model_dir)
        for name in (SYMBOL_FILE, PARAMS_FILE):
            if not (directory / name).is_file():
                raise StartupError(
                    f"Failed to load model with default model_fn: missing file {name}. Expected files: "
                    f"{EXPECTED_FILES} in {directory} ({SHAPES_FILE} may be left out for a Gluon export, which "
                    f"is then served as a SymbolBlock); or provide model_fn in code/inference.py")
        symbol, args, aux = mx.model.load_checkpoint(str(directory / CHECKPOINT_PREFIX), 0)
        shapes = directory / SHAPES_FILE
        if shapes.is_file():
            names, data_shapes = read_shapes(shapes, self.batch)
            module = mx.mod.Module(symbol=symbol, context=self.ctx, data_names=names, label_names=None)
            module.bind(for_training=False, data_shapes=list(zip(names, data_shapes)))
            module.set_params(args, aux, allow_missing=True)
            log.info("default model_fn: Module bound on %s with data shapes %s", self.ctx,
                     dict(zip(names, data_shapes)))
            return module
        names = [n for n in symbol.list_inputs() if n not in args and n not in aux]
        with warnings.catch_warnings():
            # harmless: SymbolBlock cannot infer input dtypes before the first call (mxnet.md §1)
            warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
            block = mx.gluon.SymbolBlock.imports(str(directory / SYMBOL_FILE), names,
                                                 str(directory / PARAMS_FILE), ctx=self.ctx)
        log.info("default model_fn: no %s in %s; serving the export as gluon.SymbolBlock on %s with data "
                 "inputs %s", SHAPES_FILE, directory, self.ctx, names)
        return block

    def prepare_model(self, model: Any, default_predict: bool) -> Any:
        """Handler selection by model type (mxnet.md §6), decided once at load."""
        if isinstance(model, mx.module.BaseModule):
            self.kind = MODULE
            contexts = getattr(model, "_context", None)
            self.model_ctx = contexts[0] if contexts else self.ctx
            if model.binded:
                descs = model.data_shapes
                self.data_names = [d.name for d in descs]
                self.module_batch = descs[0].shape[0] if descs and descs[0].shape else self.batch
                self.data_tail = tuple(descs[0].shape[1:]) if len(descs) == 1 else ()
            else:
                self.data_names = list(model.data_names)
        elif isinstance(model, mx.gluon.Block):
            self.kind = GLUON
            self.model_ctx = _block_context(model) or self.ctx
        else:
            if default_predict:
                raise StartupError(f"Unsupported model type: {type(model).__module__}.{type(model).__qualname__}; "
                                   f"model_fn must return an mx.module.BaseModule or an mx.gluon.Block, or "
                                   f"code/inference.py must provide predict_fn or transform_fn")
            self.kind = OTHER
        return model

    # ------------------------------------------------------------ request path
    def _decode(self, body: Any, bare: str, content_type: str | None) -> np.ndarray:
        if bare in (codecs.JSON, codecs.CSV, codecs.JSONLINES):
            return codecs.as_float32(codecs.decode(body, bare))
        if bare == codecs.NPY:
            return codecs.as_float32(codecs.decode_npy(body))
        raise _unsupported(content_type, DEFAULT_INPUT_TYPES + ((codecs.NPZ,) if self.kind == MODULE else ()))

    def input_fn(self, body: Any, content_type: str | None) -> Any:
        bare, _ = codecs.media_type(content_type)
        if self.kind != MODULE:  # Gluon defaults (mxnet.md §5)
            return to_ndarray(self._decode(body, bare, content_type), self.model_ctx)
        if bare == codecs.NPZ:
            return self._module_npz(body)
        if len(self.data_names) != 1:
            raise BadRequest(f"the model has {len(self.data_names)} data inputs {self.data_names}; the default "
                             f"input_fn feeds them from application/x-npz with one member per input name, or "
                             f"provide input_fn")
        array = self._decode(body, bare, content_type)
        if bare == codecs.CSV and self.data_tail:  # flattened CSV rows take the model's shape (AWS)
            width = int(np.prod(self.data_tail))
            if width == 0 or array.size % width:
                raise BadRequest(f"CSV data with {array.size} values cannot be reshaped to (-1, "
                                 f"{', '.join(map(str, self.data_tail))}) for data input {self.data_names[0]!r}")
            array = array.reshape((-1,) + self.data_tail)
        if array.ndim == 0 or array.shape[0] == 0:
            raise BadRequest(f"the default input_fn needs at least one row for data input {self.data_names[0]!r}; "
                             f"got an array of shape {array.shape}")
        data = to_ndarray(array, self.model_ctx)
        # last_batch_handle='pad' pads only the last batch and Module.predict trims exactly those rows (§4.2)
        return OrderedNDArrayIter([(self.data_names[0], data)], self.module_batch)

    def _module_npz(self, body: Any) -> Any:
        decoded = codecs.decode_npz(body)
        if not isinstance(decoded, dict):  # scipy sparse matrix
            decoded = {self.data_names[0]: codecs.dense(decoded, len(body))} if len(self.data_names) == 1 else {}
        if set(decoded) != set(self.data_names):
            raise BadRequest(f"application/x-npz members {sorted(decoded)} must be the model's data input names "
                             f"{self.data_names}; or provide input_fn")
        pairs = [(name, to_ndarray(codecs.as_float32(decoded[name]), self.model_ctx)) for name in self.data_names]
        rows = {arr.shape[0] if arr.ndim else 1 for _, arr in pairs}
        if len(rows) != 1 or any(arr.ndim == 0 for _, arr in pairs):
            raise BadRequest("application/x-npz members must have the same number of rows (first dimension)")
        return OrderedNDArrayIter(pairs, self.module_batch)

    def predict_fn(self, data: Any, model: Any) -> Any:
        if self.kind == MODULE:
            if type(data) is OrderedNDArrayIter and data.cursor < 0:  # built by the default input_fn, unread
                return module_predict(model, data)
            return model.predict(data)
        return model(data)

    def encode(self, prediction: Any, media_type: str) -> bytes:
        value = to_numpy(prediction)
        if isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
            # several outputs: a JSON list with one nested list per output (mxnet.md §4.3)
            if media_type in (codecs.JSON, codecs.JSONLINES):
                return codecs.encode([v.tolist() for v in value], media_type)
            try:
                value = np.stack(value)
            except ValueError:
                raise EncodeError(f"the model's {len(value)} outputs have shapes "
                                  f"{[tuple(v.shape) for v in value]} and cannot be written as one {media_type} "
                                  f"array; ask for application/json or provide output_fn") from None
        if isinstance(value, np.ndarray) and media_type != codecs.NPY:
            value = value.tolist()  # AWS: prediction.asnumpy().tolist(); NPY keeps the dtype
        return codecs.encode(value, media_type)

    def encode_object(self, value: Any) -> bytes | None:
        """NDArrays returned by user output_fn/transform_fn become JSON like numpy arrays do."""
        if _holds_ndarray(value):
            return codecs.encode_json(to_numpy(value))
        return None
