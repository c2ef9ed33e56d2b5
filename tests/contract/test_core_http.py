"""core.md §3 headers, §4 payload limits, §7.6 responses and §11 errors, through real HTTP.

Servers for the module: `probe` (user input_fn/predict_fn/output_fn driven by X-Probe), `echo` (the family's Echo
model, default codecs, default payload limit), `echo20` (SAGEMAKER_MAX_PAYLOAD_IN_MB=20) and `transform`
(transform_fn, SMSERVE_DEBUG=true). Every refused request is followed by a successful one on the same server.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from .core_scripts import BIG_RESPONSE_BYTES, GOOD, ONE_WORKER, echo_dir, error, still_serves, transform_dir

pytestmark = pytest.mark.once  # family-independent mechanics (pyproject markers)

DEFAULT_LIMIT = 6_553_500
CUSTOM = "X-Amzn-SageMaker-Custom-Attributes"


@pytest.fixture(scope="module")
def echo20(module_servers, tmp_path_factory):
    return module_servers(echo_dir(tmp_path_factory.mktemp("echo20")),
                          {**ONE_WORKER, "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"})


@pytest.fixture(scope="module")
def transform(module_servers, tmp_path_factory):
    return module_servers(transform_dir(tmp_path_factory.mktemp("transform")),
                          {**ONE_WORKER, "SMSERVE_DEBUG": "true"})


def probe_post(server, probe: str, accept: str | None = "application/json", headers: dict | None = None,
               **kwargs):
    return server.post(data=b"[1]", content_type="application/json", accept=accept,
                       headers={"X-Probe": probe, **(headers or {})}, **kwargs)


def json_body(size: int) -> bytes:
    """A valid JSON body for the Echo model of exactly `size` bytes (trailing whitespace is valid JSON)."""
    return GOOD.encode() + b" " * (size - len(GOOD))


def raw_exchange(port: int, head: bytes, chunks, timeout: float = 30) -> tuple[bytes, bool]:
    """Send a request on a raw socket (in a thread, so the answer is read while the body is still being sent)
    and read until the server closes the connection. Returns (bytes received, whether the server closed)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def sender():
        try:
            sock.sendall(head)
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:  # the server closed the connection while we were sending: expected after a 413
            pass

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    data, closed = b"", False
    try:
        while True:
            part = sock.recv(65536)
            if not part:
                closed = True
                break
            data += part
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    finally:
        thread.join(timeout)
        sock.close()
    return data, closed


