"""Dynamic batching (smserve/batching.py; SMSERVE_BATCH_SIZE, SMSERVE_BATCH_DELAY_MS): concurrent requests with
equal per-item shapes merged along dimension 0 into one predict call, each caller getting exactly its own rows.

The user module's predict_fn is marked batch_aware. It answers each row doubled plus, in a last column, the number
of rows of the call that computed it, so a test sees whether its request was merged. A row of -1 makes predict
raise; the running total of predicted rows comes back in the `X-Rows-Predicted` header.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from ..harness import Server
from ..models import make_dir, write_code

BATCHING = '''
import json
import threading
import time

import numpy as np

PREDICTED = [0]
LOCK = threading.Lock()


def model_fn(model_dir):
    return "batching-model"


def input_fn(body, content_type):
    payload = json.loads(body)
    if payload.get("fail_input"):
        raise ValueError("this input cannot be decoded (on purpose)")
    return np.asarray(payload["rows"], dtype=np.float64)


def predict_fn(data, model, context):
    time.sleep(0.05)  # a model call that costs more than merging the inputs
    if (data == -1).any():
        raise ValueError("a row of -1 cannot be predicted")
    with LOCK:
        PREDICTED[0] += data.shape[0]
    return np.concatenate([data * 2, np.full((data.shape[0], 1), data.shape[0])], axis=1)


predict_fn.batch_aware = True


def output_fn(prediction, accept, context):
    context.set_response_header(0, "X-Rows-Predicted", str(PREDICTED[0]))
    return json.dumps(prediction.tolist()), "application/json"
'''

BATCH = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMSERVE_BATCH_SIZE": "16", "SMSERVE_BATCH_DELAY_MS": "50"}


@pytest.fixture(scope="module")
def batching(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("batching"))
    write_code(model_dir, BATCHING)
    return module_servers(model_dir, BATCH)


def _rows(client: int, count: int, width: int = 4) -> list[list[float]]:
    return [[client * 100.0 + row * 10 + column for column in range(width)] for row in range(count)]


def _post(server: Server, payload: dict, timeout: float = 60) -> requests.Response:
    return requests.post(server.url + "/invocations", data=json.dumps(payload), timeout=timeout,
                         headers={"Content-Type": "application/json", "Accept": "application/json"})


def _concurrently(count: int, call) -> list:
    results: list = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = call(index)
        except Exception as exc:  # noqa: BLE001 - reported by the assertions
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _check_own_rows(response: requests.Response, rows: list[list[float]]) -> int:
    """The answer is exactly this request's rows, doubled; returns the size of the call that computed it."""
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [line[:-1] for line in answer] == [[2 * v for v in row] for row in rows]
    sizes = {line[-1] for line in answer}
    assert len(sizes) == 1
    return int(sizes.pop())


def test_batching_64_concurrent_clients_each_get_exactly_their_rows(batching):
    """64 clients at once, 1–3 rows each: every answer holds the client's own rows, at least one call merged
    several requests, and no call exceeded SMSERVE_BATCH_SIZE rows."""
    counts = [1 + i % 3 for i in range(64)]
    responses = _concurrently(64, lambda i: _post(batching, {"rows": _rows(i, counts[i])}))
    sizes = [_check_own_rows(response, _rows(i, counts[i])) for i, response in enumerate(responses)]
    assert max(sizes) > 3, f"no request was merged with another: call sizes {sorted(set(sizes))}"
    assert max(sizes) <= 16


def test_batching_mixed_shapes_are_batched_apart(batching):
    """Requests whose rows have 3 and 4 columns at the same time: each merged only with its own shape."""
    widths = [3 if i % 2 else 4 for i in range(24)]
    responses = _concurrently(24, lambda i: _post(batching, {"rows": _rows(i, 2, widths[i])}))
    for i, response in enumerate(responses):
        _check_own_rows(response, _rows(i, 2, widths[i]))


