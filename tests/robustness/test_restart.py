"""A worker that replaces one that died takes traffic only once its model is loaded (issue 12 finding)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from ..harness import TARGET
from ..models import make_dir, write_code

pytestmark = [pytest.mark.once, pytest.mark.skipif(TARGET != "host", reason="kills a worker process by pid")]

# The two boot workers load at once; any later load (a replacement) takes 3 s.
SLOW_REPLACEMENT = '''
import os
import time


def model_fn(model_dir):
    record = os.environ["TEST_LOAD_RECORD"]
    loads_before = len(open(record).read()) if os.path.exists(record) else 0
    with open(record, "a") as f:
        f.write("x")
    if loads_before >= 2:
        time.sleep(3)
    return None


def transform_fn(model, body, content_type, accept):
    return str(os.getpid()), "text/plain"
'''


def test_a_replacement_worker_answers_nothing_until_its_model_is_loaded(serve, tmp_path):
    """Found: a worker restarted after a crash accepted connections on its own listener while loading and
    answered them 503 NotReady, although /ping (answered by the others) stayed 200."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, SLOW_REPLACEMENT)
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                               "TEST_LOAD_RECORD": str(tmp_path / "loads")})
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    # connections the kernel queued on the dying worker's own listener are reset with it (they count as its
    # in-flight requests); traffic from here on is what the replacement must not take while it loads
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{victim}") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    statuses, pids = [], set()
    started = time.monotonic()
    while time.monotonic() - started < 5 and len(statuses) < 400:  # covers the replacement's 3 s load
        response = requests.post(server.url + "/invocations", data="x", timeout=10)  # a fresh connection each
        statuses.append(response.status_code)
        pids.add(response.text)
        time.sleep(0.01)
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert str(victim) not in pids
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200
