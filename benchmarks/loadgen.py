"""An open-loop HTTP load generator for ``POST /v1/decide``, run as its own process.

    python -m benchmarks.loadgen URL TOKEN CUSTOMERS_FILE --rate 300 --seconds 10 --warmup 2

``--recommendations K`` sends ``GET /v1/customers/{id}/recommendations?k=K`` instead.

Prints one JSON object: requests, ok, errors (non-200 answers, with the 429 and 503
counts), unanswered, achieved_rps (answers per second), p50_ms, p99_ms, max_ms.

Request ``i`` is due at ``start + i / rate``; a free connection sends it as soon as it is due,
and its latency counts from the due time, so a slow server shows as latency (no coordinated
omission) while the client stays cheap: raw HTTP/1.1 on kept-alive sockets, about a tenth of
httpx's cost per request (httpx could not offer 300/s on this machine kind). Requests still
unsent or unanswered 30 s after the last one was due count as ``unanswered``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   raw: bytes) -> int:
    """One HTTP/1.1 request on a kept-alive connection; the status code."""
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def requests(host: str, token: str, customers: list[str],
             recommendations_k: int | None = None) -> list[bytes]:
    """One raw HTTP/1.1 request per customer: a decision, or a recommendations lookup."""
    auth = f"Host: {host}\r\nAuthorization: Bearer {token}\r\n"
    if recommendations_k is not None:
        return [(f"GET /v1/customers/{c}/recommendations?k={recommendations_k} HTTP/1.1\r\n"
                 f"{auth}\r\n").encode() for c in customers]
    bodies = [f'{{"customer_id":"{c}"}}'.encode() for c in customers]
    return [
        (f"POST /v1/decide HTTP/1.1\r\n{auth}"
         f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b
        for b in bodies
    ]


async def open_loop(url: str, token: str, customers: list[str], rate: float, seconds: float,
                    warmup: float, connections: int = 64,
                    recommendations_k: int | None = None) -> dict[str, float | int]:
    """Offer ``rate`` requests/s for ``warmup + seconds``; the figures of the measured part."""
    host, port = url.removeprefix("http://").split(":")
    total = int((warmup + seconds) * rate)
    raws = requests(host, token, customers, recommendations_k)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = 0
    start = time.perf_counter() + 0.5

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while next_index < total:
                i = next_index
                next_index += 1
                due = start + i / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                try:
                    status = str(await _request(reader, writer, raws[i % len(raws)]))
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    status = type(e).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                if due - start >= warmup:
                    latencies.append(time.perf_counter() - due)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    tasks = [asyncio.ensure_future(worker()) for _ in range(connections)]
    _, pending = await asyncio.wait(tasks, timeout=warmup + seconds + 30.5)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - start - warmup
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    measured = int(seconds * rate)
    ok = statuses.get("200", 0)
    return {
        "requests": measured,
        "ok": ok,
        "errors": len(latencies) - ok,
        "unanswered": measured - len(latencies),
        "status_429": statuses.get("429", 0),
        "status_503": statuses.get("503", 0),
        "achieved_rps": round(ok / max(elapsed, 1e-9), 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__)
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("customers_file", help="customer ids, one per line")
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--recommendations", type=int, metavar="K",
                   help="GET the customers' K recommendations instead of POST /v1/decide")
    ns = p.parse_args(argv)
    with open(ns.customers_file) as f:
        customers = f.read().split()
    result = asyncio.run(open_loop(ns.url, ns.token, customers, ns.rate, ns.seconds,
                                   ns.warmup, ns.connections, ns.recommendations))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
