"""No-op benchmark handler for the MXNet row: doubles a JSON list like bench/models/noop, through transform_fn.

The AWS MXNet toolkit refuses a model_fn result that is neither a Module nor a Gluon Block unless the module
defines transform_fn (spec mxnet.md §6), so the four-hook no-op of bench/models/noop cannot run on the peer.
Same file under smserve and the peer."""
import json


def model_fn(model_dir):
    return 2


def double(data, model):
    return [x * model for x in data]


def transform_fn(model, body, content_type, accept):
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    return json.dumps(double(json.loads(body), model))