def test_batching_a_failing_item_fails_alone(batching):
    """One request whose row makes predict raise, one whose input_fn raises, 14 good ones at the same time: the
    two get their own errors (a user hook's ValueError is a 500 with its message, core §11), the 14 their rows, and the server
    serves the next request."""
    def call(i: int) -> requests.Response:
        if i == 0:
            return _post(batching, {"rows": [[-1.0, 0.0, 0.0, 0.0]]})
        if i == 1:
            return _post(batching, {"fail_input": True})
        return _post(batching, {"rows": _rows(i, 1)})

    responses = _concurrently(16, call)
    assert responses[0].status_code == 500 and "a row of -1" in responses[0].json()["message"]
    assert "Traceback" not in responses[0].text
    assert responses[1].status_code == 500 and "cannot be decoded" in responses[1].json()["message"]
    for i in range(2, 16):
        _check_own_rows(responses[i], _rows(i, 1))
    _check_own_rows(_post(batching, {"rows": _rows(99, 1)}), _rows(99, 1))


def test_batching_cancelled_clients_do_not_disturb_the_batch(batching):
    """8 clients send a request and close the connection at once, 8 others wait for their answers: the waiting
    ones get their own rows and the server keeps serving."""
    def call(i: int):
        payload = json.dumps({"rows": _rows(i, 1)}).encode()
        if i % 2:
            return _post(batching, {"rows": _rows(i, 1)})
        with socket.create_connection(("127.0.0.1", batching.port), timeout=10) as sock:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        return None

    responses = _concurrently(16, call)
    for i in range(1, 16, 2):
        _check_own_rows(responses[i], _rows(i, 1))
    _check_own_rows(_post(batching, {"rows": _rows(98, 1)}), _rows(98, 1))


def test_batching_deadline_holds_per_request(serve, tmp_path):
    """SMSERVE_BATCH_SIZE=2 with a 1-s deadline and 0.6-s predict calls: of 8 requests sent at once the first
    batch answers 200, requests still waiting when their deadline passes get 504 at about 1 s (not when the queue
    would reach them), and are left out of later batches: the server predicts fewer rows than were sent."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, BATCHING.replace("time.sleep(0.05)", "time.sleep(0.6)"))
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMSERVE_BATCH_SIZE": "2",
                               "SMSERVE_BATCH_DELAY_MS": "20", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "1",
                               "SMSERVE_WORKER_THREADS": "16"})  # all 8 reach the batcher, none waits for a thread

    def call(i: int):
        started = time.monotonic()
        response = _post(server, {"rows": _rows(i, 1)})
        return response, time.monotonic() - started

    results = _concurrently(8, call)
    statuses = sorted(response.status_code for response, _ in results)
    assert 200 in statuses and 504 in statuses, statuses
    assert set(statuses) <= {200, 504}
    for i, (response, seconds) in enumerate(results):
        if response.status_code == 504:
            assert seconds < 2.5, seconds
        else:
            _check_own_rows(response, _rows(i, 1))
    time.sleep(1.5)  # every batch that could still run has run
    last = _post(server, {"rows": _rows(50, 1)})
    _check_own_rows(last, _rows(50, 1))
    assert int(last.headers["X-Rows-Predicted"]) < 8 + 1


def test_batching_not_batch_aware_predict_is_called_per_request(serve, tmp_path):
    """A predict_fn without `batch_aware` is never given merged inputs: each call sees one request's rows, and
    the log says why SMSERVE_BATCH_SIZE has no effect."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, BATCHING.replace("predict_fn.batch_aware = True", ""))
    server = serve(model_dir, BATCH)
    responses = _concurrently(16, lambda i: _post(server, {"rows": _rows(i, 2)}))
    assert {_check_own_rows(response, _rows(i, 2)) for i, response in enumerate(responses)} == {2}
    assert "SMSERVE_BATCH_SIZE=16 has no effect: predict_fn is not batch-aware" in server.logs()


@pytest.mark.parametrize("variable,value", [("SMSERVE_BATCH_SIZE", "0"), ("SMSERVE_BATCH_SIZE", "eight"),
                                            ("SMSERVE_BATCH_DELAY_MS", "-1"), ("SMSERVE_BATCH_DELAY_MS", "soon")])
def test_batching_bad_settings_stop_with_the_variable_named(serve, tmp_path, variable, value):
    """A bad batching variable stops the server at start with exit status 2 and names the variable."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, BATCHING)
    server = serve(model_dir, {**BATCH, variable: value}, ready=False)
    assert server.wait_exit(60) == 2
    assert variable in server.logs()
