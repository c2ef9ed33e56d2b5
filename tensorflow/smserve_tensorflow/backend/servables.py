"""The model store: every configured model version loaded with `tf.saved_model.load`, its state tracked the way TF
Serving's ServableStateMonitor reports it (§9.1), and lookups that fail with TF Serving's own texts.

REST, gRPC and the batcher all go through `ModelStore.servable()` -> `Servable.signature()` -> `Signature.run()`,
so a model behaves the same whichever way it is called. Signature metadata comes from the SavedModel's own
SignatureDefs (not from the restored functions) because that is what TF Serving reports and validates against.
"""

from __future__ import annotations

import enum
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import DT_STRING
from .errors import BackendError, Code, code_from_number, invalid_argument, not_found

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"


class VersionState(enum.Enum):
    """ModelVersionStatus.State of get_model_status.proto."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class ModelLoadError(RuntimeError):
    """A configured model version could not be loaded; the backend process stops on it."""


@dataclass(frozen=True)
class ModelConfig:
    """One entry of the model config: `versions` lists the versions to serve; None serves the latest one."""

    name: str
    base_path: str
    versions: tuple[int, ...] | None = None
    latest_count: int = 1
    serve_all: bool = False
    platform: str = "tensorflow"

    @classmethod
    def of(cls, entry: ModelConfig | Mapping[str, Any]) -> ModelConfig:
        if isinstance(entry, ModelConfig):
            return entry
        versions = entry.get("versions")
        return cls(name=entry["name"], base_path=entry["base_path"],
                   versions=None if versions is None else tuple(int(v) for v in versions),
                   latest_count=int(entry.get("latest_count", 1)), serve_all=bool(entry.get("serve_all", False)),
                   platform=entry.get("platform") or entry.get("model_platform") or "tensorflow")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a SignatureDef: graph tensor name, dtype (tf.DType) and shape (None = unknown)."""

    name: str
    dtype: Any
    shape: tuple[int | None, ...] | None
    dtype_enum: int

    @classmethod
    def from_tensor_info(cls, info: Any) -> TensorSpec:
        import tensorflow as tf

        shape_proto = info.tensor_shape
        shape = None if shape_proto.unknown_rank else tuple(
            None if dim.size < 0 else int(dim.size) for dim in shape_proto.dim)
        dtype = tf.as_dtype(info.dtype) if info.dtype else None
        return cls(name=info.name, dtype=dtype, shape=shape, dtype_enum=int(info.dtype))


_OP_CONTEXT = re.compile(r"^(?:Graph execution error:\s*)?(?:Detected at node .*? defined at \(most recent call "
                         r"last\):\n(?:<stack traces unavailable>\n|.*?\n\n))?", re.DOTALL)
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\](?: name: \S*)?\s*$")


def _runtime_message(error: Exception) -> str:
    """TensorFlow's own error text without the Python-side decoration TF Serving never shows."""
    message = getattr(error, "message", None) or str(error)
    message = _OP_CONTEXT.sub("", message, count=1)
    return _OP_SUFFIX.sub("", message).strip()


class Signature:
    """A named SignatureDef of one servable, runnable on numpy arrays keyed by input name."""

    def __init__(self, name: str, definition: Any, function: Any | None) -> None:
        self.name = name
        self.definition = definition
        self.method_name: str = definition.method_name
        self.inputs: dict[str, TensorSpec] = {key: TensorSpec.from_tensor_info(info)
                                              for key, info in definition.inputs.items()}
        self.outputs: dict[str, TensorSpec] = {key: TensorSpec.from_tensor_info(info)
                                               for key, info in definition.outputs.items()}
        self._function = function

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the signature; TensorFlow failures become BackendError with TensorFlow's message (§9.6)."""
        import tensorflow as tf

        if self._function is None:
            raise BackendError(Code.FAILED_PRECONDITION, f"Signature {self.name} cannot be run")
        feeds = {}
        for key, value in inputs.items():
            spec = self.inputs.get(key)
            if spec is None:
                raise invalid_argument(f"input tensor alias not found in signature: {key}. Inputs expected to be "
                                       f"in the set {{{','.join(sorted(self.inputs))}}}.")
            feeds[key] = tf.constant(value, dtype=spec.dtype) if spec.dtype_enum != DT_STRING else tf.constant(value)
        try:
            results = self._function(**feeds)
        except tf.errors.OpError as error:
            raise BackendError(code_from_number(error.error_code), _runtime_message(error)) from None
        except (TypeError, ValueError) as error:
            raise invalid_argument(_runtime_message(error)) from None
        return {key: tensor.numpy() for key, tensor in results.items()}


