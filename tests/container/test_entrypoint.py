"""core §1.1 entrypoint behaviour in the image (checklist core 2-5) and PID 1 duties."""
from __future__ import annotations

import time

import pytest
import requests

from .conftest import run_in

pytestmark = pytest.mark.container


def test_core_2_other_command_runs_unchanged(image):
    r = run_in(image, "python", "-c", "print(1)")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1\n"
    assert "smserve" not in r.stderr  # the server is not started


def test_core_2_exit_status_propagates(image):
    r = run_in(image, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7
    assert r.stdout == "out\n"
    assert "err" in r.stderr


def test_core_2_arguments_passed_verbatim(image):
    r = run_in(image, "python", "-c", "import sys; print(sys.argv[1:])", "a b", "serve", "--port", "")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['a b', 'serve', '--port', '']"


def test_core_1_1_tini_is_pid1(image):
    r = run_in(image, "sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; echo $$")
    assert r.returncode == 0, r.stderr
    first, pid = r.stdout.splitlines()[:2]
    assert first.startswith("tini -g -- /usr/local/bin/smserve-entrypoint"), first
    assert pid != "1"


def test_core_1_1_reaps_zombies(image):
    # An orphaned child that exits is reaped by PID 1 (tini): no <defunct> entries remain.
    script = ("sh -c 'sleep 0.2 & exit 0'; sleep 1; "
              "for s in /proc/[0-9]*/stat; do cut -d' ' -f3 \"$s\" 2>/dev/null; done | grep -c Z || true")
    r = run_in(image, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0", r.stdout


def test_core_4_serve_on_path_when_entrypoint_replaced(image):
    r = run_in(image, "-c", "command -v serve", entrypoint="/bin/sh")
    assert r.returncode == 0
    assert r.stdout.strip() in ("/opt/smserve/venv/bin/serve", "/usr/local/bin/serve")


def test_core_3_no_argument_serves(containers, model_dir):
    c = containers(model_dir, cmd=())
    c.wait_ready()
    assert requests.get(c.url + "/ping", timeout=5).json().get("status") == "Healthy"


def test_core_5_extra_arguments_ignored_with_one_warning(containers, model_dir):
    c = containers(model_dir, cmd=("serve", "--foo", "bar"))
    c.wait_ready()
    warnings = [ln for ln in c.logs().splitlines() if "--foo" in ln]
    assert len(warnings) == 1, warnings
    assert "ignor" in warnings[0].lower()


def test_core_1_1_server_exit_status_is_container_exit_status(containers, tmp_path):
    # An empty model directory is a startup error: the container must exit (no `tail -f /dev/null`).
    empty = tmp_path / "empty"
    empty.mkdir()
    empty.chmod(0o755)
    c = containers(empty)
    t0 = time.monotonic()
    code = c.wait_exit(timeout=60)
    assert code != 0
    assert time.monotonic() - t0 < 60
