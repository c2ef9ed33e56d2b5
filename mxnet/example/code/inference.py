"""Example user script for the MXNet image: the default model loading (a Module checkpoint:
model-symbol.json, model-0000.params, model-shapes.json), the default input_fn and predict_fn, and an
output_fn that turns the softmax scores into labels."""
import json

LABELS = ("setosa", "versicolor", "virginica")


def output_fn(prediction, accept):
    scores = prediction.asnumpy()
    return json.dumps([{"label": LABELS[int(row.argmax())], "scores": [round(float(s), 6) for s in row]}
                       for row in scores]), "application/json"
