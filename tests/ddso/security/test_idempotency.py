"""Idempotency keys over both backends (in-process and Redis)."""

import asyncio
import threading
import time

import pytest

from ddso.security.errors import (
    IdempotencyConflictError,
    IdempotencyInProgressError,
    IdempotencyKeyError,
)
from ddso.security.idempotency import (
    Claim,
    IdempotencyStore,
    MemoryIdempotencyBackend,
    RedisIdempotencyBackend,
    Replay,
    request_fingerprint,
)

NS = "decide.0123456789ab"
FP = request_fingerprint({"customer_id": "C1"})
OTHER_FP = request_fingerprint({"customer_id": "C2"})


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
def make_store(request):
    """``make_store(**options)``: stores that share one backend, like replicas do."""
    if request.param == "memory":
        backend = MemoryIdempotencyBackend()
    else:
        backend = RedisIdempotencyBackend(
            request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix")
        )
    return lambda **options: IdempotencyStore(backend, **{"wait_s": 0.05, **options})


def test_a_repeat_with_the_same_body_replays_the_stored_response(make_store):
    store = make_store()
    claim = store.begin(NS, "k-1", FP)
    assert isinstance(claim, Claim)
    assert store.complete(claim, {"decision_id": "d1", "score": 0.25})
    again = store.begin(NS, "k-1", FP)
    assert again == Replay({"decision_id": "d1", "score": 0.25})


def test_the_same_key_with_another_body_is_a_409_conflict(make_store):
    store = make_store()
    store.complete(store.begin(NS, "k-1", FP), {"ok": True})
    with pytest.raises(IdempotencyConflictError, match="different request body") as err:
        store.begin(NS, "k-1", OTHER_FP)
    assert err.value.status_code == 409
    # Also while the first request is still in flight.
    store.begin(NS, "k-2", FP)
    with pytest.raises(IdempotencyConflictError, match="different request body"):
        store.begin(NS, "k-2", OTHER_FP)


def test_namespaces_keep_clients_and_endpoints_apart(make_store):
    store = make_store()
    store.complete(store.begin(NS, "k-1", FP), {"ok": True})
    assert isinstance(store.begin("decide.ffffffffffff", "k-1", FP), Claim)
    assert isinstance(store.begin("feedback.0123456789ab", "k-1", OTHER_FP), Claim)


def test_a_duplicate_in_flight_waits_then_gets_409_in_progress(make_store):
    store = make_store(wait_s=0.05)
    store.begin(NS, "k-1", FP)
    started = time.monotonic()
    with pytest.raises(IdempotencyInProgressError, match="in progress") as err:
        store.begin(NS, "k-1", FP)
    assert time.monotonic() - started >= 0.05
    assert err.value.status_code == 409 and err.value.headers == {"Retry-After": "1"}


def test_a_duplicate_in_flight_gets_the_answer_once_it_is_stored(make_store):
    first, second = make_store(), make_store(wait_s=2.0)
    claim = first.begin(NS, "k-1", FP)
    timer = threading.Timer(0.05, first.complete, args=(claim, {"n": 1}))
    timer.start()
    try:
        assert second.begin(NS, "k-1", FP) == Replay({"n": 1})
    finally:
        timer.join()


def test_a_released_key_runs_again(make_store):
    store = make_store()
    store.release(store.begin(NS, "k-1", FP))
    assert isinstance(store.begin(NS, "k-1", OTHER_FP), Claim)


def test_a_stale_claim_is_taken_over_and_cannot_overwrite(make_store):
    store = make_store(lock_ttl_s=0.05)
    stale = store.begin(NS, "k-1", FP)
    time.sleep(0.08)
    fresh = store.begin(NS, "k-1", FP)
    assert isinstance(fresh, Claim) and fresh != stale
    assert store.complete(fresh, {"n": "fresh"})
    assert not store.complete(stale, {"n": "stale"})
    store.release(stale)  # not the holder: nothing happens
    assert store.begin(NS, "k-1", FP) == Replay({"n": "fresh"})


