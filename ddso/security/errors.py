"""Errors of the security layer, each carrying the HTTP status and headers it maps to.

They derive from :class:`ddso.errors.UserError`, so the CLI reports them like any bad input;
the HTTP ingress turns one into ``status_code`` with ``headers``, and the message as the
``detail``. Messages never contain a secret token.
"""

from __future__ import annotations

from ddso.errors import UserError


class SecurityError(UserError):
    """A request refused by the security layer; ``status_code`` is the HTTP answer."""

    status_code = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.headers = headers or {}


class AuthenticationError(SecurityError):
    """No API key, a malformed one, an unknown one or a revoked one (HTTP 401)."""

    status_code = 401

    def __init__(self, message: str):
        super().__init__(message, {"WWW-Authenticate": 'Bearer realm="ddso"'})


class PermissionDeniedError(SecurityError):
    """A valid API key without the scope the endpoint needs (HTTP 403)."""

    status_code = 403


class RateLimitedError(SecurityError):
    """The API key's token bucket is empty (HTTP 429); ``retry_after_s`` says for how long."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: float):
        # Retry-After takes whole seconds; rounding down would invite an immediate retry.
        super().__init__(message, {"Retry-After": str(max(1, int(-(-retry_after_s // 1))))})
        self.retry_after_s = retry_after_s


class IdempotencyKeyError(SecurityError):
    """An ``Idempotency-Key`` header that breaks the format rule (HTTP 422)."""

    status_code = 422


class IdempotencyConflictError(SecurityError):
    """An idempotency key reused with a different body (HTTP 409)."""

    status_code = 409


class IdempotencyInProgressError(IdempotencyConflictError):
    """The first request with this idempotency key is still running (HTTP 409, retry later)."""

    def __init__(self, message: str):
        super().__init__(message, {"Retry-After": "1"})
