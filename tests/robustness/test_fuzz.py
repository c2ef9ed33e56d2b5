"""Property-based fuzzing (Hypothesis, derandomized so every run tries the same cases): the default codecs and
the HTTP surface of a real server. Whatever arrives, a codec either decodes or raises a mapped serving error,
and the server answers with a status and, for every error, the JSON error body; no worker dies."""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smserve import codecs
from smserve.errors import ServingError, UnsupportedFormatError

from ..contract.core_scripts import ONE_WORKER, echo_dir, still_serves

pytestmark = pytest.mark.once  # family-independent mechanics (pyproject markers)

CODEC_TYPES = [codecs.JSON, codecs.CSV, codecs.NPY, codecs.NPZ, codecs.JSONLINES]
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck),
                max_examples=600)  # 5 properties x 600 cases a run

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=40)


def decodes_or_refuses(body, content_type):
    try:
        codecs.decode(body, content_type)
    except (ServingError, UnsupportedFormatError):
        pass  # a mapped 4xx/5xx with a message; anything else would be an unmapped 500


@FUZZ
@given(body=st.binary(max_size=2000), content_type=st.sampled_from(CODEC_TYPES))
def test_codecs_on_arbitrary_bytes(body, content_type):
    decodes_or_refuses(body, content_type)


@FUZZ
@given(value=json_values)
def test_codecs_on_arbitrary_json(value):
    text = json.dumps(value)
    decodes_or_refuses(text, codecs.JSON)
    decodes_or_refuses(text + "\n" + text, codecs.JSONLINES)


@FUZZ
@given(rows=st.lists(st.lists(st.text(alphabet="0123456789.-eE+naif, \"'x", max_size=8), min_size=1, max_size=5),
                     min_size=1, max_size=20))
def test_codecs_on_csv_like_text(rows):
    decodes_or_refuses("\n".join(",".join(row) for row in rows), codecs.CSV)


@FUZZ
@given(prefix=st.binary(max_size=200), shape=st.lists(st.integers(0, 10**12), max_size=4),
       dtype=st.sampled_from(["<f8", "<i4", "|O", "<U3", "|V16", ">f2", "<c16"]))
def test_codecs_on_npy_with_arbitrary_headers(prefix, shape, dtype):
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + prefix
    decodes_or_refuses(body, codecs.NPY)


# ---------------------------------------------------------------- the HTTP surface of a real server

@pytest.fixture(scope="module")
def echo(module_servers, tmp_path_factory):
    return module_servers(echo_dir(tmp_path_factory.mktemp("fuzz-echo")), ONE_WORKER)


token = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~",
                min_size=1, max_size=12)
header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                       max_size=40)
paths = st.one_of(st.sampled_from(["/invocations", "/ping", "/metrics", "/execution-parameters",
                                   "/models/model/invoke", "/predictions/model"]),
                  st.text(alphabet="abc/%09AZ.-~_?=&", max_size=30).map(lambda p: "/" + p))


def http_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


@FUZZ
@given(method=st.one_of(st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS"]), token),
       path=paths, headers=st.lists(st.tuples(token, header_value), max_size=5),
       content_type=st.one_of(st.none(), st.sampled_from(CODEC_TYPES + ["text/plain", "application/json; charset=latin-1"]),
                              header_value),
       accept=st.one_of(st.none(), st.sampled_from(["*/*", "application/json", "text/csv", "application/x-npy"]),
                        header_value),
       body=st.binary(max_size=300))
def test_http_surface(echo, method, path, headers, content_type, accept, body):
    lines = [f"{method} {path} HTTP/1.1", "Host: fuzz", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers
              if name.lower() not in ("host", "connection", "content-length", "transfer-encoding")]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if accept is not None:
        lines.append(f"Accept: {accept}")
    raw = http_exchange(echo.port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 "), raw[:200]
    status = int(status_line.split()[1])
    assert 100 <= status < 600
    if status >= 400 and method != "HEAD":
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        assert fields[b"content-type"] == b"application/json", raw[:300]
        error = json.loads(payload)
        assert error["code"] == status and error["request_id"], error


def test_no_worker_died_under_the_fuzz(echo):
    """Runs after the HTTP fuzz in this module: the one worker it started with is still the one serving."""
    assert len(echo.worker_pids()) == 1 if echo.proc is not None else True
    assert "worker 0 exited" not in echo.logs()
    still_serves(echo)