def test_stored_responses_expire(make_store):
    store = make_store(ttl_s=0.05)
    store.complete(store.begin(NS, "k-1", FP), {"n": 1})
    time.sleep(0.08)
    assert isinstance(store.begin(NS, "k-1", OTHER_FP), Claim)


def test_run_async_runs_the_handler_once_and_releases_on_failure(make_store):
    store = make_store()
    calls = []

    async def handler():
        calls.append(1)
        return {"n": len(calls)}

    async def failing():
        raise RuntimeError("model unavailable")

    async def scenario():
        first = await store.run_async(NS, "k-1", FP, handler)
        second = await store.run_async(NS, "k-1", FP, handler)
        with pytest.raises(RuntimeError):
            await store.run_async(NS, "k-2", FP, failing)
        third = await store.run_async(NS, "k-2", FP, handler)
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first == ({"n": 1}, False) and second == ({"n": 1}, True)
    assert third == ({"n": 2}, False)


def test_concurrent_duplicates_on_two_replicas_run_once(make_store):
    replicas = [make_store(wait_s=2.0), make_store(wait_s=2.0)]
    runs, results = [], []

    def request(store):
        outcome = store.begin(NS, "k-1", FP)
        if isinstance(outcome, Claim):
            runs.append(1)
            time.sleep(0.05)
            store.complete(outcome, {"n": 1})
            results.append({"n": 1})
        else:
            results.append(outcome.response)

    threads = [threading.Thread(target=request, args=(r,)) for r in replicas for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runs) == 1 and results == [{"n": 1}] * 6


def test_a_response_that_is_not_json_releases_the_claim(make_store):
    store = make_store()
    claim = store.begin(NS, "k-1", FP)
    with pytest.raises(ValueError):
        store.complete(claim, {"score": float("nan")})
    assert isinstance(store.begin(NS, "k-1", FP), Claim)


@pytest.mark.unit
@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "ünïcode", "a/b"])
def test_malformed_keys_are_422_naming_the_header(bad):
    store = IdempotencyStore(MemoryIdempotencyBackend())
    with pytest.raises(IdempotencyKeyError, match="Idempotency-Key") as err:
        store.begin(NS, bad, FP)
    assert err.value.status_code == 422


@pytest.mark.unit
def test_fingerprints_ignore_key_order_and_refuse_nan():
    assert request_fingerprint({"a": 1, "b": [1.5]}) == request_fingerprint({"b": [1.5], "a": 1})
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})
    with pytest.raises(ValueError):
        request_fingerprint({"a": float("inf")})


@pytest.mark.unit
def test_the_in_process_backend_is_bounded(clock):
    backend = MemoryIdempotencyBackend(max_entries=3, clock=clock)
    store = IdempotencyStore(backend, ttl_s=10)
    for i in range(5):
        store.complete(store.begin(NS, f"k-{i}", FP), {"i": i})
    assert len(backend) == 3
    assert isinstance(store.begin(NS, "k-0", FP), Claim)  # the oldest was evicted
    assert store.begin(NS, "k-4", FP) == Replay({"i": 4})
    clock.advance(11)  # k-3 and k-4 expire; k-0's claim (30 s) does not
    store.begin(NS, "k-new", FP)
    assert len(backend) == 2


@pytest.mark.integration
def test_redis_entries_carry_their_ttl(redis_client, redis_prefix):
    store = IdempotencyStore(
        RedisIdempotencyBackend(redis_client, redis_prefix), ttl_s=600, lock_ttl_s=30
    )
    claim = store.begin(NS, "k-1", FP)
    key = f"{redis_prefix}idem:{NS}:k-1"
    assert 0 < redis_client.pttl(key) <= 30_000
    store.complete(claim, {"n": 1})
    assert 30_000 < redis_client.pttl(key) <= 600_000
