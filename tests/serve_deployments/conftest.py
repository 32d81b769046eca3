"""What the Serve tests share: an app served on a free local port for a module."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serving(app, name: str) -> Iterator[str]:
    """Serve ``app`` as ``name`` at ``/`` on a free port; its base URL. Serve is shut down at
    the end, so the next module starts it on its own port."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(app, name=name, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture(scope="session")
def serving(ray_session):
    """``with serving(app, name) as url:`` the app answers at ``url``."""
    return _serving
