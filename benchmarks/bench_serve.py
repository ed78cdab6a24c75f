"""serve.py under load: requests per second and p50 / p99 latency at 1, 8 and 32 concurrent clients,
with batching (max_batch_size=32) and without (max_batch_size=1).

    python benchmarks/bench_serve.py [--ckpt PATH] [--requests 300] [--seconds 20] [--clients 1,8,32]

The server is the real serve.py, started in its own process group on a free port of 127.0.0.1
(loopback only) and stopped after; the load generator is this script: ``clients`` asyncio tasks
with one httpx connection each, every one sending its next request as soon as its last was
answered (a closed loop), until ``requests`` requests are answered or ``seconds`` have passed,
whichever is first (bounded in count and in time). A warm-up of 20 requests is not counted.
Every request is one image of the checkpoint's data (the default: the digits CNN of
tests/fixtures/checkpoints, 8x8 pixels) as JSON, as a client sends it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CKPT = ROOT / "tests" / "fixtures" / "checkpoints" / "classify_cnn.ckpt"

from tests.helpers.serving import start_server, stop_server  # noqa: E402 - after ROOT is on the path


async def load(url: str, bodies: list[dict], clients: int, requests: int, seconds: float) -> dict:
    """A closed loop of ``clients`` clients: latencies of the answered requests and the wall time."""
    import httpx

    latencies: list[float] = []
    failed = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def client(i: int):
        nonlocal sent, failed
        async with httpx.AsyncClient(timeout=60) as http:
            while sent < requests and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                t = time.perf_counter()
                r = await http.post(f"{url}/predict", json=body)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    failed += 1

    start_t = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - start_t
    return {"latencies": latencies, "wall": wall, "failed": failed}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


def request_bodies(ckpt: Path, n: int = 64) -> list[dict]:
    """``n`` JSON bodies of one image each, of the checkpoint's own image shape."""
    import numpy as np

    from zoo.run.rebuild import check_file

    spec = check_file(str(ckpt)).spec
    c, h, w = spec.shape
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(n, h, w, c) if c > 1 else (n, h, w), dtype=np.uint8)
    return [{"pixels": p.tolist()} for p in pixels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT, help="an image classifier's checkpoint")
    parser.add_argument("--requests", type=int, default=300, help="answered requests per measurement (at most)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds per measurement (at most)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server's model process")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    bodies = request_bodies(args.ckpt)
    rows = []
    for batching, batch in (("yes (max_batch_size=32)", 32), ("no (max_batch_size=1)", 1)):
        try:
            proc, url = start_server(
                args.ckpt, f"max_batch_size={batch}", "batch_timeout=0.005", threads=args.threads, timeout=300
            )
        except RuntimeError as e:
            raise SystemExit(str(e)) from None
        try:
            asyncio.run(load(url, bodies, 4, 20, 30))  # warm-up
            for n in clients:
                result = asyncio.run(load(url, bodies, n, args.requests, args.seconds))
                lat = result["latencies"]
                rows.append(
                    (
                        batching,
                        n,
                        len(lat),
                        len(lat) / result["wall"],
                        1000 * statistics.median(lat) if lat else float("nan"),
                        1000 * percentile(lat, 99),
                        result["failed"],
                    )
                )
                print(f"  batching {batching}, {n} clients: {rows[-1][3]:.0f} requests/s", file=sys.stderr)
        finally:
            stop_server(proc)
    print(
        f"serve.py on {args.ckpt.name}, {os.cpu_count()} CPU cores, model process with {args.threads} torch thread(s)\n"
    )
    print("| batching | clients | requests | requests/s | p50 ms | p99 ms | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for b, n, count, rps, p50, p99, failed in rows:
        print(f"| {b} | {n} | {count} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {failed} |")


if __name__ == "__main__":
    main()
