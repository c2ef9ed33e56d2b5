"""core.md §5 (model dir, code dir, user module resolution, import path, layout validation), §6
(requirements.txt) and §21 checklist items 34–44.

User modules report where they came from through a transform_fn; startup failures are checked through the
exit status and the log. Tests that need the family's default model_fn build a real model with the
framework of this environment (core_scripts.default_model: PyTorch, a TorchScript MLP; MXNet, a Module
checkpoint) and are skipped for families without a builder.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
import requests

from ..harness import FAMILY, served_path
from ..models import make_dir, pack, write_code
from . import core_scripts

ONE = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}

REPORTER = '''
import json
import os
import sys

MARK = "{mark}"


def model_fn(model_dir):
    return {{"mark": MARK, "model_dir": model_dir}}


def transform_fn(model, body, content_type, accept):
    return json.dumps({{"mark": model["mark"], "module_file": __file__, "model_dir": model["model_dir"],
                       "cwd": os.getcwd()}}), "application/json"
'''

# A pure-Python distribution from the package index, not installed in any smserve image or test environment.
PYPI_PACKAGE, PYPI_VERSION, PYPI_MODULE = "text-unidecode", "1.3", "text_unidecode"
ABSENT_PACKAGE = "smserve-test-absent-package==1.0"


def reporter(mark: str) -> str:
    return REPORTER.format(mark=mark)


def report(server) -> dict:
    response = server.post(data="{}")
    assert response.status_code == 200, response.text
    return response.json()


def default_model(model_dir: Path):
    """Write a model the family default model_fn loads; return (request JSON, check(result))."""
    model = core_scripts.default_model(model_dir)
    return model.payload, model.check


def startup_failure(serve, model_dir: Path, env: dict, timeout: float = 60) -> tuple[int, str]:
    return serve(model_dir, env, ready=False).wait_failed_start(timeout)


# ------------------------------------------------------------------ §5.2 user module resolution

def test_core_34_code_inference_py_is_used(serve, tmp_path):
    """core §21 item 34 (§5.2 rule 1): code/inference.py is imported and its model_fn is used; workers run
    with cwd = model dir and model_fn receives the real model dir."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, reporter("from-code-dir"))
    body = report(serve(model_dir, ONE))
    assert body["mark"] == "from-code-dir"
    assert Path(body["module_file"]).resolve() == served_path(model_dir, model_dir / "code" / "inference.py")
    assert Path(body["model_dir"]).resolve() == served_path(model_dir)
    assert Path(body["cwd"]).resolve() == served_path(model_dir)


def test_core_35_inference_py_at_model_root_used_with_warning(serve, tmp_path):
    """core §21 item 35 (§5.2 rule 3, §5.4): inference.py at the model dir root is used, with a warning that
    names code/."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, reporter("from-model-root"), where="")
    server = serve(model_dir, ONE)
    assert report(server)["mark"] == "from-model-root"
    warnings = [line for line in server.logs().splitlines() if "WARNING" in line and "code/inference.py" in line]
    assert len(warnings) == 1, server.logs()
    assert str(model_dir / "inference.py") in warnings[0] or "inference.py" in warnings[0]
    assert "move it to code/inference.py" in warnings[0]


def test_core_36_explicit_missing_program_is_a_startup_error(serve, tmp_path):
    """core §21 item 36 (§5.2, §5.4): SAGEMAKER_PROGRAM=missing.py set explicitly → startup error (no silent
    fallback to defaults) listing every place searched."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, reporter("present"))  # inference.py exists, but the explicit name must win
    status, logs = startup_failure(serve, model_dir, {**ONE, "SAGEMAKER_PROGRAM": "missing.py"})
    assert status == 1
    line = next(line for line in logs.splitlines() if "missing.py" in line and "ERROR" in line)
    assert "SAGEMAKER_PROGRAM" in line
    for place in (model_dir / "code" / "missing.py", model_dir / "missing.py"):
        assert str(served_path(model_dir, place)) in line, line


def test_core_37_no_user_module_uses_defaults(serve, tmp_path):
    """core §21 item 37 (§5.2 rule 4): no user module → the startup log says `no user module` in one line and
    the family defaults serve the model."""
    model_dir = make_dir(tmp_path)
    payload, check = default_model(model_dir)
    server = serve(model_dir, ONE)
    lines = [line for line in server.logs().splitlines() if "no user module" in line]
    assert len(lines) == 1, server.logs()
    assert "inference.py" in lines[0] and "defaults" in lines[0]
    response = server.post(data=json.dumps(payload))
    assert response.status_code == 200, response.text
    check(response.json())


