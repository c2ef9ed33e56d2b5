"""pytest configuration for every suite: the shared ones under tests/ and each family's <family>/tests.

Family test folders have no __init__.py (a `mxnet/tests` package would shadow the shared `tests` package), so
their fixtures come from here. The fixtures themselves live in tests/fixtures.py.
"""

from __future__ import annotations

from tests.fixtures import module_servers, serve  # noqa: F401  (fixtures are found by name)
from tests.harness import TARGET


def pytest_report_header(config):
    return f"smserve test target: {TARGET}"
