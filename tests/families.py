"""The family under test, and what the shared suites need from it.

The shared suites (tests/contract, tests/container) run once per family environment, with the family named by
SMSERVE_TEST_FAMILY. What differs per family (how to write an echo model and a default model, what the
framework itself computes) comes from `<family>/tests/<family>_models.py`, which every family provides with
the same names: ECHO_SCRIPT, write_echo_model, write_default_model, predict_default.

Whether a framework is installed is decided from distribution metadata, never from `find_spec`: with the
repository root on sys.path (pytest puts it there) the folders `mxnet/` and `tensorflow/` are namespace packages,
so `find_spec("mxnet")` finds them in a venv without mxnet (docs/architecture.md, "Family folders").
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

from .harness import FAMILY

REPO = Path(__file__).resolve().parent.parent
MATRIX = tomllib.loads((REPO / "docker" / "matrix.toml").read_text())

# import name -> the distributions that provide it (cpu/gpu builds ship under different names)
DISTRIBUTIONS = {"torch": ("torch",), "mxnet": ("mxnet", "mxnet-cu112", "mxnet-cu117"),
                 "tensorflow": ("tensorflow-cpu", "tensorflow"), "dlr": ("dlr",)}


def framework_installed(name: str) -> bool:
    """True when a distribution providing import name `name` is installed in this environment."""
    for dist in DISTRIBUTIONS.get(name, (name,)):
        try:
            metadata.version(dist)
            return True
        except metadata.PackageNotFoundError:
            continue
    return False


def require_framework(name: str) -> ModuleType:
    """`pytest.importorskip` that a framework-named folder cannot fool: skip unless `name` is installed."""
    if not framework_installed(name):
        pytest.skip(f"{name} is not installed in this environment", allow_module_level=True)
    return importlib.import_module(name)


def family_models(family: str = FAMILY) -> ModuleType:
    """`<family>/tests/<family>_models.py`, imported under the name pytest gives it when it collects that folder."""
    require_framework(MATRIX["families"][family]["framework"])
    folder = REPO / family / "tests"
    if not (folder / f"{family}_models.py").is_file():
        pytest.skip(f"family {family} has no test models ({folder.relative_to(REPO)}/{family}_models.py)")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(f"{family}_models")
