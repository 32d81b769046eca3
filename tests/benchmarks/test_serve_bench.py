import pytest

from benchmarks import serve as bench

pytestmark = [pytest.mark.ray, pytest.mark.integration]


def test_serve_bench_small_with_the_deep_hybrid(ray_session):
    m = bench.run({"customers": "400", "days": "90", "rates": "20,40", "seconds": "2",
                   "warmup": "1", "plain_rate": "20", "logic_calls": "50",
                   "recommender": "hybrid", "deep": "wide_deep", "deep_workers": "0",
                   "rec_rates": "20"})
    for key in ("r20", "r40", "rec_r20"):
        assert m[f"{key}_error_rate"] == 0
        assert 0 < m[f"{key}_p50_ms"] <= m[f"{key}_p99_ms"]
    assert m["r20_achieved_rps"] > 0
    assert m["plain_error_rate"] == 0 and 0 < m["plain_p50_ms"] <= m["plain_p99_ms"]
    assert 0 < m["logic_p50_us"] <= m["logic_p99_us"]
    assert 0 < m["rec_logic_p50_us"] <= m["rec_logic_p99_us"]
    assert m["recommender"] == "hybrid+wide_deep:v0001"  # what train_recommenders promoted
    assert m["serve_vs_plain_p99"] > 0
    assert m["bend_rps"] in (0, 20, 40)
