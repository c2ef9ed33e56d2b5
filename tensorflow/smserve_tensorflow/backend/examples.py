"""Classify and regress (§9.5): JSON examples become serialized tf.train.Example protos fed to the signature whose
method is tensorflow/serving/classify or /regress, with TF Serving's checks and texts (json_tensor.cc,
classifier.cc, regressor.cc, util.cc) so that errors read the same as from the real server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .dtypes import DT_FLOAT, DT_STRING, INT64_MAX, datatype_enum
from .errors import BackendError, Code, invalid_argument
from .json_values import document_error, is_json_double, json_type_name
from .servables import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, Servable, Signature
from .tensors import decode_base64_text, is_base64_object, shape_text


class _FeatureBuilder:
    """One tf.train.Feature under construction; its kind is fixed by the first value (IsFeatureOfKind)."""

    __slots__ = ("name", "kind", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind: str | None = None
        self.values: list = []

    def _require(self, kind: str) -> None:
        if self.kind is None:
            self.kind = kind
        elif self.kind != kind:
            raise invalid_argument(f"Unexpected element type in feature: {self.name} expecting type: {self.kind}")

    def add(self, value: Any) -> None:
        """AddValueToFeature()."""
        if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_base64_object(value)):
            raise invalid_argument(f"Feature: {self.name} has element with unexpected JSON type: "
                                   f"{json_type_name(value)}")
        if isinstance(value, bool):
            self._require("int64")
            self.values.append(1 if value else 0)
        elif isinstance(value, dict):
            self._require("bytes")
            self.values.append(_decode_feature_base64(value))
        elif isinstance(value, str):
            self._require("bytes")
            self.values.append(value.encode("utf-8", "surrogateescape"))
        elif is_json_double(value):
            self._require("float")
            self.values.append(float(value))
        else:
            self._require("int64")
            if value > INT64_MAX:
                raise invalid_argument(f"Feature: {self.name} has uint64 element. Only int64 is supported.")
            self.values.append(value)

    def fill(self, feature: Any) -> None:
        if self.kind == "bytes":
            feature.bytes_list.value.extend(self.values)
        elif self.kind == "float":
            with np.errstate(over="ignore"):
                feature.float_list.value.extend(np.asarray(self.values, dtype=np.float32).tolist())
        elif self.kind == "int64":
            feature.int64_list.value.extend(self.values)


def _decode_feature_base64(value: dict) -> bytes:
    return decode_base64_text(value["b64"])


def _example_from_json(value: Any) -> Any:
    """MakeExampleFromJsonObject(): each key becomes a feature; a list holds several values of one kind."""
    from tensorflow.core.example import example_pb2

    if type(value) is not dict:
        raise invalid_argument(f"Example must be JSON object but got JSON {json_type_name(value)}")
    example = example_pb2.Example()
    features = example.features.feature
    for name, content in value.items():
        builder = _FeatureBuilder(name)
        for item in (content if isinstance(content, list) else (content,)):
            builder.add(item)
        feature = features[name]
        feature.Clear()
        builder.fill(feature)
    return example


def serialized_examples_from_json(document: dict) -> list[bytes]:
    """The `context`/`examples` part of FillClassifyRegressRequestFromJson(), serialized as util.cc feeds them:
    context bytes + example bytes, so example features override context features on parse."""
    context = b""
    if "context" in document:
        context = _example_from_json(document["context"]).SerializeToString()
    if "examples" not in document:
        raise document_error(document, "When method is classify, key 'examples' is expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise document_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise document_error(document, "'examples' value is an empty array")
    return [context + _example_from_json(item).SerializeToString() for item in examples]


def serialized_examples_from_input(input_proto: Any) -> list[bytes]:
    """The same feed for a tensorflow.serving.Input proto (gRPC Classify/Regress)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        serialized = [context + e.SerializeToString() for e in with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise invalid_argument("Input is empty.")
    return serialized


def signature_for(servable: Servable, signature_name: str, method: str, purpose: str) -> Signature:
    """GetClassificationSignatureDef()/GetRegressionSignatureDef()."""
    key = signature_name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(key)
    if signature is None:
        raise invalid_argument(f"No signature was found with the name: {key}")
    if signature.method_name != method:
        raise invalid_argument(f"Expected {purpose} signature method_name to be {method}. "
                               f"Was: {signature.method_name}")
    return signature


def _signature_text(signature: Signature) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(signature.definition)


def _run_on_examples(signature: Signature, serialized: Sequence[bytes]) -> dict[str, np.ndarray]:
    feed = np.empty(len(serialized), dtype=object)
    feed[:] = list(serialized)
    return signature.run({"inputs": feed})


def _dtype_name(array: np.ndarray) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(datatype_enum(array.dtype))


def regression_values(servable: Servable, signature_name: str, serialized: Sequence[bytes]) -> np.ndarray:
    """Regress: one float per example (PreProcessRegression/PostProcessRegressionResult checks)."""
    signature = signature_for(servable, signature_name, REGRESS_METHOD, "regression")
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise BackendError(Code.FAILED_PRECONDITION,
                           "No regression inputs found in SignatureDef: " + _signature_text(signature))
    if "outputs" not in signature.outputs:
        raise BackendError(Code.FAILED_PRECONDITION,
                           "No regression outputs found in SignatureDef: " + _signature_text(signature))
    output = _run_on_examples(signature, serialized)["outputs"]
    count = len(serialized)
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise invalid_argument("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                               + shape_text(output.shape))
    if output.shape[0] != count:
        raise invalid_argument(f"Input batch size did not match output batch size: {count} vs. {output.shape[0]}")
    if datatype_enum(output.dtype) != DT_FLOAT:
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(output)}")
    return output.reshape(-1)


def classification_results(servable: Servable, signature_name: str, serialized: Sequence[bytes]
                           ) -> tuple[list[list[bytes]], np.ndarray]:
    """Classify: per example the class labels (b"" without a `classes` output) and their scores (0 without
    `scores`), as PostProcessClassificationResult() builds them."""
    signature = signature_for(servable, signature_name, CLASSIFY_METHOD, "classification")
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if "inputs" not in signature.inputs:
        raise BackendError(Code.FAILED_PRECONDITION,
                           "No classification inputs found in SignatureDef: " + _signature_text(signature))
    if "classes" not in signature.outputs and "scores" not in signature.outputs:
        raise BackendError(Code.FAILED_PRECONDITION,
                           'Expected classification signature outputs to contain at least one of "classes" or '
                           '"scores". Signature was: ' + _signature_text(signature))
    outputs = _run_on_examples(signature, serialized)
    count = len(serialized)
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for array, label, dtype, dtype_label in ((classes, "classes", DT_STRING, "DT_STRING"),
                                              (scores, "scores", DT_FLOAT, "DT_FLOAT")):
        if array is None:
            continue
        if array.ndim != 2:
            raise invalid_argument("Expected Tensor shape: [batch_size num_classes] but got "
                                   + shape_text(array.shape))
        if datatype_enum(array.dtype) != dtype:
            raise invalid_argument(f"Expected {label} Tensor of {dtype_label}. Got: {_dtype_name(array)}")
        if array.shape[0] != count:
            raise invalid_argument(f"Expected {label} output batch size of {count}. Got: {array.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} "
                               f"vs. {scores.shape[1]}")
    class_count = (classes if classes is not None else scores).shape[1]
    if classes is None:
        labels = [[b""] * class_count for _ in range(count)]
    else:
        labels = [list(row) for row in classes.tolist()]
    if scores is None:
        scores = np.zeros((count, class_count), dtype=np.float32)
    return labels, scores


_signature_for = signature_for  # the name grpc_service.py first used
