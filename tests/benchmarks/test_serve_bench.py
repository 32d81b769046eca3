import pytest

from benchmarks import serve as bench

pytestmark = [pytest.mark.ray, pytest.mark.integration]


def test_serve_bench_small(ray_session):
    m = bench.run({"customers": "400", "days": "90", "rate": "20", "seconds": "2",
                   "warmup": "1", "plain_calls": "50"})
    assert m["serve_requests"] == 40 and m["serve_ok"] == 40 and m["serve_errors"] == 0
    assert m["serve_unanswered"] == 0
    assert 0 < m["plain_p50_us"] <= m["plain_p99_us"]
    assert 0 < m["serve_p50_ms"] <= m["serve_p99_ms"] <= m["serve_max_ms"]
