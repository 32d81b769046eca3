"""Idempotency keys: a retried request gets the first answer instead of a second effect.

The first request with an ``Idempotency-Key`` claims it with an in-flight marker (set only if
absent, expiring after ``lock_ttl_s`` so a crashed replica cannot hold it forever), runs, and
stores its response with a fingerprint of its body for ``ttl_s``. Then:

- the same key with the same body gets the stored response back (nothing runs again);
- the same key with a different body is refused with HTTP 409 Conflict (the key was reused
  for another request: a client bug that must not be papered over by replaying an answer to a
  different question; 409 rather than 422 because the body itself is valid);
- the same key while the first request still runs waits up to ``wait_s`` for its answer, then
  is refused with 409 and ``Retry-After``;
- a request that fails releases its claim, so a retry runs afresh.

Keys live in a caller-chosen namespace that must include the API key id (e.g.
``decide.<key id>``), so one client can never replay another client's response.

Two backends: :class:`MemoryIdempotencyBackend` (the embedded default: one replica) and
:class:`RedisIdempotencyBackend` (shared by every replica; each step is one atomic script).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from ddso.errors import ServiceError
from ddso.io.redis import key as redis_key
from ddso.security.errors import (
    IdempotencyConflictError,
    IdempotencyInProgressError,
    IdempotencyKeyError,
)

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[A-Za-z0-9._~:-]{1,128}$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
# Stored values: "p <owner token> <fingerprint>" while in flight (the owner token tells the
# claim's holder from a later one), then "d <fingerprint> <response JSON>".
_PENDING, _DONE = "p", "d"


def request_fingerprint(payload: Any) -> str:
    """SHA-256 of ``payload`` as canonical JSON (sorted keys, no spaces, no NaN).

    Pass the validated request model's ``model_dump(mode="json")``: equal requests spelled
    differently (key order, an omitted default) then share one fingerprint.
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check_key(key: str) -> str:
    """``key`` if it is a valid idempotency key, else :class:`IdempotencyKeyError` (422)."""
    if not _KEY.match(key):
        raise IdempotencyKeyError(
            f"header {HEADER}: {key[:40]!r} is not a valid key; use 1 to 128 characters "
            "from A-Z a-z 0-9 . _ ~ : - (a UUID is a good choice)"
        )
    return key


@dataclass(frozen=True)
class Claim:
    """This request holds the key: run it, then :meth:`IdempotencyStore.complete` or
    :meth:`IdempotencyStore.release` it."""

    storage_key: str
    marker: str


@dataclass(frozen=True)
class Replay:
    """A response stored by an earlier request with the same key and body."""

    response: Any


class IdempotencyBackend(Protocol):
    """Atomic string operations with expiry, the only thing :class:`IdempotencyStore` needs."""

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        """Set ``key`` to ``value`` if absent and return None; else return the current value."""
        ...

    def finish(self, key: str, expected: str, value: str, ttl_s: float) -> bool:
        """Set ``key`` to ``value`` if it holds ``expected`` or nothing; False otherwise."""
        ...

    def release(self, key: str, expected: str) -> None:
        """Delete ``key`` if it still holds ``expected``."""
        ...


