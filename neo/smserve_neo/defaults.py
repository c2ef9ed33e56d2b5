"""Default hooks on DLR: the toolkit-hook mode (neo.md §6) and the generic app (§5.3) share them.

model_fn loads the model dir with DLR, input_fn decodes with the core codecs (NPZ → name → array), predict_fn
runs DLR and returns the single output or the list, output encoding follows Accept.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from smserve import codecs
from smserve.errors import NotAcceptable

from .runtime import Runtime


class NeoDefaults:
    supported_accept = (codecs.JSON, codecs.JSONLINES, codecs.CSV, codecs.NPY)

    def __init__(self, load_runtime: Callable[[], Runtime], input_shapes: dict | None = None):
        self.load_runtime = load_runtime
        self.input_shapes = input_shapes or {}

    def model_fn(self, model_dir: str) -> Any:
        return self.load_runtime()

    def prepare_model(self, model: Any, default_predict: bool) -> Any:
        return model

    def input_fn(self, body: Any, content_type: str | None) -> Any:
        if codecs.media_type(content_type)[0] == codecs.JSON and isinstance(body, str) and body.lstrip()[:1] == "{":
            value = codecs.parse_json(body)  # a JSON object: input name -> values (multi-input models)
            if isinstance(value, dict):
                return {str(name): np.asarray(values) for name, values in value.items()}
        decoded = codecs.decode(body, content_type)
        if isinstance(decoded, dict):
            return {name: np.asarray(array) for name, array in decoded.items()}
        if not isinstance(decoded, np.ndarray):  # a sparse NPZ
            decoded = codecs.dense(decoded, len(body))
        return codecs.as_float32(decoded, "Neo") if decoded.dtype.kind not in "biuf" else decoded

    def predict_fn(self, data: Any, model: Any) -> Any:
        rows = self._rows_for_batch_one(data, model)
        if rows:  # N rows for a model compiled for one: N runs, outputs stacked along dimension 0
            runs = [model.run(row) for row in rows]
            outputs = [np.concatenate(parts) for parts in zip(*runs)]
        else:
            outputs = model.run(data)  # an array goes to the first input, a dict by name (DLR's rule)
        return outputs[0] if len(outputs) == 1 else outputs

    def _rows_for_batch_one(self, data: Any, model: Any) -> list | None:
        if not isinstance(data, np.ndarray) or not isinstance(model, Runtime) or len(model.input_names) != 1:
            return None
        declared = self.input_shapes.get(model.input_names[0])
        if (not declared or declared[0] != 1 or data.ndim != len(declared) or data.shape[0] < 2
                or list(data.shape[1:]) != list(declared[1:])):
            return None
        return [data[i:i + 1] for i in range(data.shape[0])]

    def encode(self, prediction: Any, media_type: str) -> bytes:
        if isinstance(prediction, list) and media_type != codecs.JSON and len(prediction) > 1:
            raise NotAcceptable(f"the model has {len(prediction)} outputs: only application/json can carry several; "
                              f"ask for Accept: application/json")
        if isinstance(prediction, list) and len(prediction) == 1:
            prediction = prediction[0]
        return codecs.encode(prediction, media_type)

    def encode_object(self, value: Any) -> bytes | None:
        return None
