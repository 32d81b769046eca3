"""422 answers to invalid request bodies that name the field and never echo the input.

FastAPI's default handler returns each error's ``input``. That leaks what the client sent
(customer ids, contact data) into responses and logs, and it turns a body holding a ``NaN``
or ``Infinity`` literal (which Python's JSON parser accepts) into a 500, because the echoed
value cannot be written as JSON. This handler keeps the location, the rule and its code:

    {"detail": [{"field": "amount", "loc": ["body", "amount"],
                 "msg": "Input should be a finite number", "type": "finite_number"}]}

Install it with ``app.add_exception_handler(RequestValidationError, validation_error_handler)``.
The request models themselves reject non-finite numbers with ``allow_inf_nan=False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

_SOURCES = {"body", "query", "path", "header", "cookie"}


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each pydantic/FastAPI error as ``field``, ``loc``, ``msg`` and ``type``; no input."""
    described = []
    for e in errors:
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        path = loc[1:] if loc and loc[0] in _SOURCES else loc
        field = ".".join(str(p) for p in path) or (str(loc[0]) if loc else "<request>")
        msg = str(e.get("msg", ""))
        if e.get("type") == "json_invalid":  # its loc ends in a character offset, not a field
            field = "body"
            reason = (e.get("ctx") or {}).get("error", "")
            msg = f"{msg} at character {loc[-1]}: {reason}" if path else msg
        described.append({"field": field, "loc": loc, "msg": msg, "type": e.get("type")})
    return described


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """The FastAPI exception handler answering 422 with :func:`describe_errors`."""
    return JSONResponse({"detail": describe_errors(exc.errors())}, status_code=422)
