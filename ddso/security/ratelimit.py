"""A token bucket per API key: ``burst`` requests at once, refilled at ``rate_per_s``.

Two implementations of one contract (:class:`RateLimiter`): :class:`LocalRateLimiter` holds the
buckets in this process (the embedded default: one replica), :class:`RedisRateLimiter` holds
them in Redis so that every replica draws on the same budget. The Redis refill and take happen
in one Lua script, so two replicas can never both spend the last token, and the script reads
the server's clock (``TIME``), so replicas with skewed clocks still agree.

A bucket that has been full for a while and one that never existed behave the same, so Redis
buckets expire once they would have refilled completely: idle keys cost no memory.

:class:`FailoverRateLimiter` keeps the service answering when Redis is down: each replica
then enforces the limit on its own (so the service-wide budget is up to the number of
replicas times the limit while the outage lasts) and goes back to the shared buckets as soon
as Redis answers again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from ddso.errors import ServiceError
from ddso.io.redis import key as redis_key
from ddso.security.errors import RateLimitedError

Clock = Callable[[], float]

# KEYS[1]: the bucket (hash: tokens, ts). ARGV: rate per second, burst, cost, and the time in
# seconds, or '' to read the server's clock. Returns {allowed, tokens left, retry after (s)}
# with the numbers as strings (Lua numbers returned to Redis are truncated to integers).
_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if not tokens then
  tokens, ts = burst, now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed, retry = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry)}
"""


@dataclass(frozen=True)
class RateDecision:
    """The answer to one request: whether it may go on, and if not, when to retry."""

    allowed: bool
    remaining: float
    """Tokens left in the bucket after this request."""
    retry_after_s: float
    """0 when allowed; else the seconds until the bucket holds enough tokens."""


class RateLimiter(Protocol):
    rate_per_s: float
    burst: float

    def take(self, key: str, cost: float = 1.0) -> RateDecision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them; never blocks."""
        ...


def _check_params(rate_per_s: float, burst: float) -> None:
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
    if not (math.isfinite(burst) and burst >= 1):
        raise ValueError(f"burst must be at least 1, got {burst!r}")


def _check_cost(cost: float, burst: float) -> None:
    if not (0 < cost <= burst):
        raise ValueError(f"cost {cost!r} must be > 0 and at most the burst ({burst!r})")


def enforce(limiter: RateLimiter, key: str, cost: float = 1.0) -> RateDecision:
    """Take from ``key``'s bucket or raise :class:`RateLimitedError` (HTTP 429, Retry-After)."""
    decision = limiter.take(key, cost)
    if not decision.allowed:
        raise RateLimitedError(
            f"rate limit of {limiter.rate_per_s:g} requests/s (burst {limiter.burst:g}) "
            f"exceeded for API key {key}; retry in {decision.retry_after_s:.2f} s",
            decision.retry_after_s,
        )
    return decision


class LocalRateLimiter:
    """Buckets in this process: exact for one replica, per-replica budgets with several."""

    def __init__(self, rate_per_s: float, burst: float, clock: Clock = time.monotonic):
        _check_params(rate_per_s, burst)
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> RateDecision:
        _check_cost(cost, self.burst)
        with self._lock:
            now = self._clock()
            tokens, ts = self._buckets.get(key, (self.burst, now))
            if now > ts:
                tokens = min(self.burst, tokens + (now - ts) * self.rate_per_s)
                ts = now
            if tokens >= cost:
                tokens -= cost
                decision = RateDecision(True, tokens, 0.0)
            else:
                decision = RateDecision(False, tokens, (cost - tokens) / self.rate_per_s)
            self._buckets[key] = (tokens, ts)
        return decision


class RedisRateLimiter:
    """Buckets in Redis under ``<prefix>ratelimit:<key>``, one budget for every replica.

    ``clock`` is for tests; by default the script reads the Redis server's clock.
    """

    def __init__(
        self,
        client: redis.Redis,
        rate_per_s: float,
        burst: float,
        prefix: str = "ddso:",
        clock: Clock | None = None,
    ):
        _check_params(rate_per_s, burst)
        self.client = client
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.prefix = prefix
        self._clock = clock
        self._script = client.register_script(_TAKE)

    def take(self, key: str, cost: float = 1.0) -> RateDecision:
        _check_cost(cost, self.burst)
        now = "" if self._clock is None else repr(self._clock())
        args = [repr(float(self.rate_per_s)), repr(float(self.burst)), repr(float(cost)), now]
        try:
            allowed, tokens, retry = self._script(
                keys=[redis_key(self.prefix, "ratelimit", key)], args=args
            )
        except redis.RedisError as e:
            raise ServiceError(f"redis: rate limit check for API key {key} failed ({e})") from e
        return RateDecision(bool(allowed), float(tokens), float(retry))


class FailoverRateLimiter:
    """The shared (Redis) limiter, or this replica's own buckets while it fails."""

    def __init__(self, shared: RateLimiter, local: RateLimiter, retry_s: float = 1.0,
                 clock: Clock = time.monotonic):
        if (shared.rate_per_s, shared.burst) != (local.rate_per_s, local.burst):
            raise ValueError("the shared and local limiters must have the same rate and burst")
        self.shared = shared
        self.local = local
        self.rate_per_s = shared.rate_per_s
        self.burst = shared.burst
        self.retry_s = retry_s
        self._clock = clock
        self._down_until = 0.0
        self.failovers = 0
        """How many times the shared limiter failed and the local one took over."""

    def take(self, key: str, cost: float = 1.0) -> RateDecision:
        if self._clock() >= self._down_until:
            try:
                return self.shared.take(key, cost)
            except ServiceError:
                # Do not wait on a dead Redis for every request: try again in retry_s.
                self._down_until = self._clock() + self.retry_s
                self.failovers += 1
        return self.local.take(key, cost)
