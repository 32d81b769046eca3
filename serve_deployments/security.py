"""The security layer of the decision API, chosen by configuration and installed on the app.

Backends: with ``redis.url`` set, API keys, rate-limit buckets and idempotency entries live in
Redis and every replica shares them (keys cached per replica for ``api_key_cache_s``; while
Redis is down, recently seen keys still authenticate and each replica limits rates on its own:
:class:`~ddso.security.keys.CachedKeyBackend`,
:class:`~ddso.security.ratelimit.FailoverRateLimiter`); without it, keys come from the key
file and the limiter and idempotency store live in the replica (so the ingress must run as
one replica, which :func:`serve_deployments.app.build_app` enforces).

Auth is an async FastAPI dependency (:func:`require`), so a request without a valid key gets
401 before its body is validated (422). Errors of :mod:`ddso.security.errors` become their
HTTP status with headers; a backend that is down (:class:`ddso.errors.ServiceError`) becomes
503, never a 500.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse, Response

from ddso.config import Settings
from ddso.errors import ServiceError
from ddso.security.body_size import BodySizeLimit
from ddso.security.errors import SecurityError
from ddso.security.idempotency import (
    HEADER,
    IdempotencyStore,
    MemoryIdempotencyBackend,
    RedisIdempotencyBackend,
    request_fingerprint,
)
from ddso.security.keys import (
    ApiKeyStore,
    CachedKeyBackend,
    FileKeyBackend,
    RedisKeyBackend,
    bearer_token,
)
from ddso.security.ratelimit import (
    FailoverRateLimiter,
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    enforce,
)
from ddso.security.validation import validation_error_handler


@dataclass
class Security:
    keys: ApiKeyStore
    limiter: RateLimiter
    idempotency: IdempotencyStore
    max_body_bytes: int
    shared: bool
    """True when the state lives in Redis (any number of replicas)."""


def key_store(settings: Settings) -> ApiKeyStore:
    """The API keys of ``settings``: Redis when ``redis.url`` is set, else the key file."""
    secret = settings.api_key_hash_key_bytes()
    if settings.redis.url:
        from ddso.io.redis import make_redis

        return ApiKeyStore(
            RedisKeyBackend(make_redis(settings.redis), settings.redis.key_prefix), secret
        )
    return ApiKeyStore(FileKeyBackend(settings.api_keys_path()), secret)


def build_security(settings: Settings) -> Security:
    sec = settings.security
    store_kwargs: dict[str, Any] = {
        "ttl_s": sec.idempotency_ttl_s,
        "lock_ttl_s": sec.idempotency_lock_ttl_s,
        "wait_s": sec.idempotency_wait_s,
    }
    if settings.redis.url:
        from ddso.io.redis import make_redis

        client, prefix = make_redis(settings.redis), settings.redis.key_prefix
        secret = settings.api_key_hash_key_bytes()
        rate, burst = sec.rate_limit_per_s, sec.rate_limit_burst
        return Security(
            keys=ApiKeyStore(
                CachedKeyBackend(RedisKeyBackend(client, prefix), ttl_s=sec.api_key_cache_s),
                secret,
            ),
            limiter=FailoverRateLimiter(
                RedisRateLimiter(client, rate, burst, prefix), LocalRateLimiter(rate, burst)
            ),
            idempotency=IdempotencyStore(RedisIdempotencyBackend(client, prefix), **store_kwargs),
            max_body_bytes=sec.max_body_bytes,
            shared=True,
        )
    return Security(
        keys=key_store(settings),
        limiter=LocalRateLimiter(sec.rate_limit_per_s, sec.rate_limit_burst),
        idempotency=IdempotencyStore(
            MemoryIdempotencyBackend(sec.idempotency_max_entries), **store_kwargs
        ),
        max_body_bytes=sec.max_body_bytes,
        shared=False,
    )


async def _security_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SecurityError)
    return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=exc.headers)


async def _service_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"detail": f"a backing service is unavailable: {exc}"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install(app: FastAPI, security: Security) -> FastAPI:
    """Put ``security`` on ``app``: state, error handlers and the body-size middleware."""
    app.state.security = security
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(SecurityError, _security_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_middleware(BodySizeLimit, max_bytes=security.max_body_bytes)
    return app


def require(scope: str) -> Callable[[Request], Awaitable[str]]:
    """A dependency that authenticates the bearer key for ``scope``, rate-limits it and
    returns the key id."""

    async def authenticated_key(request: Request) -> str:
        security: Security = request.app.state.security
        token = bearer_token(request.headers.get("authorization"))
        key_id = security.keys.authenticate(token, scope)
        enforce(security.limiter, key_id)
        return key_id

    authenticated_key.__name__ = f"require_{scope}"
    return authenticated_key


async def idempotent(
    request: Request,
    namespace: str,
    payload: Any,
    handler: Callable[[], Awaitable[dict[str, Any]]],
) -> Response:
    """Run ``handler`` once per ``Idempotency-Key`` (when the header is sent) and answer."""
    key = request.headers.get(HEADER)
    if key is None:
        return JSONResponse(await handler())
    security: Security = request.app.state.security
    body, replayed = await security.idempotency.run_async(
        namespace, key, request_fingerprint(payload), handler
    )
    return JSONResponse(body, headers={"Idempotent-Replayed": "true" if replayed else "false"})