class Servable:
    """One loaded model version."""

    def __init__(self, model_name: str, version: int, path: str, signature_defs: Mapping[str, Any],
                 loaded: Any) -> None:
        self.model_name = model_name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs  # name -> tensorflow.core.protobuf.meta_graph_pb2.SignatureDef
        self._loaded = loaded  # keeps the restored variables alive
        functions = getattr(loaded, "signatures", {}) if loaded is not None else {}
        self.signatures: dict[str, Signature] = {
            name: Signature(name, definition, functions.get(name))
            for name, definition in signature_defs.items()}

    def signature(self, name: str = "") -> Signature:
        """The signature TF Serving would pick: `serving_default` when no name is given."""
        key = name or DEFAULT_SIGNATURE
        found = self.signatures.get(key)
        if found is None:
            raise invalid_argument(f'Serving signature name: "{key}" not found in signature def')
        return found

    def has_signature(self, name: str) -> bool:
        return (name or DEFAULT_SIGNATURE) in self.signatures


@dataclass
class _VersionRecord:
    version: int
    path: str
    state: VersionState = VersionState.START
    error: BackendError | None = None
    servable: Servable | None = None


@dataclass
class _ModelRecord:
    config: ModelConfig
    versions: dict[int, _VersionRecord] = field(default_factory=dict)


def version_directories(base_path: str) -> dict[int, str]:
    """Numeric entries of a base path (`00000123` -> 123); hidden and other names are not versions (§3)."""
    found: dict[int, str] = {}
    for entry in sorted(os.listdir(base_path)):
        path = os.path.join(base_path, entry)
        if entry.isdigit() and entry.isascii() and os.path.isdir(path):
            found.setdefault(int(entry), path)
    return found


