"""The built-in backend's gRPC side: TF Serving's PredictionService and ModelService (spec tensorflow.md §5).

Handler code gets `context.grpc_port` and a ready `context.channel`, and AWS examples call the official
`tensorflow-serving-api` stubs on them, so the built-in backend answers the same RPCs as `tensorflow_model_server`:
Predict, Classify, Regress, GetModelMetadata (`signature_def`) and GetModelStatus, with TF Serving's response
`model_spec` and the codes and texts its gRPC side answers with (mostly the REST texts; where TF Serving's gRPC
path words an error differently, e.g. a missing predict signature, the gRPC wording is kept). Output tensors are
written as typed repeated fields (`float_val`, ... as TF Serving's `AsProtoField`), because clients read those
fields directly; there is no 4 MB message limit (TF Serving sets INT32_MAX). Loopback only.
"""

from __future__ import annotations

import logging
import os
from concurrent import futures
from typing import Any, Callable

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from . import examples
from .dtypes import DT_BFLOAT16, DT_HALF, DT_STRING, datatype_enum, datatype_name
from .errors import BackendError, Code, code_from_number
from .servables import CLASSIFY_METHOD, DEFAULT_SIGNATURE, PREDICT_METHOD, REGRESS_METHOD

log = logging.getLogger("smserve.tensorflow.grpc")

ERROR_MESSAGE_LIMIT = 1024  # TF Serving's ToGRPCStatus truncates longer messages
MAX_MESSAGE = 2 ** 31 - 1


def _error(code: str, message: str) -> BackendError:
    """The backend's error with the canonical code named `code` (shorthand for the many TF Serving texts here)."""
    return BackendError(Code[code], message)


# ---------------------------------------------------------------- errors
def _code_and_message(exc: BaseException) -> tuple[str, str]:
    """Canonical code name and message of any error a servable, the store, the batcher or TensorFlow raises."""
    if isinstance(exc, BackendError):
        return exc.code.name, exc.message
    number = getattr(exc, "error_code", None)  # tf.errors.OpError
    if isinstance(number, int):
        return code_from_number(number).name, str(getattr(exc, "message", exc))
    return "INTERNAL", f"{type(exc).__name__}: {exc}"


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    code, message = _code_and_message(exc)
    if len(message) > ERROR_MESSAGE_LIMIT:
        message = message[:ERROR_MESSAGE_LIMIT] + "...TRUNCATED"
    status = getattr(grpc.StatusCode, code, grpc.StatusCode.UNKNOWN)
    if status is grpc.StatusCode.OK:
        status = grpc.StatusCode.UNKNOWN
    context.abort(status, message)


def _rpc(name: str, method: Callable[[Any, Any], Any]) -> Callable[[Any, Any, grpc.ServicerContext], Any]:
    """Run `method(self, request)`; any error becomes the gRPC status with its canonical code and message."""

    def handler(self, request, context):
        try:
            return method(self, request)
        except Exception as exc:  # noqa: BLE001 - every failure is answered as a status, as TF Serving does
            if not isinstance(exc, BackendError) and getattr(exc, "error_code", None) is None:
                log.exception("gRPC %s failed", name)
            _abort(context, exc)

    handler.__name__ = name
    return handler


# ---------------------------------------------------------------- tensors
def tensor_to_array(proto: Any, alias: str) -> np.ndarray:
    """A request TensorProto as numpy (strings as an object array of bytes); malformed -> TF Serving's text."""
    import tensorflow as tf

    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # noqa: BLE001 - Tensor::FromProto's failure in TF Serving
        raise _error("INVALID_ARGUMENT", f"tensor parsing error: {alias}") from exc


_FIELDS = {  # numpy kind/itemsize -> TensorProto repeated field, as Tensor::AsProtoField writes them
    np.dtype(np.float32): "float_val", np.dtype(np.float64): "double_val",
    np.dtype(np.int8): "int_val", np.dtype(np.int16): "int_val", np.dtype(np.int32): "int_val",
    np.dtype(np.uint8): "int_val", np.dtype(np.uint16): "int_val",
    np.dtype(np.int64): "int64_val", np.dtype(np.uint32): "uint32_val", np.dtype(np.uint64): "uint64_val",
    np.dtype(np.bool_): "bool_val",
}


