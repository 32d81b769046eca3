"""The main job end to end on the embedded default: generate, featurize, train, serve, decide."""

import json
import socket

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_once_prints_decisions_from_serve(ray_session, tmp_path, monkeypatch, capsys):
    from pipelines import up

    monkeypatch.setenv("DDSO_HOME", str(tmp_path / "home"))
    code = up.main(up.Args(customers=800, days=60, seed=3, requests=3, once=True, port=free_port()))
    out = capsys.readouterr().out
    assert code == 0
    decisions = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(decisions) == 3
    for d in decisions:
        assert d["decision_id"] and d["versions"]["propensity"].startswith("propensity:v")
        assert 0.0 <= d["scores"]["propensity"] <= 1.0
        assert d["scores"]["band"] in {"A", "B", "C", "D", "E"}
        assert set(d["action"]) == {"channel", "offer_id"}
        assert not d["cold_start"]
    assert "serving at http://127.0.0.1:" in out
    for stage in ("[1/5]", "[3/5] featurize with Ray Data", "[4/5] train", "[5/5] deploy"):
        assert stage in out
    home = tmp_path / "home"
    assert (home / "registry" / "propensity" / "CHAMPION").exists()
    assert any(p.suffix == ".parquet" for p in (home / "offline").iterdir())
