"""The repository's family layout (issue 7, ../shared/design/layout.md): one folder per family, each the same
shape, a framework-free core, nothing importable as a framework, and framework checks that skip correctly."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest

from smserve.families import ENTRY_POINT_GROUP, FAMILIES, distribution

from ..families import REPO, framework_installed, require_framework
from ..harness import FAMILY

FRAMEWORKS = ("torch", "mxnet", "tensorflow", "dlr")


def pyproject(folder: str) -> dict:
    return tomllib.loads((REPO / folder / "pyproject.toml").read_text())


def tracked_files() -> list[str]:
    return subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_layout_1_every_family_folder_has_the_same_shape(family):
    folder = REPO / family
    for part in ("pyproject.toml", "requirements.txt", f"smserve_{family}/__init__.py", "example", "tests"):
        assert (folder / part).exists(), f"{family}/{part} is missing"
    assert not (folder / "__init__.py").exists(), f"{family}/__init__.py would make {family} a package"
    assert not (folder / "tests" / "__init__.py").exists(), "a tests package here would shadow tests/"
    project = pyproject(family)["project"]
    assert project["name"] == distribution(family)
    assert project["entry-points"][ENTRY_POINT_GROUP] == {family: FAMILIES[family]}
    assert "-r ../requirements/core.txt" in (folder / "requirements.txt").read_text().splitlines()
    # test file names are unique across families (pytest imports them by basename)
    for test in (folder / "tests").glob("test_*.py"):
        assert test.name.startswith(f"test_{family}_"), test


def test_layout_1_the_core_knows_no_framework():
    """smserve/ imports no framework and holds no family code; the core distribution packages only smserve (with
    its multi-model front) and the sagemaker_inference compatibility package."""
    framework_import = re.compile(rf"^\s*(?:import|from)\s+({'|'.join(FRAMEWORKS)}|smserve_\w+)\b", re.M)
    for path in (REPO / "smserve").rglob("*.py"):
        assert not framework_import.search(path.read_text()), path
    assert sorted(p.name for p in (REPO / "smserve" / "families").iterdir() if p.suffix == ".py") == [
        "__init__.py", "base.py"]
    assert pyproject(".")["tool"]["setuptools"]["packages"] == ["smserve", "smserve.families", "smserve.mme",
                                                                 "sagemaker_inference"]


def test_layout_2_nothing_importable_as_a_framework_is_created():
    """No module or regular package named like a framework anywhere in the tree; the framework-named family
    folders (mxnet/, tensorflow/) sit at the root only and hold no __init__.py."""
    for name in tracked_files():
        *folders, filename = name.split("/")
        assert not (filename.endswith(".py") and filename[:-3] in FRAMEWORKS), name
        for depth, folder in enumerate(folders):
            if folder in FRAMEWORKS:
                assert depth == 0 and folder in FAMILIES, f"{name}: a folder named {folder} below the root"
        assert not (len(folders) == 1 and folders[0] in FRAMEWORKS and filename == "__init__.py"), name


def test_layout_2_framework_checks_are_not_fooled_by_the_family_folders():
    """With the repository root on sys.path (pytest's rootdir insertion, `python -m` from the root), a
    framework-named family folder is a namespace package: find_spec finds it in a venv without that framework.
    The tests decide from distribution metadata instead, and an installed framework still imports from
    site-packages."""
    assert str(REPO) in sys.path
    for name in ("mxnet", "tensorflow"):
        probe = subprocess.run([sys.executable, "-c", f"import importlib.util; s = importlib.util.find_spec({name!r}); "
                                f"print(s is not None and s.origin is None)"], cwd=REPO, capture_output=True,
                               text=True, check=True)
        namespace = probe.stdout.strip() == "True"
        assert namespace == (not framework_installed(name)), (name, probe.stdout)
        if not framework_installed(name):
            with pytest.raises(pytest.skip.Exception):
                require_framework(name)
        else:
            assert "site-packages" in require_framework(name).__file__


def test_layout_2_a_family_suite_skips_in_another_family_environment(tmp_path):
    """Every other family's suite, collected here, reports skips (never an import error, never silence)."""
    others = [name for name in FAMILIES if name != FAMILY and any((REPO / name / "tests").glob("test_*.py"))]
    assert others
    for name in others:
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                              f"{name}/tests"], cwd=REPO, capture_output=True, text=True, timeout=300)
        # exit 5 ("no tests collected") is how pytest ends when every module skipped at import
        assert run.returncode in (0, 5), run.stdout[-3000:] + run.stderr[-3000:]
        assert re.search(r"^\d+ skipped in ", run.stdout, re.M), run.stdout[-3000:]
        assert "is not installed in this environment" in run.stdout, run.stdout[-3000:]


def test_layout_3_installed_entry_points_equal_the_map():
    """Each family installed here (editable or in an image) declares exactly its map entry as entry point."""
    installed = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert installed == {FAMILY: FAMILIES[FAMILY]}
    assert metadata.version(distribution(FAMILY)) == pyproject(FAMILY)["project"]["version"]