def array_to_tensor(array: Any) -> Any:
    """A response TensorProto with typed repeated fields (TF Serving's AsProtoField), not tensor_content."""
    array = np.asarray(array)
    proto = tensor_pb2.TensorProto()
    flat = array.ravel()
    if array.dtype.kind in "OSU":
        proto.dtype = DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat)
    elif array.dtype.name == "bfloat16":  # ml_dtypes' type, as TensorFlow returns it
        proto.dtype = DT_BFLOAT16
        proto.half_val.extend(flat.view(np.uint16).tolist())
    elif array.dtype == np.float16:
        proto.dtype = DT_HALF
        proto.half_val.extend(flat.view(np.uint16).tolist())
    elif array.dtype in (np.complex64, np.complex128):
        proto.dtype = datatype_enum(array.dtype)
        pairs = np.stack([flat.real, flat.imag], axis=-1).ravel().tolist()
        (proto.scomplex_val if array.dtype == np.complex64 else proto.dcomplex_val).extend(pairs)
    elif array.dtype in _FIELDS:
        proto.dtype = datatype_enum(array.dtype)
        getattr(proto, _FIELDS[array.dtype]).extend(flat.tolist())
    else:  # a type without a repeated field of its own: TensorFlow's encoding
        import tensorflow as tf

        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    for size in array.shape:
        proto.tensor_shape.dim.add().size = int(size)
    return proto


# ---------------------------------------------------------------- model spec
def _servable(store: Any, spec: Any, has_spec: bool) -> Any:
    """The servable a ModelSpec names (name, then version or label, else the latest)."""
    if not has_spec:
        raise _error("INVALID_ARGUMENT", "Missing ModelSpec")
    if not spec.name:
        raise _error("INVALID_ARGUMENT", "ModelSpec has no name specified.")
    choice = spec.WhichOneof("version_choice")
    if choice == "version_label":
        # smserve configures no version labels: the real server's answer to an unknown one
        raise _error("INVALID_ARGUMENT", f"Unrecognized servable version label: {spec.version_label}")
    return store.servable(spec.name, spec.version.value if choice == "version" else None)


def _response_spec(target: Any, name: str, version: int | None, signature_name: str | None) -> None:
    """TF Serving's MakeModelSpec: name, version and (for inference) the resolved signature name."""
    target.Clear()
    target.name = name
    if signature_name is not None:
        target.signature_name = signature_name or DEFAULT_SIGNATURE
    if version is not None:
        target.version.value = int(version)