class IdempotencyStore:
    """The idempotency rules of the module docstring over an :class:`IdempotencyBackend`."""

    def __init__(
        self,
        backend: IdempotencyBackend,
        *,
        ttl_s: float = 3600.0,
        lock_ttl_s: float = 30.0,
        wait_s: float = 0.5,
        poll_s: float = 0.02,
    ):
        if not (ttl_s > 0 and lock_ttl_s > 0 and wait_s >= 0 and poll_s > 0):
            raise ValueError(
                f"need ttl_s > 0, lock_ttl_s > 0, wait_s >= 0, poll_s > 0; got {ttl_s=}, "
                f"{lock_ttl_s=}, {wait_s=}, {poll_s=}"
            )
        self.backend = backend
        self.ttl_s = ttl_s
        self.lock_ttl_s = lock_ttl_s
        self.wait_s = wait_s
        self.poll_s = poll_s

    def try_begin(self, namespace: str, key: str, fingerprint: str) -> Claim | Replay | None:
        """Claim the key, or the stored response; None while another request holds it.

        Raises :class:`IdempotencyConflictError` (409) if the key was used with another body,
        and :class:`IdempotencyKeyError` (422) for a malformed key.
        """
        if not _NAMESPACE.match(namespace):
            raise ValueError(f"namespace {namespace!r} must match {_NAMESPACE.pattern}")
        if not fingerprint or " " in fingerprint:
            raise ValueError(f"fingerprint {fingerprint!r} must be non-empty, without spaces")
        storage_key = f"{namespace}:{check_key(key)}"
        marker = f"{_PENDING} {secrets.token_hex(8)} {fingerprint}"
        current = self.backend.claim(storage_key, marker, self.lock_ttl_s)
        if current is None:
            return Claim(storage_key, marker)
        state, _, rest = current.partition(" ")
        if state == _PENDING:
            stored_fp, body = rest.partition(" ")[2], None
        else:
            stored_fp, _, body = rest.partition(" ")
        if stored_fp != fingerprint:
            raise IdempotencyConflictError(
                f"{HEADER} {key!r} was already used with a different request body; "
                "use a new key for a new request"
            )
        return None if body is None else Replay(json.loads(body))

    def begin(self, namespace: str, key: str, fingerprint: str) -> Claim | Replay:
        """:meth:`try_begin`, waiting (blocking) up to ``wait_s`` while the key is in flight."""
        deadline = time.monotonic() + self.wait_s
        while (outcome := self.try_begin(namespace, key, fingerprint)) is None:
            if time.monotonic() >= deadline:
                raise self._in_progress(key)
            time.sleep(self.poll_s)
        return outcome

    async def begin_async(self, namespace: str, key: str, fingerprint: str) -> Claim | Replay:
        """:meth:`begin` for async handlers: waits without blocking the event loop."""
        deadline = time.monotonic() + self.wait_s
        while (outcome := self.try_begin(namespace, key, fingerprint)) is None:
            if time.monotonic() >= deadline:
                raise self._in_progress(key)
            await asyncio.sleep(self.poll_s)
        return outcome

    def complete(self, claim: Claim, response: Any) -> bool:
        """Store ``response`` (JSON-serialisable) for replays; False if the claim was lost.

        A claim is lost when the request outran ``lock_ttl_s`` and another request with the
        same key took over; the response is then not stored, the other one's will be.
        """
        fingerprint = claim.marker.rsplit(" ", 1)[1]
        try:
            body = json.dumps(response, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            self.release(claim)
            raise
        done = f"{_DONE} {fingerprint} {body}"
        return self.backend.finish(claim.storage_key, claim.marker, done, self.ttl_s)

    def release(self, claim: Claim) -> None:
        """Give the key up after a failure, so that a retry runs afresh."""
        self.backend.release(claim.storage_key, claim.marker)

    async def run_async(
        self,
        namespace: str,
        key: str,
        fingerprint: str,
        handler: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bool]:
        """``(response, replayed)``: the stored response, or ``await handler()`` stored.

        ``handler`` must return a JSON-serialisable value; if it raises, the claim is
        released and the exception propagates. If the response cannot be stored (Redis
        down), it is still returned: the work is done, and failing now would invite the
        very retry that runs it twice.
        """
        outcome = await self.begin_async(namespace, key, fingerprint)
        if isinstance(outcome, Replay):
            return outcome.response, True
        try:
            response = await handler()
        except BaseException:
            self.release(outcome)
            raise
        try:
            self.complete(outcome, response)
        except ServiceError as e:
            log.warning("idempotent response not stored, a retry would run again: %s", e)
        return response, False

    def _in_progress(self, key: str) -> IdempotencyInProgressError:
        return IdempotencyInProgressError(
            f"a request with {HEADER} {key!r} is still in progress; retry shortly"
        )


class MemoryIdempotencyBackend:
    """Entries in this process, oldest evicted beyond ``max_entries`` (bounded memory).

    Eviction only shortens the replay window of the oldest keys; it never replays a wrong
    answer.
    """

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _current(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            return None
        return entry[0]

    def _set(self, key: str, value: str, expires_at: float, now: float) -> None:
        self._entries[key] = (value, expires_at)
        self._entries.move_to_end(key)
        while self._entries:
            oldest, (_, oldest_expiry) = next(iter(self._entries.items()))
            if oldest_expiry > now and len(self._entries) <= self.max_entries:
                break
            del self._entries[oldest]

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        with self._lock:
            now = self._clock()
            current = self._current(key, now)
            if current is None:
                self._set(key, value, now + ttl_s, now)
            return current

    def finish(self, key: str, expected: str, value: str, ttl_s: float) -> bool:
        with self._lock:
            now = self._clock()
            current = self._current(key, now)
            if current is not None and current != expected:
                return False
            self._set(key, value, now + ttl_s, now)
            return True

    def release(self, key: str, expected: str) -> None:
        with self._lock:
            if self._current(key, self._clock()) == expected:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


# KEYS[1]: the entry. ARGV: the value, and for FINISH the expected one; ttl in milliseconds.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_FINISH = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisIdempotencyBackend:
    """Entries in Redis under ``<prefix>idem:<namespace>:<key>``, each step one script."""

    def __init__(self, client: redis.Redis, prefix: str = "ddso:"):
        self.client = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)

    def _key(self, key: str) -> str:
        return redis_key(self.prefix, "idem", key)

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        try:
            current = self._claim(keys=[self._key(key)], args=[value, _ms(ttl_s)])
        except redis.RedisError as e:
            raise ServiceError(f"redis: claiming idempotency key failed ({e})") from e
        return None if current is None else current.decode()

    def finish(self, key: str, expected: str, value: str, ttl_s: float) -> bool:
        try:
            done = self._finish(keys=[self._key(key)], args=[expected, value, _ms(ttl_s)])
        except redis.RedisError as e:
            raise ServiceError(f"redis: storing idempotent response failed ({e})") from e
        return bool(done)

    def release(self, key: str, expected: str) -> None:
        try:
            self._release(keys=[self._key(key)], args=[expected])
        except redis.RedisError as e:
            raise ServiceError(f"redis: releasing idempotency key failed ({e})") from e


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
