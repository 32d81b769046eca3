"""The decision API in one plain uvicorn process, without Ray Serve.

The same app (:func:`serve_deployments.api.make_api`) over the same service, with the
assessment in-process: the baseline ``ddso bench serve`` measures Serve's overhead against.
Not the way to run ddso (no replicas, autoscaling or rolling updates); a measuring stick.

    python -m serve_deployments.plain --args '{"registry": ..., ...}' --port 8001
"""

from __future__ import annotations

import argparse
import json

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


if __name__ == "__main__":
    main()
