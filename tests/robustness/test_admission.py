"""The request deadline runs from the end of the headers and covers reading the body; a full worker refuses a
request before reading its body (issue 12 findings). Raw sockets against a real server."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from ..contract.core_scripts import ONE_WORKER
from ..models import make_dir, write_code
from .test_transport import json_error, read_answer

pytestmark = pytest.mark.once  # family-independent mechanics (pyproject markers)

SLEEPER = '''
import time


def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept, context):
    time.sleep(float(context.get_request_header(0, "X-Sleep") or 0))
    return "done", "text/plain"
'''


@pytest.fixture(scope="module")
def sleeper(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("sleeper"))
    write_code(model_dir, SLEEPER)
    return module_servers(model_dir, {**ONE_WORKER, "SAGEMAKER_MODEL_SERVER_TIMEOUT": "2",
                                      "SMSERVE_WORKER_THREADS": "1", "SMSERVE_MAX_QUEUE": "0"})


def test_the_deadline_covers_reading_the_body(sleeper):
    """Found: a body trickled over 6 s got its 504 only after 6 s, with a 2 s deadline."""
    sock = socket.create_connection(("127.0.0.1", sleeper.port), timeout=10)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n")
    started = time.monotonic()
    sock.setblocking(False)
    answer = b""
    while time.monotonic() - started < 6 and not answer:
        try:
            sock.send(b"x")
            answer = sock.recv(65536)
        except BlockingIOError:
            time.sleep(0.25)
        except OSError:
            break
    elapsed = time.monotonic() - started
    sock.setblocking(True)
    sock.settimeout(5)
    answer += read_answer(sock)
    sock.close()
    assert json_error(answer, 504)["type"] == "DeadlineExceeded"
    assert elapsed < 3.5, f"504 after {elapsed:.1f} s with a 2 s deadline"
    assert requests.post(sleeper.url + "/invocations", data="x", timeout=10).text == "done"


def test_a_full_worker_refuses_before_reading_the_body(sleeper):
    """Found: bodies were read before admission control, so a full worker kept reading (and holding) them.
    With room for one request, a second one is refused 503 at once although its body never comes."""
    busy = threading.Thread(target=requests.post, args=(sleeper.url + "/invocations",),
                            kwargs={"data": "x", "headers": {"X-Sleep": "1.5"}, "timeout": 10})
    busy.start()
    time.sleep(0.3)
    sock = socket.create_connection(("127.0.0.1", sleeper.port), timeout=5)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    started = time.monotonic()
    answer = read_answer(sock)
    sock.close()
    assert json_error(answer, 503)["type"] == "Overloaded"
    assert time.monotonic() - started < 1.0
    busy.join()
    assert requests.post(sleeper.url + "/invocations", data="x", timeout=10).text == "done"
