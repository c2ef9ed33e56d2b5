"""`smserve check` (issue 11): everything knowable before deploying, checked for real: the archive is packed
with `smserve package`, requirements are installed by pip, the module is imported and its hooks bound in the
family environment (the host venv, or the image under test with --image on the container target), and
--invoke makes one prediction on a real server. One line per finding, exit status 1 on any error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from ..harness import FAMILY, IMAGE, TARGET
from ..models import make_dir, write_code

GOOD = '''
import json


def model_fn(model_dir):
    return {"scale": 3}


def transform_fn(model, body, content_type, accept):
    return json.dumps([value * model["scale"] for value in json.loads(body)]), "application/json"
'''

MISSING_IMPORT = '''
import json

import smserve_test_not_installed_anywhere


def model_fn(model_dir):
    return None
'''

BAD_SIGNATURE = '''
def model_fn(model_dir):
    return None


def input_fn(body, content_type, accept, extra, more):
    return body
'''


def check(source: Path, *args: str, cwd: Path | None = None) -> tuple[int, list[str]]:
    image = ("--image", IMAGE) if TARGET == "container" else ()
    done = subprocess.run([sys.executable, "-m", "smserve", "check", str(source), *image, *args],
                          env={**os.environ, "SMSERVE_FAMILY": FAMILY}, cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    return done.returncode, (done.stdout + done.stderr).splitlines()


def packed(tmp_path: Path, source: str, requirements: str | None = None) -> Path:
    folder = make_dir(tmp_path, "folder")
    write_code(folder, source, where="")  # inference.py at the folder root: package moves it into code/
    if requirements is not None:
        write_code(folder, requirements, name="requirements.txt", where="")
    (folder / "weights.bin").write_bytes(b"\x01" * 64)
    archive = tmp_path / "model.tar.gz"
    done = subprocess.run([sys.executable, "-m", "smserve", "package", str(folder), "-o", str(archive)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    archive.chmod(0o644)
    return archive


def test_check_a_good_archive_installs_imports_and_predicts(tmp_path):
    archive = packed(tmp_path, GOOD, requirements="tabulate==0.9.0\n")
    body = tmp_path / "body.json"
    body.write_text("[1, 2.5]")
    status, lines = check(archive, "--invoke", str(body), "--content-type", "application/json")
    assert status == 0, lines
    assert any(line.startswith("OK") and "model.tar.gz:code/requirements.txt installs" in line for line in lines)
    assert any(line.startswith("OK") and "code/inference.py imports; hooks: model_fn, transform_fn" in line
               for line in lines), lines
    invoked = next(line for line in lines if "POST /invocations" in line)
    assert invoked.startswith("OK") and "-> 200 application/json" in invoked and json.loads(
        invoked.rsplit(": ", 1)[1]) == [3, 7.5], invoked
    assert lines[-1] == f"{len(lines) - 1} findings, 0 errors"


def test_check_names_a_missing_import_with_file_line_and_fix(tmp_path):
    status, lines = check(packed(tmp_path, MISSING_IMPORT))
    assert status == 1, lines
    error = next(line for line in lines if line.startswith("ERROR"))
    assert "model.tar.gz:code/inference.py:4" in error and "ModuleNotFoundError" in error, error
    assert "add the package that provides 'smserve_test_not_installed_anywhere' to code/requirements.txt" in error


def test_check_reports_a_hook_signature_the_server_would_refuse(tmp_path):
    status, lines = check(packed(tmp_path, BAD_SIGNATURE))
    assert status == 1, lines
    error = next(line for line in lines if line.startswith("ERROR"))
    assert "input_fn" in error and "5 positional parameters" in error, error


def test_check_reports_requirements_pip_cannot_resolve(tmp_path):
    status, lines = check(packed(tmp_path, GOOD, requirements="smserve-test-absent-package==1.0\n"))
    assert status == 1, lines
    error = next(line for line in lines if line.startswith("ERROR"))
    assert "requirements.txt failed (pip exit status" in error, error
    assert "smserve-test-absent-package" in error, error


def test_check_warns_about_layout_and_refuses_unsafe_archives(tmp_path):
    folder = make_dir(tmp_path, "unpacked")
    write_code(folder, GOOD, where="")  # at the model dir root: the server warns, check says the same
    (folder / "weights.bin").write_bytes(b"\x01")
    status, lines = check(folder)
    assert status == 0, lines
    assert any(line.startswith("WARNING") and "move it to code/inference.py" in line for line in lines), lines

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../evil.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    status, lines = check(evil)
    assert status == 1 and "'../evil.py' is refused" in lines[0], lines
    assert not (tmp_path.parent / "evil.py").exists()