def read_signature_defs(export_dir: str) -> dict[str, Any]:
    """SignatureDefs of the `serve` MetaGraph, read from saved_model.pb or saved_model.pbtxt."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    binary_path = os.path.join(export_dir, "saved_model.pb")
    if os.path.exists(binary_path):
        with open(binary_path, "rb") as handle:
            saved_model.ParseFromString(handle.read())
    else:
        with open(os.path.join(export_dir, "saved_model.pbtxt"), encoding="utf-8") as handle:
            text_format.Parse(handle.read(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ModelLoadError(f"SavedModel at {export_dir} has no MetaGraphDef with tag '{SERVE_TAG}'")


class ModelStore:
    """All configured models and their versions, with TF Serving's status and lookup semantics."""

    def __init__(self, models: Iterable[ModelConfig]) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, _ModelRecord] = {}
        for config in models:
            if config.name in self._models:
                raise ModelLoadError(f"model name {config.name} is configured twice")
            self._models[config.name] = _ModelRecord(config)

    @classmethod
    def from_config(cls, models: Iterable[ModelConfig | Mapping[str, Any]]) -> ModelStore:
        return cls(ModelConfig.of(entry) for entry in models)

    def model_names(self) -> list[str]:
        return list(self._models)

    # -- loading ------------------------------------------------------------------------------------------------

    def _resolve_versions(self, record: _ModelRecord) -> None:
        config = record.config
        if not os.path.isdir(config.base_path):
            raise ModelLoadError(f"Could not find base path {config.base_path} for servable {config.name}")
        on_disk = version_directories(config.base_path)
        if config.versions is not None:
            missing = [v for v in config.versions if v not in on_disk]
            if missing:
                raise ModelLoadError(f"model {config.name}: version(s) {', '.join(map(str, missing))} not found "
                                     f"under base path {config.base_path}")
            chosen = sorted(set(config.versions))
        elif config.serve_all:
            chosen = sorted(on_disk)
        else:
            chosen = sorted(on_disk)[-max(config.latest_count, 1):]
        if not chosen:
            raise ModelLoadError(f"No versions of servable {config.name} found under base path "
                                 f"{config.base_path}")
        with self._lock:
            record.versions = {v: _VersionRecord(v, on_disk[v]) for v in chosen}

    def load_all(self) -> None:
        """Load every version of every model; the first failure stops the process (ModelLoadError)."""
        for record in self._models.values():
            self._resolve_versions(record)
        for record in self._models.values():
            for version_record in sorted(record.versions.values(), key=lambda r: r.version):
                self._load_version(record.config, version_record)

    def _load_version(self, config: ModelConfig, record: _VersionRecord) -> None:
        import tensorflow as tf

        record.state = VersionState.LOADING
        try:
            signature_defs = read_signature_defs(record.path)
            loaded = tf.saved_model.load(record.path, tags=[SERVE_TAG])
            servable = Servable(config.name, record.version, record.path, signature_defs, loaded)
        except Exception as error:  # any failure is the model's, reported with its path
            with self._lock:
                record.state = VersionState.END
                record.error = BackendError(Code.UNKNOWN, str(error))
            raise ModelLoadError(f"Failed to load model {config.name} version {record.version} from "
                                 f"{record.path}: {error}") from error
        with self._lock:
            record.servable = servable
            record.state = VersionState.AVAILABLE

    # -- lookups --------------------------------------------------------------------------------------------------

    def servable(self, name: str, version: int | None = None) -> Servable:
        """The servable for a request: the highest available version unless one is named (NOT_FOUND otherwise)."""
        record = self._models.get(name)
        with self._lock:
            if version is None:
                available = [r for r in record.versions.values()
                             if r.state is VersionState.AVAILABLE] if record else []
                if available:
                    return max(available, key=lambda r: r.version).servable
                raise not_found(f"Servable not found for request: Latest({name})")
            version_record = record.versions.get(version) if record else None
            if version_record is not None and version_record.state is VersionState.AVAILABLE:
                return version_record.servable
        raise not_found(f"Servable not found for request: Specific({name}, {version})")

    def status(self, name: str, version: int | None = None) -> dict:
        """GET /v1/models/<name>[/versions/<v>] body (GetModelStatusResponse as JSON); newest version first."""
        record = self._models.get(name)
        with self._lock:
            if version is not None:
                version_record = record.versions.get(version) if record else None
                if version_record is None:
                    raise not_found(f"Could not find version {version} of model {name}")
                chosen = [version_record]
            else:
                if not record or not record.versions:
                    raise not_found(f"Could not find any versions of model {name}")
                chosen = sorted(record.versions.values(), key=lambda r: r.version, reverse=True)
            return {"model_version_status": [_version_status(r) for r in chosen]}

    def metadata(self, name: str, version: int | None = None) -> dict:
        """GET .../metadata body: model_spec plus every SignatureDef of the servable, proto-JSON style."""
        from google.protobuf import json_format

        servable = self.servable(name, version)
        signature_defs = {
            key: json_format.MessageToDict(definition, always_print_fields_with_no_presence=True,
                                           preserving_proto_field_name=True)
            for key, definition in servable.signature_defs.items()}
        return {
            "model_spec": {"name": servable.model_name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": signature_defs}},
        }


def _version_status(record: _VersionRecord) -> dict:
    error = record.error
    return {
        "version": str(record.version),
        "state": record.state.name,
        "status": {"error_code": error.code.name if error else "OK",
                   "error_message": error.message if error else ""},
    }


def ensure_servable_inputs(signature: Signature) -> dict[str, TensorSpec]:
    """The signature's inputs, or TF Serving's error for a signature without any (e.g. __saved_model_init_op)."""
    if not signature.inputs:
        raise invalid_argument(f"Failed to get input map for signature: {signature.name or 'DEFAULT'}")
    return signature.inputs

