"""The handler path of bench/run_tensorflow.py: the thinnest input_handler/output_handler pair, so the cell
measures what running handler code costs (the Context, the HTTP call to the backend, the handler result), not
the handler's own work. The body is already TF Serving's {"instances": ...}; the answer is the backend's body."""


def input_handler(data, context):
    return data.read().decode("utf-8")


def output_handler(response, context):
    return response.content, "application/json"