# ---------------------------------------------------------------- the services
class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService over the backend's ModelStore."""

    def __init__(self, store: Any, batcher: Any = None):
        self.store = store
        self.batcher = batcher

    def _predict(self, request):
        servable = _servable(self.store, request.model_spec, request.HasField("model_spec"))
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = _signature_for_predict(servable, signature_name)
        inputs = _predict_inputs(signature, request)
        outputs_wanted = _output_filter(signature, list(request.output_filter))
        response = predict_pb2.PredictResponse()
        _response_spec(response.model_spec, request.model_spec.name, _version(servable), signature_name)
        if self.batcher is not None:  # the same queue key as REST's row-format requests
            outputs = self.batcher.run(signature, inputs, (servable.model_name, servable.version, signature.name))
        else:
            outputs = signature.run(inputs)
        for alias in outputs_wanted:
            response.outputs[alias].CopyFrom(array_to_tensor(outputs[alias]))
        return response

    def _classify(self, request):
        servable = _servable(self.store, request.model_spec, request.HasField("model_spec"))
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        serialized = _examples(request.input, servable, signature_name, CLASSIFY_METHOD, "classification")
        labels, scores = examples.classification_results(servable, signature_name, serialized)
        response = classification_pb2.ClassificationResponse()
        _response_spec(response.model_spec, request.model_spec.name, _version(servable), signature_name)
        for row_labels, row_scores in zip(labels, scores.tolist()):
            entry = response.result.classifications.add()
            for label, score in zip(row_labels, row_scores):
                item = entry.classes.add()
                item.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
                item.score = score
        return response

    def _regress(self, request):
        servable = _servable(self.store, request.model_spec, request.HasField("model_spec"))
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        serialized = _examples(request.input, servable, signature_name, REGRESS_METHOD, "regression")
        values = examples.regression_values(servable, signature_name, serialized)
        response = regression_pb2.RegressionResponse()
        _response_spec(response.model_spec, request.model_spec.name, _version(servable), signature_name)
        for value in values.tolist():
            response.result.regressions.add().value = value
        return response

    def _metadata(self, request):
        if not request.HasField("model_spec"):
            raise _error("INVALID_ARGUMENT", "Missing ModelSpec")
        if len(request.metadata_field) == 0:
            raise _error("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        for field in request.metadata_field:
            if field != "signature_def":
                raise _error("INVALID_ARGUMENT", f"Metadata field {field} is not supported")
            servable = _servable(self.store, request.model_spec, True)
            _response_spec(response.model_spec, request.model_spec.name, _version(servable), None)
            response.metadata["signature_def"].Pack(_signature_def_map(servable))
        return response

    Predict = _rpc("Predict", _predict)
    Classify = _rpc("Classify", _classify)
    Regress = _rpc("Regress", _regress)
    GetModelMetadata = _rpc("GetModelMetadata", _metadata)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus (config reload stays UNIMPLEMENTED: smserve owns config)."""

    def __init__(self, store: Any):
        self.store = store

    def _status(self, request):
        if not request.HasField("model_spec"):
            raise _error("INVALID_ARGUMENT", "Missing ModelSpec")
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        document = self.store.status(spec.name, version)
        response = get_model_status_pb2.GetModelStatusResponse()
        json_format.ParseDict(document, response, ignore_unknown_fields=True)
        return response

    GetModelStatus = _rpc("GetModelStatus", _status)


# ---------------------------------------------------------------- servable access
def _version(servable: Any) -> int | None:
    version = getattr(servable, "version", None)
    return None if version is None else int(version)


def _signature_for_predict(servable: Any, name: str) -> Any:
    signature = _find_signature(servable, name)
    if signature is None:
        raise _error("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
    method = getattr(signature, "method_name", PREDICT_METHOD)
    if method not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
        raise _error("INTERNAL", "Expected prediction signature method_name to be one of {"
                     f"{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {method}")
    return signature


def _find_signature(servable: Any, name: str) -> Any:
    """The servable's signature `name`, or None: each RPC words a missing signature its own way."""
    if not servable.has_signature(name):
        return None
    return servable.signature(name)


def _predict_inputs(signature: Any, request: Any) -> dict[str, np.ndarray]:
    """TF Serving's input checks (count, then aliases), then each TensorProto as numpy."""
    expected = set(signature.inputs)
    sent = set(request.inputs.keys())
    defaults = getattr(getattr(signature, "definition", None), "defaults", None) or {}
    if len(sent) > len(expected) or (len(sent) < len(expected) and not defaults):
        raise _error("INVALID_ARGUMENT",
                     f"input size does not match signature: {len(sent)}!={len(expected)} "
                     f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                     f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                     f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
    inputs = {}
    for alias in sorted(sent):
        if alias not in expected:
            raise _error("INVALID_ARGUMENT", f"input tensor alias not found in signature: {alias}. "
                         f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}.")
    feeds = sorted(sent, key=lambda alias: signature.inputs[alias].name)  # the session's feed (arg) order
    for alias in sorted(sent):
        proto = request.inputs[alias]
        wanted = signature.inputs[alias].dtype_enum
        if wanted and proto.dtype != wanted:  # the session checks each feed's dtype before running
            raise _error("INVALID_ARGUMENT", f"Expects arg[{feeds.index(alias)}] to be {datatype_name(wanted)} "
                         f"but {datatype_name(int(proto.dtype))} is provided")
        inputs[alias] = tensor_to_array(proto, alias)
    return inputs


def _output_filter(signature: Any, wanted: list[str]) -> list[str]:
    outputs = sorted(signature.outputs)
    if not wanted:
        return outputs
    seen: set[str] = set()
    for alias in wanted:
        if alias not in signature.outputs:
            raise _error("INVALID_ARGUMENT", f"output tensor alias not found in signature: {alias} "
                         f"Outputs expected to be in the set {{{','.join(outputs)}}}.")
        if alias in seen:
            raise _error("INVALID_ARGUMENT", f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return wanted


def _examples(input_proto: Any, servable: Any, signature_name: str, method: str, purpose: str) -> list[bytes]:
    """The serialized examples of a Classify/Regress Input; the signature is checked first, as TF Serving
    does before it looks at the input."""
    try:
        return examples.serialized_examples_from_input(input_proto)
    except BackendError:
        examples._signature_for(servable, signature_name, method, purpose)
        raise


def _signature_def_map(servable: Any) -> Any:
    """The servable's SignatureDefs as TF Serving packs them (the MetaGraphDef's own protos)."""
    result = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in servable.signature_defs.items():
        result.signature_def[key].CopyFrom(definition)
    return result


# ---------------------------------------------------------------- server
def default_workers() -> int:
    """Threads serving RPCs: model calls release the GIL, so a few per core keep the cores busy."""
    return max(8, min(64, 4 * (os.cpu_count() or 1)))


def start_grpc(store: Any, port: int, batcher: Any = None, max_workers: int | None = None) -> grpc.Server:
    """Serve PredictionService and ModelService for `store` on 127.0.0.1:`port` (0: any free port; the bound
    port is `server.smserve_port`), and on [::1] with the same port when IPv6 is there, because handler code
    dials `localhost:<port>`. Never on other interfaces: the backend is reached only from inside the container.
    `batcher` (a RequestBatcher) merges Predict calls as TF Serving's batching does for every session run."""
    host = "127.0.0.1"
    options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE),
               ("grpc.so_reuseport", 0)]
    workers = max_workers or default_workers()
    if batcher is not None and max_workers is None:  # callers wait for their batch in an RPC thread
        workers = max(workers, min(256, 2 * batcher.max_batch_size))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tf-grpc"),
                         options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(store, batcher), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(store), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC on {host}:{port}")
    try:
        server.add_insecure_port(f"[::1]:{bound}")
    except RuntimeError:
        pass  # no IPv6 loopback: localhost resolves to 127.0.0.1 only
    server.start()
    server.smserve_port = bound  # type: ignore[attr-defined]
    log.info("gRPC PredictionService and ModelService on %s:%d", host, bound)
    return server
