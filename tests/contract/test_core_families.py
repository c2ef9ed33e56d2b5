"""Family discovery (issue 7 item 3, docs/architecture.md "Family folders"): which family a server runs when
SMSERVE_FAMILY is unset, set to a family that is not installed, unknown, or provided only by an entry point.
Real servers, real exit statuses and logs."""

from __future__ import annotations

import textwrap

import pytest

from smserve.families import FAMILIES

from ..families import REPO
from ..harness import FAMILY, TARGET
from ..models import make_dir
from .core_scripts import ONE_WORKER, default_model, startup_line

host_only = pytest.mark.skipif(TARGET != "host", reason="changes the Python path of the server process")

# A map family that this environment (venv or image) does not hold: each holds exactly one family.
ABSENT = next(name for name in FAMILIES if name != FAMILY)


def test_layout_3_the_only_installed_family_is_the_default(serve, tmp_path):
    """Without SMSERVE_FAMILY, the one family installed in this environment serves (the MXNet venv used to pick
    PyTorch and every worker died on `No module named 'torch'`)."""
    model_dir = make_dir(tmp_path)
    model = default_model(model_dir)
    server = serve(model_dir, {**ONE_WORKER, "SMSERVE_FAMILY": ""})
    model.check(server.invoke_json(model.payload))
    assert f"family            {FAMILY} " in server.logs()


def test_layout_3_a_family_that_is_not_installed_is_named_with_its_distribution(serve, tmp_path):
    line = startup_line(serve, tmp_path, {"SMSERVE_FAMILY": ABSENT})
    assert f"family {ABSENT} is not installed (distribution smserve-{ABSENT})" in line, line
    assert f"installed here: {FAMILY}" in line, line


def test_layout_3_an_unknown_family_lists_the_accepted_names(serve, tmp_path):
    line = startup_line(serve, tmp_path, {"SMSERVE_FAMILY": "caffe"})
    assert "SMSERVE_FAMILY" in line and "'caffe'" in line, line
    for name in FAMILIES:
        assert name in line, line


@host_only
def test_layout_3_several_installed_families_without_smserve_family_stop_with_one_line(serve, tmp_path):
    """A second family package on the path (the tensorflow skeleton) makes the default ambiguous."""
    line = startup_line(serve, tmp_path, {"SMSERVE_FAMILY": "", "PYTHONPATH": str(REPO / "tensorflow")})
    installed = ", ".join(name for name in FAMILIES if name in (FAMILY, "tensorflow"))
    assert f"several families are installed ({installed}): set SMSERVE_FAMILY" in line, line


@host_only
def test_layout_3_entry_point_family_outside_the_map(serve, tmp_path):
    """A family the static map does not know is found through its `smserve.families` entry point."""
    module, _, cls = FAMILIES[FAMILY].partition(":")
    site = tmp_path / "site"
    (site / "smserve_custom-0.1.dist-info").mkdir(parents=True)
    (site / "smserve_custom-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: smserve-custom\nVersion: 0.1\n")
    (site / "smserve_custom-0.1.dist-info" / "entry_points.txt").write_text(
        "[smserve.families]\ncustom = smserve_custom:CustomFamily\n")
    (site / "smserve_custom.py").write_text(textwrap.dedent(f"""
        from {module} import {cls}


        class CustomFamily({cls}):
            name = "custom"
    """))
    model_dir = make_dir(tmp_path)
    model = default_model(model_dir)
    server = serve(model_dir, {**ONE_WORKER, "SMSERVE_FAMILY": "custom", "PYTHONPATH": str(site)})
    model.check(server.invoke_json(model.payload))
    assert "family            custom " in server.logs()
