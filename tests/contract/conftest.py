"""Collection per family environment. Each family venv holds one framework (the mxnet venv has numpy 1.23 and
no torch), so: family suites (test_<family>*.py) run only for SMSERVE_TEST_FAMILY, and a core test module that
imports a framework missing from this environment is skipped at collection instead of failing it."""

from __future__ import annotations

import importlib.util
import os
import re

import pytest

from .core_scripts import ONE_WORKER, echo_dir, probe_dir

FAMILY = os.environ.get("SMSERVE_TEST_FAMILY", "pytorch")
FAMILY_SUITES = {"pytorch": "test_pytorch", "mxnet": "test_mxnet"}
FRAMEWORK_IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:\.\.)?(torch|mxnet|torch_models|mxnet_models)\b", re.M)
FRAMEWORK_OF = {"torch": "torch", "torch_models": "torch", "mxnet": "mxnet", "mxnet_models": "mxnet"}


def pytest_ignore_collect(collection_path, config):
    name = collection_path.name
    if not (name.startswith("test_") and name.endswith(".py")):
        return None
    for family, prefix in FAMILY_SUITES.items():
        if name.startswith(prefix) and family != FAMILY:
            return True
    try:
        text = collection_path.read_text()
    except OSError:
        return None
    needed = {FRAMEWORK_OF[m] for m in FRAMEWORK_IMPORT.findall(text)}
    if any(importlib.util.find_spec(framework) is None for framework in needed):
        return True
    return None


@pytest.fixture(scope="module")
def probe(module_servers, tmp_path_factory):
    """A server running the PROBE script (core_scripts): request headers steer its hooks."""
    return module_servers(probe_dir(tmp_path_factory.mktemp("probe")), ONE_WORKER)


@pytest.fixture(scope="module")
def echo(module_servers, tmp_path_factory):
    """The family's echo model with the family's default input_fn/output_fn and a canned predict_fn."""
    return module_servers(echo_dir(tmp_path_factory.mktemp("echo")), ONE_WORKER)
