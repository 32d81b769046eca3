"""The KPI dashboard's HTTP side: the page, its sign-in, and who may see it.

The page (``page.html``) is self-contained: HTML, CSS and vanilla JavaScript drawing inline
SVG, nothing fetched from elsewhere (the machine may have no internet). It arrives with the
current numbers of :class:`ddso.kpis.KpiBoard` in a JSON block that its script renders
before the first paint, then polls ``GET /v1/kpis`` every 2 s and redraws. Every number
carries ``data-kpi`` (a JSON pointer into the ``/v1/kpis`` answer) and ``data-value`` (the
raw value, as JSON), so a test can compare the page with the API.

Who may see it: an API key with the ``admin`` scope (the scope of ``/metrics``, whose
latency figures the page shows). A browser cannot send a Bearer header when it navigates,
so ``/dashboard`` and ``/v1/kpis`` take the key either as ``Authorization: Bearer`` or from
the ``ddso_dashboard`` cookie that ``POST /dashboard/login`` (a form with the key) sets:
HttpOnly (page scripts cannot read it), SameSite=Strict (no other site's page can make the
browser send it), Secure over HTTPS, for 8 hours. The cookie holds the key itself, so a
revoked key stops working in the browser as everywhere else. Without a key ``/dashboard``
answers 401 with the sign-in form and no numbers. Every other route still takes the Bearer
header only.

Pages go out with a Content-Security-Policy that allows only this page's own script (by its
hash), requests to this origin, and no framing.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ddso.security.errors import AuthenticationError
from ddso.security.keys import bearer_token
from ddso.security.ratelimit import enforce

COOKIE = "ddso_dashboard"
SCOPE = "admin"
SESSION_S = 8 * 3600
POLL_MS = 2000
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


@cache
def _template(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@cache
def _headers() -> dict[str, str]:
    scripts = _SCRIPT.findall(_template("page.html"))
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in scripts
    )
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def presented_token(request: Request) -> str:
    """The key of a Bearer header, else of the dashboard cookie; 401 when neither."""
    header = request.headers.get("authorization")
    if header:
        return bearer_token(header)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return cookie
    raise AuthenticationError(
        "missing API key: send 'Authorization: Bearer <key>' or sign in at /dashboard"
    )


def authenticate(request: Request, token: str | None = None) -> str:
    """The key id of ``token`` (default: the one the request presents) for the dashboard's
    scope, rate-limited like every key; raises the security layer's errors."""
    security = request.app.state.security
    key_id = security.keys.authenticate(token or presented_token(request), SCOPE)
    enforce(security.limiter, key_id)
    return key_id


async def require_viewer(request: Request) -> str:
    """A dependency: the key id of a dashboard viewer (Bearer header or cookie)."""
    return authenticate(request)


def page(kpis: dict[str, Any]) -> HTMLResponse:
    """The dashboard with ``kpis`` in it."""
    # "<" escaped: no value (a segment name, an endpoint) can close the data block.
    data = json.dumps(kpis, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    body = (_template("page.html").replace("{{KPIS}}", data)
            .replace("{{POLL_MS}}", str(POLL_MS)))
    return HTMLResponse(body, headers=_headers())


def sign_in_form(request: Request, message: str, status_code: int) -> HTMLResponse:
    """The sign-in form (no numbers) with ``message``; clears a cookie that did not work."""
    body = (_template("login.html").replace("{{MESSAGE}}", html.escape(message))
            .replace("{{ACTION}}", html.escape(f"{_root(request)}/dashboard/login")))
    response = HTMLResponse(body, status_code=status_code, headers=_headers())
    if request.cookies.get(COOKIE):
        response.delete_cookie(COOKIE, path=f"{_root(request)}/")
    return response


def form_token(body: bytes) -> str | None:
    """The ``token`` field of a urlencoded sign-in form."""
    values = parse_qs(body.decode("utf-8", "replace")).get("token", [])
    return values[0].strip() if values and values[0].strip() else None


def signed_in(request: Request, token: str) -> Response:
    """Back to the dashboard, with the session cookie set."""
    response = RedirectResponse(f"{_root(request)}/dashboard", status_code=303)
    response.set_cookie(
        COOKIE, token, max_age=SESSION_S, path=f"{_root(request)}/", httponly=True,
        samesite="strict", secure=_https(request),
    )
    return response


def signed_out(request: Request) -> Response:
    response = RedirectResponse(f"{_root(request)}/dashboard", status_code=303)
    response.delete_cookie(COOKIE, path=f"{_root(request)}/")
    return response


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"
