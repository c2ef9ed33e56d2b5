"""Hostile and careless input, each reproduced as it was found (issue 12) and answered: the server keeps a
closed set of metrics labels, one log line per request, a request id on every answer, a payload limit it reports
truthfully, and a 4xx for a charset that is no text encoding. Real servers, real HTTP."""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

from smserve.families import resolve_family

from ..contract.core_scripts import GOOD, ONE_WORKER, echo_dir, error, still_serves
from ..harness import FAMILY, TARGET
from ..models import make_dir, write_code

pytestmark = pytest.mark.once  # family-independent mechanics (pyproject markers)

ROUTE_LABELS = {"/invocations", "/execution-parameters", "/metrics", "/models/{name}/invoke", "/predictions/{name}",
                "unmatched"}


@pytest.fixture(scope="module")
def echo(module_servers, tmp_path_factory):
    return module_servers(echo_dir(tmp_path_factory.mktemp("echo")), ONE_WORKER)


def route_labels(metrics_text: str) -> set[str]:
    return set(re.findall(r'^smserve_\w+\{[^}]*route="([^"]*)"', metrics_text, re.M))


def test_unknown_paths_do_not_grow_metrics(echo):
    """Found: 3,000 requests to random paths grew /metrics from 21 KB to 11.6 MB (each path a label value)."""
    for _ in range(2):
        echo.get(f"/{uuid.uuid4().hex}")  # the labels of the unmatched route exist before the measurement
    before = len(echo.get("/metrics").content)
    for i in range(300):
        path = (f"/{uuid.uuid4().hex}", f"/models/{uuid.uuid4().hex}/invoke", f"/predictions/{uuid.uuid4().hex}")[i % 3]
        assert echo.request("POST", path, data="[1]").status_code == 404
    time.sleep(0.2)  # observations are written every 50 ms
    text = echo.get("/metrics").text
    assert route_labels(text) <= ROUTE_LABELS, route_labels(text) - ROUTE_LABELS
    assert len(text) - before < 20_000, f"/metrics grew by {len(text) - before} bytes"
    still_serves(echo)


@pytest.mark.skipif(TARGET != "host", reason="reads the server's log file")
def test_a_newline_in_the_path_cannot_forge_a_log_line(echo):
    """Found: `%0A` in the path wrote a second, forged line into the text log."""
    forged = "2026-01-01T00:00:00.000Z INFO access[1] GET /admin 200"
    response = requests.get(echo.url + "/x%0A" + forged.replace(" ", "%20"), timeout=10)
    assert response.status_code == 404
    time.sleep(0.5)  # the access log is flushed every 0.2 s
    lines = echo.logs().splitlines()
    assert not [line for line in lines if line.startswith(forged)], "a forged log line was written"
    assert [line for line in lines if "access[" in line and "/x\\n2026-01-01" in line], "no escaped access line"


@pytest.mark.parametrize("method, path", [("GET", "/ping"), ("GET", "/metrics"), ("GET", "/execution-parameters"),
                                          ("POST", "/invocations"), ("GET", "/nowhere")])
def test_every_answer_carries_a_request_id(echo, method, path):
    """Found: /ping, /metrics and /execution-parameters answered without X-Request-Id."""
    response = echo.request(method, path, data=GOOD, headers={"Content-Type": "application/json"})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers.get("X-Request-Id", "")), response.headers
    response = echo.request(method, path, data=GOOD, headers={"Content-Type": "application/json",
                                                                "X-Request-Id": "trace-1234"})
    assert response.headers.get("X-Request-Id") == "trace-1234"


def test_execution_parameters_report_the_limit_that_is_enforced(serve, tmp_path):
    """Found: with TS_MAX_REQUEST_SIZE=1000000 /execution-parameters still said 6 MB, and a 2 MB body got 413."""
    variable = f"{resolve_family(FAMILY).env.legacy_prefix}_MAX_REQUEST_SIZE"
    server = serve(echo_dir(tmp_path), {**ONE_WORKER, variable: "3000000"})
    reported = server.get("/execution-parameters").json()["MaxPayloadInMB"]
    assert reported == 2, reported  # whole MiB that fit in 3,000,000 bytes
    body = "[" + ",".join(["0.5"] * (reported * 1_048_576 // 4 - 1)) + "]"
    assert len(body) <= reported * 1_048_576
    assert server.post(data=body).status_code == 200
    error(server.post(data=body + " " * 1_000_000), 413)


def test_a_charset_that_is_no_text_encoding_is_415(echo):
    """Found: `Content-Type: application/json; charset=rot13` answered 500 (the codec exists, but is no text
    encoding)."""
    for charset in ("rot13", "base64", "zlib"):
        body = error(echo.post(data=GOOD, content_type=f"application/json; charset={charset}"), 415)
        assert charset in body["message"]
    still_serves(echo)


def test_a_graceful_timeout_below_one_second_is_not_zero():
    """Found: SMSERVE_GRACEFUL_TIMEOUT=0.5 became 0 for uvicorn's connection drain (int() of the seconds)."""
    from smserve.config import load_settings
    from smserve.protocol import Guard
    from smserve.worker import uvicorn_config

    settings = load_settings({"SMSERVE_GRACEFUL_TIMEOUT": "0.5"}, family=FAMILY)
    assert settings.graceful_timeout == 0.5
    assert uvicorn_config(settings, None, Guard(settings, None)).timeout_graceful_shutdown == 1


HEADER_SETTER = '''
def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept, context):
    case = context.get_request_header(0, "X-Case")
    context.set_response_header(0, "X-Good", "kept")
    if case == "nul":
        context.set_response_header(0, "X-Nul", "a\\x00b")
    elif case == "euro":
        context.set_response_header(0, "X-Euro", "5 \\u20ac")
    elif case == "name":
        context.set_response_header(0, "Bad Name", "x")
    elif case == "content-type":
        return "body", "text/plain; charset=\\u20ac"
    return "body", "text/plain"
'''


@pytest.fixture(scope="module")
def header_setter(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("headers"))
    write_code(model_dir, HEADER_SETTER)
    return module_servers(model_dir, ONE_WORKER)


@pytest.mark.parametrize("case", ["nul", "euro", "name"])
def test_a_header_that_cannot_be_sent_is_dropped_not_the_answer(header_setter, case):
    """Found: a hook header value with NUL or a non-latin-1 character gave an empty reply or a plain-text 500.
    The answer is sent without that header (and with the others); the log says which header and why."""
    server = header_setter
    response = server.post(data="x", content_type="text/plain", headers={"X-Case": case})
    assert response.status_code == 200 and response.text == "body", response.text
    assert response.headers["X-Good"] == "kept"
    assert not {"X-Nul", "X-Euro", "Bad Name"} & set(response.headers)
    if TARGET == "host":
        time.sleep(0.3)
        assert "dropping response header" in server.logs()
    response = server.post(data="x", content_type="text/plain", headers={"X-Case": "content-type"})
    body = error(response, 500, "EncodeError")
    assert "content type" in body["message"] and response.headers["X-Request-Id"] == body["request_id"]
    assert server.post(data="x", content_type="text/plain").text == "body"
