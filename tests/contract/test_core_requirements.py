"""core.md §6 (requirements.txt), isolation (issue 12, docs/security.md "Requirements isolation"): a user's
code/requirements.txt never modifies the image's environment, installs as a non-root user on a read-only root
filesystem, and its versions win inside the workers, also for packages the server itself uses.

Found before: a pin of a package the image has made pip uninstall the image's copy first (gone from the venv as
root; exit 3 as non-root or read-only), and the supervisor imported click, numpy, orjson and uvicorn before
forking the workers, so pins of those never took effect in the workers.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from ..harness import TARGET
from ..models import make_dir, write_code

# click is one of the server's own dependencies (8.5.1 in every image); 8.1.7 is an older release on PyPI.
IMAGE_CLICK, PINNED_CLICK = "8.5.1", "8.1.7"
NON_ROOT_READ_ONLY = ("--user", "1000:1000", "--read-only", "--tmpfs", "/tmp")  # pure Python: noexec is fine

REPORT_IMPORTS = '''
import json

import click


def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept):
    return json.dumps({"click": click.__version__, "click_file": click.__file__}), "application/json"
'''


def ping_until_ready(server, timeout: float) -> list[int]:
    """/ping's answers from the start until 200; every one must be an answer (503 or 200), none a hang."""
    statuses: list[int] = []
    end = time.monotonic() + timeout
    while (not statuses or statuses[-1] != 200) and time.monotonic() < end:
        assert server.poll() is None, server.logs()
        try:
            statuses.append(requests.get(server.url + "/ping", timeout=5).status_code)
        except requests.ConnectionError:
            if statuses:
                raise
        time.sleep(0.1)
    assert statuses and statuses[-1] == 200 and set(statuses) <= {200, 503}, (statuses[-5:], server.logs())
    return statuses


def image_click_version() -> str:
    """click as the image's (or the test environment's) own metadata says, read in a fresh interpreter."""
    probe = "import importlib.metadata as m, click; print(m.version('click'), click.__file__)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout


def test_core_6_requirements_win_in_workers_and_leave_the_image_untouched(serve, tmp_path):
    """§6: code/requirements.txt pins click (a package the image has, which the server itself uses) to another
    version. The container runs as user 1000 with a read-only root filesystem. The worker's user code imports
    the pinned click from the install overlay, and the image's own click is still installed, unchanged (the
    supervisor's own imports: tests/unit/test_cli.py; its numpy after a numpy pin: the PyTorch family test)."""
    before = image_click_version() if TARGET == "host" else None
    model_dir = make_dir(tmp_path)
    write_code(model_dir, REPORT_IMPORTS)
    write_code(model_dir, f"click=={PINNED_CLICK}\n", name="requirements.txt")
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMSERVE_SKIP_REQUIREMENTS": ""},
                   docker_args=NON_ROOT_READ_ONLY, ready=False)
    assert ping_until_ready(server, 240)[0] == 503  # the stand-in answers while pip runs
    response = server.post(data="{}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["click"] == PINNED_CLICK, body
    assert "/smserve-" in body["click_file"] and "/requirements/" in body["click_file"], body
    if TARGET == "host":
        assert image_click_version() == before  # the test environment is the "image" of the host target
        assert before.startswith(IMAGE_CLICK + " ")


@pytest.mark.skipif(TARGET != "container", reason="a noexec /tmp is docker's --tmpfs default; the host's allows exec")
def test_core_6_compiled_requirements_on_a_noexec_tmp_stop_with_the_fix(serve, tmp_path):
    """§6: docker's `--tmpfs /tmp` is mounted noexec, where compiled modules cannot be loaded. Instead of workers
    failing with "failed to map segment from shared object", the install stops with exit status 3 and says how
    to mount /tmp."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, REPORT_IMPORTS)
    write_code(model_dir, "markupsafe==2.1.5\n", name="requirements.txt")  # ships a compiled _speedups module
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMSERVE_SKIP_REQUIREMENTS": ""},
                   docker_args=("--user", "1000:1000", "--read-only", "--tmpfs", "/tmp"), ready=False)
    status, logs = server.wait_failed_start(240)
    assert status == 3, logs
    assert "noexec" in logs and "--tmpfs /tmp:exec" in logs, logs
