"""Example user script for the PyTorch image: the default model loading (model.pt, TorchScript) and input
decoding, plus a custom output_fn that uses a package from code/requirements.txt (installed inside the
container at start-up)."""
import io
import json

import numpy as np
from tabulate import tabulate


def output_fn(prediction, accept):
    scores = prediction.detach().cpu().numpy() if hasattr(prediction, "detach") else np.asarray(prediction)
    if accept == "application/x-npy":
        buffer = io.BytesIO()
        np.save(buffer, scores, allow_pickle=False)
        return buffer.getvalue(), "application/x-npy"
    table = tabulate([[i, *row] for i, row in enumerate(scores.tolist())],
                     headers=["row", "class_0", "class_1"], floatfmt=".4f")
    return json.dumps({"scores": scores.tolist(), "table": table}), "application/json"
