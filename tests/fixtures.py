"""Fixtures shared by every suite (the shared ones under tests/ and each family's <family>/tests): `serve` starts a
server and removes it after the test, `module_servers` shares servers across a module."""

from __future__ import annotations

import pytest

from .harness import Server, free_port


@pytest.fixture
def serve():
    started: list[Server] = []

    def start(model_dir, env: dict | None = None, ready: bool = True, args: tuple = (), docker_args: tuple = (),
              timeout: float = 90) -> Server:
        server = Server(model_dir, {k: str(v) for k, v in (env or {}).items()}, free_port(), args, docker_args)
        started.append(server)
        if ready:
            server.wait_ready(timeout)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def module_servers():
    """For modules that share one server across many tests (servers start in ~2 s; tests are many)."""
    started: list[Server] = []

    def start(model_dir, env: dict | None = None, timeout: float = 90) -> Server:
        server = Server(model_dir, {k: str(v) for k, v in (env or {}).items()}, free_port())
        started.append(server)
        return server.wait_ready(timeout)

    yield start
    for server in started:
        server.stop()
