"""The 413 middleware in front of a small FastAPI app: in process, and over real HTTP."""

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict

from ddso.security.body_size import BodySizeLimit

pytestmark = pytest.mark.unit

LIMIT = 100


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str


def make_app(calls: list[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        body = await request.body()
        calls.append("raw")
        return {"bytes": len(body)}

    @app.post("/item")
    async def item(body: Item) -> dict[str, str]:
        calls.append("item")
        return {"name": body.name}

    @app.post("/broken")
    async def broken(request: Request) -> None:
        await request.body()
        raise RuntimeError("a bug")

    app.add_middleware(BodySizeLimit, max_bytes=LIMIT)
    return app


def post(app, path, content):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(
                path, content=content, headers={"content-type": "application/json"}
            )

    return asyncio.run(go())


def chunks(total: int, size: int = 30):
    async def gen():
        for start in range(0, total, size):
            yield b"x" * min(size, total - start)

    return gen()


def assert_413(response):
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "detail": f"request body is larger than the limit of {LIMIT} bytes",
        "max_bytes": LIMIT,
    }


def test_bodies_up_to_the_limit_pass():
    app = make_app(calls := [])
    assert post(app, "/raw", b"x" * LIMIT).json() == {"bytes": LIMIT}
    assert post(app, "/raw", chunks(LIMIT)).json() == {"bytes": LIMIT}
    assert post(app, "/item", b'{"name": "a"}').json() == {"name": "a"}
    assert calls == ["raw", "raw", "item"]


def test_a_declared_length_over_the_limit_is_413_before_the_app_runs():
    app = make_app(calls := [])
    assert_413(post(app, "/raw", b"x" * (LIMIT + 1)))
    assert_413(post(app, "/item", b'{"name": "' + b"a" * LIMIT + b'"}'))
    assert calls == []


@pytest.mark.parametrize("path", ["/raw", "/item"])
def test_a_chunked_body_growing_past_the_limit_is_413(path):
    app = make_app(calls := [])
    assert_413(post(app, path, chunks(LIMIT + 1)))
    assert_413(post(app, path, chunks(10 * LIMIT)))
    assert calls == []


def test_other_errors_are_not_masked():
    with pytest.raises(RuntimeError, match="a bug"):
        post(make_app([]), "/broken", b"{}")


def test_other_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(BodySizeLimit(app, 0)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        BodySizeLimit(make_app([]), -1)


@pytest.fixture(scope="module")
def served():
    """The app behind a real uvicorn server on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(make_app([]), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield client
    server.should_exit = True
    thread.join(5)


def test_over_real_http_chunked_and_declared(served):
    def chunked(total):
        for start in range(0, total, 30):
            yield b"x" * min(30, total - start)

    response = served.post(
        "/item", content=chunked(5 * LIMIT), headers={"content-type": "application/json"}
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_413(response)
    assert_413(served.post("/raw", content=b"x" * 5000))
    assert served.post("/raw", content=chunked(LIMIT)).json() == {"bytes": LIMIT}
