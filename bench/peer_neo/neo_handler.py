"""The per-request DLR work of AWS's xgboost-neo and image-classification-neo handlers, written as
sagemaker-inference hooks (model_fn, input_fn, predict_fn, output_fn) for the Neo benchmark peer.

The peer is the stock toolkit path of `make bench`: bench/peer_mms/serve.py starts Multi Model Server through
sagemaker-inference's start_model_server with bench/peer_mms/bench_handler_service.py (a Transformer); the
Transformer imports this module as the user module (SAGEMAKER_PROGRAM=neo_handler.py, bench/peer_neo on
PYTHONPATH) and calls the four hooks, so every request goes through MMS's Java frontend, its worker protocol and
the toolkit, then the work below. bench/run_neo.py also calls these functions in-process for the floor, with
the Neo family's venv (same dlr, numpy and Pillow versions as smserve's).

What each app does per request (neo.md §5.1, §5.2; the logic of AWS's neo_template_xgboost.py and
neo_template_image_classification.py):
  xgboost  text/csv: right-strip, split lines, delimiter sniffed on the first line by csv.Sniffer, float32
           matrix -> DLRModel.run(matrix) -> output [rows, 1] as one row -> numpy.savetxt(delimiter=",") text/csv
  image    image/jpeg, image/png, application/x-image: Pillow open, convert("RGB"), resize((shape[2], shape[3]))
           -> uint8 HWC -> CHW -> [1, 3, H, W] -> DLRModel.run({input: pixels}) -> json.dumps(squeeze(out0))
The app follows the model directory: model-shapes.json with a 4-dimensional last shape -> image, else xgboost.
LibSVM input is not implemented (the benchmark sends CSV). Nothing here imports the toolkit, and dlr is imported
only after its telemetry switch has been checked (neo/venv-setup.py writes it at venv set-up).
"""
import csv
import importlib.util
import io
import json
import os

import numpy as np

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
IMAGE_SIZE = [224, 224]  # (shape[2], shape[3]) of the image model loaded last: one model per MMS worker, as in AWS


class NeoModel:
    def __init__(self, dlr_model, shape):
        self.dlr = dlr_model
        self.shape = shape  # [1, C, H, W] for the image app, None for xgboost
        self.input_name = dlr_model.get_input_names()[0] if shape else None


def telemetry_off():
    """True when dlr/counter/ccm_config.json (found without importing dlr) turns phone-home off."""
    spec = importlib.util.find_spec("dlr")
    if spec is None or not spec.submodule_search_locations:
        return False
    path = os.path.join(list(spec.submodule_search_locations)[0], "counter", "ccm_config.json")
    try:
        with open(path) as f:
            return json.load(f).get("enable_phone_home", True) is False
    except (OSError, ValueError, AttributeError):
        return False


def image_shape(model_dir):
    path = os.path.join(model_dir, "model-shapes.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        shape = list(json.load(f)[-1]["shape"])
    return [1] + shape[1:] if len(shape) == 4 else None


def model_fn(model_dir):
    if not telemetry_off():
        raise RuntimeError("DLR telemetry is not off in this venv: run neo/venv-setup.py with its python first")
    from dlr import DLRModel

    shape = image_shape(model_dir)
    if shape:
        IMAGE_SIZE[:] = shape[2:]
    return NeoModel(DLRModel(model_dir, "cpu", 0), shape)


def input_fn(input_data, content_type):
    if content_type in IMAGE_TYPES:
        return "image", image_pixels(input_data)
    if content_type == "text/csv":
        return "xgboost", csv_matrix(input_data)
    raise ValueError("ClientError: Invalid content type %r" % content_type)


def csv_matrix(text):
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    lines = text.rstrip().split("\n")
    try:
        delimiter = csv.Sniffer().sniff(lines[0]).delimiter
    except csv.Error:
        delimiter = ","
    return np.array([line.split(delimiter) for line in lines], dtype=np.float32)


def image_pixels(body):
    from PIL import Image

    image = Image.open(io.BytesIO(body)).convert("RGB").resize(tuple(IMAGE_SIZE))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)[np.newaxis, ...]


def predict_fn(data, model):
    kind, array = data
    if kind == "image":
        return kind, model.dlr.run({model.input_name: array})
    return kind, model.dlr.run(array)


def output_fn(prediction, accept):
    kind, outputs = prediction
    if kind == "image":
        return json.dumps(np.squeeze(outputs[0]).tolist()), "application/json"
    out = np.asarray(outputs[0])
    if out.ndim == 2 and out.shape[1] == 1:
        out = out.reshape(1, -1)
    buffer = io.StringIO()
    np.savetxt(buffer, out, delimiter=",")
    return buffer.getvalue(), "text/csv"