IMPORT_ERROR = '''
import json

import module_that_does_not_exist_anywhere  # noqa: F401


def model_fn(model_dir):
    return "never"


def transform_fn(model, body, content_type, accept):
    return json.dumps("never")
'''


def test_core_38_import_error_exits_1_with_traceback(serve, tmp_path):
    """core §21 item 38 (§1.2 step 5): a user module raising ImportError → exit status 1, the traceback in
    the log, /ping never 200."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, IMPORT_ERROR)
    status, logs = startup_failure(serve, model_dir, ONE)
    assert status == 1
    assert "Traceback (most recent call last)" in logs
    assert "ModuleNotFoundError: No module named 'module_that_does_not_exist_anywhere'" in logs
    assert "inference.py" in logs


LOAD_FAILS_LATE = '''
import time


def model_fn(model_dir):
    time.sleep(1.5)
    raise RuntimeError("this model cannot be loaded")
'''


@pytest.mark.once
def test_core_38_a_failed_start_answers_every_ping_in_full(serve, tmp_path):
    """core §21 item 38 (§1.2 step 5): while a model fails to load, clients polling /ping get whole 503 answers
    or a refused connection, never a body cut short by the exit (seen once in CI: IncompleteRead)."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, LOAD_FAILS_LATE)
    server = serve(model_dir, ONE, ready=False)
    cut, answered = [], []
    stop = threading.Event()

    def poll(keep_alive: bool) -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                response = (session if keep_alive else requests).get(server.url + "/ping", timeout=5)
                answered.append(response.status_code)
            except requests.exceptions.ChunkedEncodingError as exc:
                cut.append(repr(exc))
            except requests.ConnectionError:
                session = requests.Session()
                time.sleep(0.01)

    pollers = [threading.Thread(target=poll, args=(i % 2 == 0,), daemon=True) for i in range(4)]
    for thread in pollers:
        thread.start()
    try:
        status = server.wait_exit(60)
    finally:
        stop.set()
        for thread in pollers:
            thread.join(10)
    assert status == 1, server.logs()
    assert "this model cannot be loaded" in server.logs()
    assert answered and set(answered) == {503}, answered[-20:]
    assert not cut, cut[:3]


LIB_USER = '''
import json

import util_mod


def model_fn(model_dir):
    return util_mod.VALUE


def transform_fn(model, body, content_type, accept):
    return json.dumps({"mark": model, "util_file": util_mod.__file__}), "application/json"
'''


def test_core_39_code_lib_is_on_the_import_path(serve, tmp_path):
    """core §21 item 39 (§5.3): code/lib/util_mod.py is importable from inference.py."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, LIB_USER)
    write_code(model_dir, 'VALUE = "from-code-lib"\n', name="util_mod.py", where="code/lib")
    body = report(serve(model_dir, ONE))
    assert body["mark"] == "from-code-lib"
    assert Path(body["util_file"]).resolve() == served_path(model_dir, model_dir / "code" / "lib" / "util_mod.py")


def test_core_40_single_top_level_directory_is_descended(serve, tmp_path):
    """core §21 item 40 (§5.1, §5.4): a model dir holding one directory (a tarball packed with its folder) is
    descended into, with a warning naming it and how to re-pack (PT/MX/NEO)."""
    if FAMILY == "tensorflow":
        pytest.skip("TF never descends (tensorflow.md)")
    model_dir = make_dir(tmp_path)
    inner = make_dir(model_dir, "my-model")
    payload, check = default_model(inner)
    server = serve(model_dir, ONE)
    response = server.post(data=json.dumps(payload))
    assert response.status_code == 200, response.text
    check(response.json())
    warnings = [line for line in server.logs().splitlines() if "WARNING" in line and "my-model" in line]
    assert len(warnings) == 1, server.logs()
    assert "tar -C my-model -czf model.tar.gz ." in warnings[0]


@pytest.mark.parametrize("beside", [False, True], ids=["nested-only", "extracted-beside"])
def test_core_layout_nested_archive_is_warned_unless_extracted_beside(serve, tmp_path, beside):
    """core §5.4 (`*.tar.gz` inside the model dir → W, a nested archive is never extracted): a model dir that
    holds only a double-packed model.tar.gz is warned about; the folder the SageMaker Python SDK's local mode
    mounts (model.tar.gz extracted beside the archive, which it leaves there) is not a mistake and gets no
    warning."""
    contents = make_dir(tmp_path, "contents")
    write_code(contents, reporter("packed"))
    model_dir = make_dir(tmp_path, "model")
    pack(contents, model_dir / "model.tar.gz")
    if beside:
        write_code(model_dir, reporter("packed"))
    else:
        write_code(model_dir, reporter("outside"), where="")
    server = serve(model_dir, ONE)
    assert report(server)["mark"] == ("packed" if beside else "outside")
    warnings = [line for line in server.logs().splitlines() if "WARNING" in line and "never extracted" in line]
    if beside:
        assert warnings == [], server.logs()
    else:
        assert len(warnings) == 1 and "model.tar.gz" in warnings[0], server.logs()


# ------------------------------------------------------------------ §6 requirements.txt

def test_core_41_root_requirements_warned_not_installed(serve, tmp_path):
    """core §21 item 41 (§5.4, §6): requirements.txt at the archive root (not in code/) produces the warning
    and is not installed (it names a package that cannot be installed: an install would stop startup)."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, reporter("root-requirements"))
    (model_dir / "requirements.txt").write_text(ABSENT_PACKAGE + "\n")
    server = serve(model_dir, {**ONE, "PIP_NO_INDEX": "1"})
    assert report(server)["mark"] == "root-requirements"
    logs = server.logs()
    warnings = [line for line in logs.splitlines() if "WARNING" in line and "requirements.txt" in line]
    assert len(warnings) == 1, logs
    assert "not installed" in warnings[0] and "code/requirements.txt" in warnings[0]
    assert "pip install" not in logs and "installing" not in logs


