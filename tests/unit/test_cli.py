"""The command line (core §1.1; issue 12, requirements isolation): `smserve serve` reaches the supervisor without
importing anything that a user's requirements could replace, and its help lists the limits."""

from __future__ import annotations

import subprocess
import sys

THIRD_PARTY_PROBE = """
import sys
import smserve.cli, smserve.supervisor
from smserve.families import resolve_family
family = resolve_family(None if len(sys.argv) < 2 else sys.argv[1])
print(sorted({name.split('.')[0] for name in sys.modules} - set(sys.stdlib_module_names)
             - {'smserve', '__main__', '__mp_main__', type(family).__module__.split('.')[0]}
             - {name for name in sys.modules if name.startswith('__editable__') or name == '_distutils_hack'}))
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)


def test_serve_path_imports_only_the_standard_library_before_the_install():
    """What `smserve serve` imports up to the requirements install: smserve, its family class, the stdlib."""
    out = run("-c", THIRD_PARTY_PROBE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_help_lists_the_limits_and_exits_0():
    out = run("-m", "smserve", "serve", "--help")
    assert out.returncode == 0, out.stderr
    for name in ("--model-dir", "--port", "--host", "--family", "SMSERVE_HEADER_TIMEOUT", "SMSERVE_MAX_CONNECTIONS",
                 "SMSERVE_DECODE_FACTOR", "SAGEMAKER_MODEL_SERVER_WORKERS"):
        assert name in out.stdout, name


def test_group_help_lists_serve_and_a_bad_option_value_exits_2():
    out = run("-m", "smserve", "--help")
    assert out.returncode == 0 and "serve" in out.stdout, out
    out = run("-m", "smserve", "serve", "--port", "eighty")
    assert out.returncode == 2 and "--port" in out.stderr, out
