"""Retraining through `ray job submit` against a local cluster started with `ray start`.

The cluster is this test's own (`ray start --head --block` on free ports, never 6379, where
Redis listens), separate from the suite's Ray session; the job uploads the working tree and
runs `python -m pipelines.train_propensity` there, registering a model in a shared folder.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ddso.models.registry import ModelRegistry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_trains_and_registers(tmp_path):
    from ddso.data.generator import GeneratorConfig, generate

    data = tmp_path / "data"
    generate(GeneratorConfig(customers=600, days=120, seed=2), data, progress=False)
    gcs, dash = free_port(), free_port()
    # Ray's Unix sockets live under --temp-dir, and a socket path must stay under ~107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="rj-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DDSO_"))}
    # A throwaway local cluster: no token to manage; clusters use token auth (see README).
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    # The job's `python` must be this environment's, as it is in a cluster's image.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Every port the node's agents use is free-picked: the suite's own Ray session already
    # holds the defaults (e.g. the dashboard agent's 52365), and a clash leaves the new node
    # without an agent ("No available agent to submit job").
    agent_ports = {
        flag: free_port()
        for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                     "metrics-export-port", "runtime-env-agent-port", "ray-client-server-port")
    }  # fmt: skip
    start = [
        str(RAY), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--temp-dir={ray_tmp}", *(f"--{flag}={port}" for flag, port in agent_ports.items()),
    ]  # fmt: skip
    log = open(tmp_path / "ray-start.log", "wb")  # noqa: SIM115 - closed in finally
    head = subprocess.Popen(start, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 180
        while subprocess.run([str(RAY), "job", "list", "--address", address], env=env,
                             capture_output=True).returncode != 0:
            assert head.poll() is None, (tmp_path / "ray-start.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Jobs API did not come up in 180 s"
            time.sleep(1)
        registry = tmp_path / "registry"
        submit = [
            str(RAY), "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
            "python", "-m", "pipelines.train_propensity", "--data", str(data),
            "--registry", str(registry), "--storage", str(tmp_path / "results"),
        ]  # fmt: skip
        # The Jobs API can answer before the node's agent is up; Ray then asks to retry.
        retry_until = time.monotonic() + 120
        while True:
            job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
            if "No available agent" not in job.stderr or time.monotonic() > retry_until:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout
        champion = ModelRegistry(registry).champion("propensity")
        assert champion.version == "v0001" and champion.metadata["metrics"]["rows_train"] > 0
        assert "XGBoostTrainer" in champion.metadata["trainer"]
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=90)
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
