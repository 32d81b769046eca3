"""The command line: user errors are one line and exit code 2; the bench runner's contract."""

import json

import pytest

from ddso.cli import main

pytestmark = pytest.mark.unit


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "data" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["up", "--customers", "0"], "--customers"),
        (["up", "--days", "many"], "'many' is not an integer"),
        (["data", "generate", "--days", "5", "--out", "x"], "--customers"),
        (["nope"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert needle in one_line_error(capsys)


def test_unknown_benchmark_lists_the_known_ones(capsys):
    assert main(["bench", "no_such_bench"]) == 2
    err = one_line_error(capsys)
    assert "no_such_bench" in err and "generate" in err


def test_bad_bench_option(capsys):
    assert main(["bench", "generate", "-o", "customers"]) == 2
    assert "KEY=VALUE" in one_line_error(capsys)


def test_config_errors_exit_2_naming_file_and_key(capsys, tmp_path, monkeypatch):
    cfg = tmp_path / "ddso.yaml"
    cfg.write_text("kafka:\n  bootstrap: k:9092\n")
    assert main(["--config", str(cfg), "config", "show"]) == 2
    err = one_line_error(capsys)
    assert str(cfg) in err and "kafka.bootstrap" in err
    monkeypatch.setenv("DDSO_REDIS__URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DDSO_KAFKA__SASL_PASSWORD", "hunter2")
    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    assert json.loads(shown)["redis"]["url"] == "redis://127.0.0.1:6379/0"
    assert "hunter2" not in shown


def test_bench_writes_one_flat_json_object(capsys, tmp_path):
    out = tmp_path / "bench" / "gen.json"
    assert (
        main(["bench", "generate", "--json", str(out), "-o", "customers=200", "-o", "days=20"]) == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    written = json.loads(out.read_text())
    assert printed == written
    assert written["benchmark"] == "generate" and written["cores"] >= 1
    assert written["version_ray"] == "2.60.0" and written["events_per_s"] > 0
    assert all(not isinstance(v, dict | list) for v in written.values())


def test_publish_replays_a_dataset_into_the_local_log(capsys, tmp_path, monkeypatch):
    from ddso.data.generator import GeneratorConfig, generate
    from ddso.io.eventlog import LocalEventLog

    generate(GeneratorConfig(customers=50, days=10, seed=1), tmp_path / "d", progress=False)
    monkeypatch.setenv("DDSO_HOME", str(tmp_path / "home"))
    assert main(["data", "publish", str(tmp_path / "d"), "--partitions", "2"]) == 0
    n = int(capsys.readouterr().out.split()[1])
    log = LocalEventLog(tmp_path / "home" / "events", readonly=True)
    assert n > 0 and log.end_offset(0) + log.end_offset(1) == n
    assert main(["data", "publish", str(tmp_path / "missing")]) == 2
    assert "manifest.json" in one_line_error(capsys)


def test_keys_create_list_revoke(capsys, tmp_path, monkeypatch):
    from ddso.config import load_settings
    from serve_deployments.security import key_store

    monkeypatch.setenv("DDSO_HOME", str(tmp_path / "home"))
    assert main(["keys", "create", "--scope", "decide,ingest", "--name", "app"]) == 0
    out = capsys.readouterr().out.splitlines()
    created = json.loads(out[0])
    token = out[1].rsplit(" ", 1)[1]
    assert created["scopes"] == ["decide", "ingest"] and token.startswith("ddso_")
    store = key_store(load_settings())
    assert store.authenticate(token, "ingest") == created["key_id"]

    assert main(["keys", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [k["key_id"] for k in listed] == [created["key_id"]] and listed[0]["name"] == "app"
    assert token not in json.dumps(listed) and "token_hash" not in listed[0]

    assert main(["keys", "revoke", created["key_id"]]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_at"] is not None
    assert main(["keys", "revoke", "nope"]) == 2
    assert "no API key" in one_line_error(capsys)
    assert main(["keys", "create", "--scope", "root"]) == 2
    assert "unknown API key scope" in one_line_error(capsys)


def test_audit_replay_without_audit_files_is_a_user_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DDSO_HOME", str(tmp_path / "home"))
    assert main(["audit", "replay", "d-1", "--audit", str(tmp_path / "none")]) == 2
    assert "no audit files" in one_line_error(capsys)
