"""The token bucket over both implementations, and the Redis one shared by replicas."""

import threading
import time

import pytest

from ddso.security.errors import RateLimitedError
from ddso.security.ratelimit import LocalRateLimiter, RedisRateLimiter, enforce


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
def make_limiter(request, clock):
    """``make_limiter(rate_per_s, burst)``: a limiter on the test's hand-moved clock."""
    if request.param == "memory":
        return lambda rate, burst: LocalRateLimiter(rate, burst, clock=clock)
    client = request.getfixturevalue("redis_client")
    prefix = request.getfixturevalue("redis_prefix")
    return lambda rate, burst: RedisRateLimiter(client, rate, burst, prefix=prefix, clock=clock)


def test_a_full_bucket_allows_the_burst_then_refuses(make_limiter):
    limiter = make_limiter(2.0, 3)
    decisions = [limiter.take("k1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after_s == pytest.approx(0.5)  # one token at 2 per second


def test_the_bucket_refills_at_the_rate_up_to_the_burst(make_limiter, clock):
    limiter = make_limiter(2.0, 3)
    for _ in range(3):
        limiter.take("k1")
    clock.advance(0.25)
    refused = limiter.take("k1")
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.25)
    clock.advance(0.25)
    assert limiter.take("k1").allowed
    clock.advance(3600)  # a long pause refills only up to the burst
    assert [limiter.take("k1").allowed for _ in range(4)] == [True, True, True, False]


def test_keys_have_separate_buckets_and_costs_count(make_limiter):
    limiter = make_limiter(1.0, 4)
    assert limiter.take("k1", cost=3).allowed
    d = limiter.take("k1", cost=2)
    assert not d.allowed and d.retry_after_s == pytest.approx(1.0)
    assert limiter.take("k2", cost=4).allowed
    with pytest.raises(ValueError, match="at most the burst"):
        limiter.take("k1", cost=5)


def test_a_clock_going_back_neither_refills_nor_breaks(make_limiter, clock):
    limiter = make_limiter(1.0, 1)
    assert limiter.take("k1").allowed
    clock.advance(-10)
    d = limiter.take("k1")
    assert not d.allowed and d.retry_after_s == pytest.approx(1.0)


def test_enforce_raises_429_with_retry_after(make_limiter):
    limiter = make_limiter(0.5, 1)
    enforce(limiter, "k1")
    with pytest.raises(RateLimitedError, match="0.5 requests/s.*k1.*2.00 s") as err:
        enforce(limiter, "k1")
    assert err.value.status_code == 429 and err.value.headers == {"Retry-After": "2"}


@pytest.mark.unit
def test_bad_parameters_are_refused():
    for rate, burst in [(0, 1), (-1, 1), (float("nan"), 1), (1, 0.5), (1, float("inf"))]:
        with pytest.raises(ValueError):
            LocalRateLimiter(rate, burst)


@pytest.mark.integration
def test_two_replicas_sharing_redis_spend_one_budget(redis_client, redis_prefix, clock):
    a = RedisRateLimiter(redis_client, 1.0, 5, prefix=redis_prefix, clock=clock)
    b = RedisRateLimiter(redis_client, 1.0, 5, prefix=redis_prefix, clock=clock)
    allowed = [(a if i % 2 else b).take("k1").allowed for i in range(8)]
    assert allowed == [True] * 5 + [False] * 3
    clock.advance(2.0)  # two tokens back, whichever replica asks
    assert [a.take("k1").allowed, b.take("k1").allowed, a.take("k1").allowed] == [
        True,
        True,
        False,
    ]


@pytest.mark.integration
def test_concurrent_replicas_never_overspend(redis_client, redis_prefix):
    replicas = [RedisRateLimiter(redis_client, 0.001, 30, prefix=redis_prefix) for _ in range(2)]
    allowed = []

    def hammer(limiter):
        allowed.extend(limiter.take("k1").allowed for _ in range(40))

    threads = [threading.Thread(target=hammer, args=(r,)) for r in replicas for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 160 and sum(allowed) == 30


@pytest.mark.integration
def test_the_server_clock_refills_and_idle_buckets_expire(redis_client, redis_prefix):
    limiter = RedisRateLimiter(redis_client, 20.0, 2, prefix=redis_prefix)
    assert limiter.take("k1").allowed and limiter.take("k1").allowed
    refused = limiter.take("k1")
    assert not refused.allowed and 0 < refused.retry_after_s <= 0.05
    # The bucket lives only until it would be full again (plus a second).
    assert 0 < redis_client.pttl(f"{redis_prefix}ratelimit:k1") <= 1100
    time.sleep(refused.retry_after_s + 0.01)
    assert limiter.take("k1").allowed


@pytest.mark.integration
def test_failover_limits_locally_while_redis_is_down_and_returns_to_the_shared_buckets(
    redis_client, redis_prefix, clock
):
    import redis

    from ddso.security.ratelimit import FailoverRateLimiter

    shared = RedisRateLimiter(redis_client, 1.0, 2, prefix=redis_prefix, clock=clock)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing there
    down = RedisRateLimiter(dead, 1.0, 2, prefix=redis_prefix, clock=clock)
    limiter = FailoverRateLimiter(down, LocalRateLimiter(1.0, 2, clock=clock), retry_s=5,
                                  clock=clock)
    assert [limiter.take("k").allowed for _ in range(3)] == [True, True, False]  # local bucket
    assert limiter.failovers == 1  # one failed try, then the local bucket until retry_s
    limiter.shared = shared  # Redis is back
    clock.advance(5)
    assert limiter.take("k").allowed and limiter.failovers == 1
    assert redis_client.exists(f"{redis_prefix}ratelimit:k")


@pytest.mark.unit
def test_failover_needs_limiters_of_the_same_limit():
    from ddso.security.ratelimit import FailoverRateLimiter

    with pytest.raises(ValueError, match="same rate"):
        FailoverRateLimiter(LocalRateLimiter(1.0, 2), LocalRateLimiter(2.0, 2))
