"""The decision API in one plain uvicorn process, without Ray Serve.

The same app (:func:`serve_deployments.api.make_api`) over the same service, with the
assessment in-process: the baseline ``ddso bench serve`` measures Serve's overhead against.
Not the way to run ddso (no replicas, autoscaling or rolling updates); a measuring stick.

    python -m serve_deployments.plain --args '{"registry": ..., ...}' --port 8001

:func:`subprocess_server` starts it as a child process on a free port (benchmarks, tests).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from serve_deployments.api import make_api
from serve_deployments.service import AppArgs, AssessmentClient, AssessmentModel, DecisionService


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m serve_deployments.plain", description=__doc__)
    p.add_argument("--args", required=True, help="AppArgs as JSON (as serve_config.yaml's).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    ns = p.parse_args(argv)
    args = AppArgs.model_validate(json.loads(ns.args))
    service = DecisionService(
        args, AssessmentClient.local(AssessmentModel(args.registry, args.products))
    )
    try:
        uvicorn.run(make_api(service), host=ns.host, port=ns.port, log_level="warning",
                    access_log=False)
    finally:
        service.close()


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def subprocess_server(args: dict[str, Any], timeout_s: float = 120.0) -> Iterator[str]:
    """The app over ``args`` in a child process on a free port, once it answers ``/healthz``;
    yields its base URL and stops it on exit."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serve_deployments.plain", "--port", str(port),
         "--args", json.dumps(args)],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited with {proc.returncode}: "
                                   f"{proc.stderr.read()[-2000:] if proc.stderr else ''}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app at {url} did not answer within {timeout_s:g} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
