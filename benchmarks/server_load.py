"""Under a real server: throughput and latency with and without wide_logging, and memory
with the sink dead.

1. uvicorn (one worker) serves the bare app and the instrumented one in turn; a load
   generator on loopback (threads with keep-alive connections, bounded in time) measures
   requests/s and p99 for each, alternated. Target: wide >= 0.9x bare.
2. The instrumented app with a dead sink (a Redis port nobody listens on, every event kept)
   under a steady load for --rss-seconds: the server's RSS sampled every second. Target:
   bounded by the queue's byte limit plus a small constant (the spool takes the rest).

    python benchmarks/server_load.py [--seconds 8] [--rounds 3] [--rss-seconds 60]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(app: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"server_apps:{app}",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=HERE,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                sys.exit(f"uvicorn did not start for {app}")
            time.sleep(0.05)


def load(port: int, seconds: float, threads: int = 4, rate: float | None = None) -> list[float]:
    """Latencies (s) of every request sent in ``seconds`` by ``threads`` keep-alive clients;
    with ``rate``, each thread paces itself to rate/threads requests a second."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        sent = 0
        begin = time.monotonic()
        while time.monotonic() < stop:
            if rate is not None:
                wait = begin + sent / (rate / threads) - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            started = time.perf_counter()
            connection.request("GET", f"/items/{n}-{sent}")
            connection.getresponse().read()
            mine.append(time.perf_counter() - started)
            sent += 1
        connection.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "WIDE_LOGGING_SINK": f"file:{tmp}/events.jsonl",
            "WIDE_LOGGING_FALLBACK": f"file:{tmp}/spool/events.jsonl",
        }
        results: dict[str, list[tuple[float, float]]] = {"bare": [], "wide": []}
        for _ in range(args.rounds):
            for app in ("bare", "wide"):
                process, port = serve(app, env)
                latencies = load(port, args.seconds)
                process.terminate()
                process.wait(30)
                latencies.sort()
                results[app].append(
                    (len(latencies) / args.seconds, latencies[int(len(latencies) * 0.99)] * 1000)
                )
        for app, runs in results.items():
            rps = statistics.median(r for r, _ in runs)
            p99 = statistics.median(p for _, p in runs)
            print(f"uvicorn, {app:<5} {rps:>9,.0f} requests/s   p99 {p99:6.2f} ms")
        ratio = statistics.median(r for r, _ in results["wide"]) / statistics.median(
            r for r, _ in results["bare"]
        )
        print(f"wide / bare throughput: {ratio:.2f}x (default policy, 2% of normal kept)\n")

        dead = {
            "WIDE_LOGGING_SINK": f"redis://127.0.0.1:{free_port()}/0?connect_timeout=0.2",
            "WIDE_LOGGING_FALLBACK": f"file:{tmp}/dead-spool/events.jsonl",
            "WIDE_LOGGING_NORMAL_RATE": "1.0",
        }
        process, port = serve("wide", dead)
        samples: list[int] = []
        loader = threading.Thread(target=load, args=(port, args.rss_seconds, 2, 1000.0))
        loader.start()
        while loader.is_alive():
            samples.append(rss_kib(process.pid))
            time.sleep(1.0)
        process.terminate()
        process.wait(30)
        spooled = sum(p.read_bytes().count(b"\n") for p in Path(tmp, "dead-spool").glob("events*"))
    print(
        f"dead sink, 1,000 requests/s kept for {args.rss_seconds:.0f} s: RSS "
        f"{samples[1] / 1024:.1f} MiB after 1 s, {samples[len(samples) // 2] / 1024:.1f} MiB "
        f"halfway, {max(samples) / 1024:.1f} MiB max, {samples[-1] / 1024:.1f} MiB at the end; "
        f"{spooled:,} events in the spool"
    )


if __name__ == "__main__":
    main()
