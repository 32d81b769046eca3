"""422 answers naming the field, for non-finite numbers too, without echoing the input."""

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from ddso.security.validation import validation_error_handler

pytestmark = pytest.mark.unit


class Context(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    weight: float = 1.0


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    customer_id: str = Field(max_length=20)
    amount: float = 0.0
    context: Context = Context()


@pytest.fixture(scope="module")
def app():
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    @app.post("/v1/decide")
    def decide(req: Request) -> dict[str, str]:
        return {"customer_id": req.customer_id}

    return app


def post(app, raw: bytes) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(
                "/v1/decide", content=raw, headers={"content-type": "application/json"}
            )

    return asyncio.run(go())


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("where", ["amount", "context.weight"])
def test_non_finite_numbers_are_422_naming_the_field(app, literal, where):
    body = (
        f'{{"customer_id": "C1", "amount": {literal}}}'
        if where == "amount"
        else f'{{"customer_id": "C1", "context": {{"weight": {literal}}}}}'
    )
    r = post(app, body.encode())
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["field"] == where and error["type"] == "finite_number"


def test_the_input_is_never_echoed(app):
    r = post(app, b'{"customer_id": "jane.doe@example.com-very-long", "extra": "secret"}')
    assert r.status_code == 422
    assert "jane" not in r.text and "secret" not in r.text
    fields = {(e["field"], e["type"]) for e in r.json()["detail"]}
    assert fields == {("customer_id", "string_too_long"), ("extra", "extra_forbidden")}


def test_missing_fields_and_bad_json_are_named(app):
    r = post(app, b"{}")
    assert r.status_code == 422
    assert r.json()["detail"][0] == {
        "field": "customer_id",
        "loc": ["body", "customer_id"],
        "msg": "Field required",
        "type": "missing",
    }
    r = post(app, b'{"customer_id": ')
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["field"] == "body" and error["type"] == "json_invalid"
    assert "at character" in error["msg"]
