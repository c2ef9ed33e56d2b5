"""Fixtures of the contract suite: the probe and echo servers that many core checklist tests share."""

from __future__ import annotations

import pytest

from .core_scripts import ONE_WORKER, echo_dir, probe_dir


@pytest.fixture(scope="module")
def probe(module_servers, tmp_path_factory):
    """A server running the PROBE script (core_scripts): request headers steer its hooks."""
    return module_servers(probe_dir(tmp_path_factory.mktemp("probe")), ONE_WORKER)


@pytest.fixture(scope="module")
def echo(module_servers, tmp_path_factory):
    """The family's echo model with the family's default input_fn/output_fn and a canned predict_fn."""
    return module_servers(echo_dir(tmp_path_factory.mktemp("echo")), ONE_WORKER)