REQUIREMENTS_USER = '''
import json
import os
import time

import {module}

IMPORTED_AT = time.time()


def model_fn(model_dir):
    return {{"file": {module}.__file__, "imported_at": IMPORTED_AT}}


def transform_fn(model, body, content_type, accept):
    return json.dumps({{**model, "value": {module}.unidecode("\u00e9t\u00e9")}}), "application/json"
'''


def test_core_42_code_requirements_installed_before_workers_load(serve, tmp_path):
    """core §21 item 42 (§6): code/requirements.txt (a small pure-Python package from the package index,
    pinned) is installed by the supervisor before any worker loads the user module, into a writable prefix on
    sys.path, and inference.py imports it at module level."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, REQUIREMENTS_USER.format(module=PYPI_MODULE))
    write_code(model_dir, f"{PYPI_PACKAGE}=={PYPI_VERSION}\n", name="requirements.txt")
    server = serve(model_dir, {**ONE, "SMSERVE_SKIP_REQUIREMENTS": ""}, timeout=240)
    body = report(server)
    assert body["value"] == "ete"
    logs = server.logs().splitlines()
    installed = next(i for i, line in enumerate(logs) if re.search(r"\binstalled .*requirements\.txt into ", line))
    target = logs[installed].split(" into ", 1)[1].strip()
    assert Path(body["file"]).resolve().is_relative_to(Path(target).resolve()), (body["file"], target)
    assert not Path(body["file"]).resolve().is_relative_to(served_path(model_dir))
    first_ready = next(i for i, line in enumerate(logs) if re.search(r"worker \d+ ready", line))
    assert installed < first_ready
    install_start = next(i for i, line in enumerate(logs) if "installing" in line and "pip" in line)
    assert f"-r {served_path(model_dir, model_dir / 'code' / 'requirements.txt')}" in logs[install_start]


def test_core_43_failing_requirements_exit_3_with_pip_tail(serve, tmp_path):
    """core §21 item 43 (§6): a failing install exits with status 3, logs the pip command line and the tail of
    pip's output, and does not retry. PIP_NO_INDEX (a standard PIP_* variable, passed through) keeps the
    failure offline."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, reporter("never-loaded"))
    write_code(model_dir, ABSENT_PACKAGE + "\n", name="requirements.txt")
    status, logs = startup_failure(serve, model_dir, {**ONE, "PIP_NO_INDEX": "1", "SMSERVE_SKIP_REQUIREMENTS": ""})
    assert status == 3, logs
    assert "-m pip install" in logs and "requirements.txt" in logs
    assert "No matching distribution found for smserve-test-absent-package==1.0" in logs
    assert len(re.findall(r"pip failed", logs)) == 1, logs


def test_core_44_skip_requirements(serve, tmp_path):
    """core §21 item 44 (§6): SMSERVE_SKIP_REQUIREMENTS=true skips pip (an uninstallable requirement does not
    stop startup) and logs that it did."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, reporter("skipped"))
    write_code(model_dir, ABSENT_PACKAGE + "\n", name="requirements.txt")
    server = serve(model_dir, {**ONE, "PIP_NO_INDEX": "1", "SMSERVE_SKIP_REQUIREMENTS": "true"})
    assert report(server)["mark"] == "skipped"
    logs = server.logs()
    lines = [line for line in logs.splitlines() if "SMSERVE_SKIP_REQUIREMENTS" in line]
    assert len(lines) == 1 and "requirements.txt" in lines[0], logs
    assert "-m pip install" not in logs
