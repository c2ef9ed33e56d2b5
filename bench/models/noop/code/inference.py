"""No-op benchmark handler: doubles a JSON list. Same file under smserve and the MMS peer."""
import json


def model_fn(model_dir):
    return 2


def input_fn(body, content_type):
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    return json.loads(body)


def predict_fn(data, model):
    return [x * model for x in data]


def output_fn(prediction, accept):
    return json.dumps(prediction)