def parse_response(data: bytes) -> tuple[int, dict, bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return status, headers, rest[:length]


# ---------------------------------------------------------------- §11.1 tracebacks

def test_core_19_no_traceback_unless_debug(probe, echo, transform):
    """core §21 item 19: error bodies never contain a traceback unless SMSERVE_DEBUG=true."""
    for response in (probe_post(probe, "valueerror"), echo.post(data="[[1,", content_type="application/json"),
                     echo.post(data=GOOD, content_type="application/json", accept="image/png")):
        assert response.status_code >= 400
        body = response.json()
        assert "traceback" not in body and "Traceback" not in response.text, response.text
    still_serves(echo)
    # the full traceback is always logged with the request id
    response = probe_post(probe, "valueerror", headers={"X-Request-Id": "tb-probe-1"})
    assert response.json()["request_id"] == "tb-probe-1"
    # SMSERVE_DEBUG=true adds "traceback"
    response = transform.post(data=b"x", content_type="text/plain", headers={"X-Probe": "raise"})
    body = error(response, 500, "ValueError")
    assert body["message"] == "transform failed on purpose"
    assert "Traceback" in body["traceback"] and "transform failed on purpose" in body["traceback"]
    assert transform.post(data=b"x", content_type="text/plain").status_code == 200


def test_core_19b_traceback_logged(probe):
    """core §11.1: the full traceback is always logged with the request id."""
    import time

    probe.post(data=b"[1]", content_type="application/json", headers={"X-Probe": "valueerror",
                                                                       "X-Request-Id": "tb-log-2"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logs = probe.logs()
        if "tb-log-2" in logs and "Traceback" in logs and "bad value 42" in logs:
            break
        time.sleep(0.1)
    logs = probe.logs()
    assert "tb-log-2" in logs and "Traceback" in logs and "bad value 42" in logs


# ---------------------------------------------------------------- §3 custom attributes

def test_core_22_hook_reads_custom_attributes_any_case(probe):
    """core §21 item 22: a hook reads X-Amzn-SageMaker-Custom-Attributes via context.get_request_header(0, name)
    in any letter case."""
    for sent_name in (CUSTOM, CUSTOM.lower(), "X-AMZN-SAGEMAKER-CUSTOM-ATTRIBUTES"):
        response = probe_post(probe, "attrs", headers={sent_name: "trace=1, k=v"})
        assert response.status_code == 200, response.text
        assert response.json()["custom_attributes"] == ["trace=1, k=v"] * 4
    response = probe_post(probe, "attrs")
    assert response.json()["custom_attributes"] == [None] * 4


def test_core_23_hook_sets_custom_attributes(probe):
    """core §21 item 23: a hook setting X-Amzn-SageMaker-Custom-Attributes on the response gets it returned;
    a value over 1024 characters is dropped (with a warning) and the request still succeeds."""
    response = probe_post(probe, "set-attr")
    assert response.status_code == 200, response.text
    assert response.headers[CUSTOM] == "trace=xyz,v=2"
    response = probe_post(probe, "set-attr-long")
    assert response.status_code == 200
    assert CUSTOM not in response.headers
    response = probe_post(probe, "attrs")
    assert CUSTOM not in response.headers


def test_core_24_target_model_header_never_routes(probe):
    """core §21 item 24 (§3): X-Amzn-SageMaker-Target-Model never changes which model answers: the single model
    answers whatever the header names, the hook sees the header in its context, and the model name in the path
    (not the header) decides a 404."""
    target = "X-Amzn-SageMaker-Target-Model"
    for path in ("/invocations", "/models/model/invoke", "/invocations?model_name=model"):
        response = probe.post(path=path, data=b"[1]", content_type="application/json",
                              headers={target: "other-model.tar.gz"})
        assert response.status_code == 200, (path, response.text)
        assert response.json()["target_model"] == "other-model.tar.gz"
    assert probe_post(probe, "raw").json()["target_model"] is None
    error(probe.post(path="/models/other/invoke", data=b"[1]", content_type="application/json",
                     headers={target: "model"}), 404, "ModelNotFound")
    still_serves(probe)


# ---------------------------------------------------------------- §4 payload limits

def test_core_30_default_payload_limit(echo):
    """core §21 item 30: a 6,553,501-byte body with no payload variable → 413 JSON; 6,553,500 bytes → accepted."""
    response = echo.post(data=json_body(DEFAULT_LIMIT), content_type="application/json", accept="application/json")
    assert response.status_code == 200, response.text[:500]
    assert response.json() == [[1.0, 2.0]]
    body = json_body(DEFAULT_LIMIT + 1)
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    data, closed = raw_exchange(echo.port, head, [body[i:i + 65536] for i in range(0, len(body), 65536)])
    status, headers, payload = parse_response(data)
    assert status == 413, data[:500]
    assert headers["content-type"].startswith("application/json")
    result = json.loads(payload)
    assert result["type"] == "PayloadTooLarge" and result["code"] == 413
    assert "6553500" in result["message"].replace(",", "") and "SAGEMAKER_MAX_PAYLOAD_IN_MB" in result["message"]
    assert closed, "the connection must be closed after a 413"
    still_serves(echo)
    # the same through requests: the answer is 413 (or the client sees the connection closed mid-upload)
    import requests

    try:
        response = echo.post(data=body, content_type="application/json")
        error(response, 413, "PayloadTooLarge")
    except requests.ConnectionError:
        pass
    still_serves(echo)


def test_core_31_max_payload_mb_20(echo20):
    """core §21 item 31: SAGEMAKER_MAX_PAYLOAD_IN_MB=20 accepts a 15 MiB body in every family (here the
    family's Echo model)."""
    response = echo20.post(data=json_body(15 * 1_048_576), content_type="application/json",
                           accept="application/json")
    assert response.status_code == 200, response.text[:500]
    assert response.json() == [[1.0, 2.0]]
    response = echo20.post(data=json_body(20 * 1_048_576), content_type="application/json",
                           accept="application/json")
    assert response.status_code == 200, response.text[:500]
    body = json_body(20 * 1_048_576 + 1)
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    data, closed = raw_exchange(echo20.port, head, [body[i:i + 1 << 20] for i in range(0, len(body), 1 << 20)])
    status, _, payload = parse_response(data)
    assert status == 413 and json.loads(payload)["type"] == "PayloadTooLarge"
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB" in json.loads(payload)["message"]
    still_serves(echo20)


def _chunked(total: int, piece: int = 65536):
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        yield b"%x\r\n" % size + b" " * size + b"\r\n"
        sent += size
    yield b"0\r\n\r\n"


def test_core_32_chunked_over_limit_413_and_close(echo):
    """core §21 item 32: a chunked body exceeding the limit → 413 and the connection closes."""
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    first = b"%x\r\n%s\r\n" % (len(GOOD), GOOD.encode())
    data, closed = raw_exchange(echo.port, head, [first, *_chunked(DEFAULT_LIMIT + 1_000_000)])
    status, headers, payload = parse_response(data)
    assert status == 413, data[:500]
    assert json.loads(payload)["type"] == "PayloadTooLarge"
    assert closed, "the connection must be closed after a 413"
    still_serves(echo)


def test_core_32b_chunked_under_limit_works(echo):
    """core §2.1: chunked request bodies work (requests sends a generator body chunked)."""
    def body():
        yield b"[[1.0, "
        yield b"2.0]]"
        yield b" " * 100_000
    response = echo.post(data=body(), content_type="application/json", accept="application/json")
    assert response.status_code == 200, response.text
    assert response.json() == [[1.0, 2.0]]


def test_core_33_20mb_response_intact(probe):
    """core §21 item 33: a 20 MB response (user output_fn) is returned intact by default."""
    expected = (bytes(range(256)) * (BIG_RESPONSE_BYTES // 256 + 1))[:BIG_RESPONSE_BYTES]
    response = probe_post(probe, "big", accept="application/octet-stream", timeout=120)
    assert response.status_code == 200
    assert len(response.content) == BIG_RESPONSE_BYTES and response.content == expected
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert int(response.headers["Content-Length"]) == BIG_RESPONSE_BYTES


# ---------------------------------------------------------------- §7.6 responses

def test_core_53_transform_fn_tuple_content_type(transform):
    """core §21 item 53: transform_fn returning (body, "text/plain") sets Content-Type text/plain."""
    response = transform.post(data=b"[1]", content_type="application/json", accept="application/json")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "hello str"
    response = transform.post(data=b"\x00\x01", content_type="application/octet-stream", accept="*/*")
    assert response.headers["Content-Type"] == "text/plain" and response.text == "hello bytes"


def test_core_54_bare_body_first_concrete_accept(probe):
    """core §21 item 54: output_fn returning a bare body yields Content-Type = first concrete type of Accept."""
    for accept, expected in [("text/plain, application/json", "text/plain"),
                             ("*/*, text/x-custom", "text/x-custom"),
                             ("image/*, application/json;q=0.2, text/html;q=0.5", "text/html"),
                             ("*/*", "application/json"),
                             (None, "application/json")]:
        headers = {"X-Probe": "bare"}
        if accept is None:
            headers["Accept"] = None
        response = probe.post(data=b"[1]", content_type="application/json", accept=accept, headers=headers)
        assert response.status_code == 200, response.text
        assert response.text == "plain body"
        assert response.headers["Content-Type"] == expected, accept


# ---------------------------------------------------------------- §11.3 exception mapping

def test_core_55_generic_toolkit_error(probe):
    """core §21 item 55: a hook raising GenericInferenceToolkitError(422, "x") → 422 with message `x`."""
    body = error(probe_post(probe, "generic422"), 422)
    assert body["message"] == "x" and body["type"] == "GenericInferenceToolkitError"
    assert probe_post(probe, "attrs").status_code == 200


def test_core_56_status_code_attribute(probe):
    """core §21 item 56: a custom exception with `status_code = 429` → 429."""
    body = error(probe_post(probe, "status429"), 429, "TooManyRequests")
    assert body["message"] == "slow down"
    assert probe_post(probe, "attrs").status_code == 200


def test_core_57_unsupported_format_error(probe):
    """core §21 item 57: UnsupportedFormatError raised in input_fn → 415; in output_fn → 406."""
    error(probe_post(probe, "ufe-input"), 415)
    error(probe_post(probe, "ufe-output"), 406)
    assert probe_post(probe, "attrs").status_code == 200


def test_core_58_value_error_500(probe):
    """core §21 item 58: a hook raising ValueError → 500, message = exception text, type `ValueError`."""
    body = error(probe_post(probe, "valueerror"), 500, "ValueError")
    assert body["message"] == "bad value 42"
    assert probe_post(probe, "attrs").status_code == 200


def test_core_59_context_set_response_status(probe):
    """core §21 item 59: `context.set_response_status(400, "bad")` in a hook → 400 (the hook's body is sent)."""
    response = probe_post(probe, "status400")
    assert response.status_code == 400
    assert response.json()["body"] == "[1]"
    assert probe_post(probe, "attrs").status_code == 200
