"""Neo example script: AWS's BYOM contract. neo_preprocess turns the request into the model's input,
neo_postprocess turns DLR's output into the answer; smserve runs DLR between them."""

import json

import numpy as np

LABELS = ("setosa", "versicolor", "virginica")


def neo_preprocess(payload, content_type):
    # payload is already parsed for exactly application/json; str for text/*; bytes otherwise
    if content_type == "text/csv":
        payload = [[float(v) for v in line.split(",")] for line in payload.strip().splitlines()]
    elif isinstance(payload, (bytes, str)):
        payload = json.loads(payload)
    return np.asarray(payload, dtype="float32").reshape(1, 4)


def neo_postprocess(result):
    scores = np.asarray(result).reshape(-1)
    best = int(scores.argmax())
    return json.dumps({"label": LABELS[best], "scores": [round(float(v), 6) for v in scores]}), "application/json"
