"""Under a real server: throughput and latency with and without wide_logging, and memory
with the sink dead.

1. uvicorn (one worker each) serves the bare app, the instrumented one (default policy)
   and the instrumented one without echoing X-Request-ID; a load generator on loopback
   measures requests/s and p99 of each, alternated in rounds. The generator is ``wrk``
   when it is on PATH (Debian package ``wrk``), else keep-alive Python client threads
   (which take a CPU themselves). With two CPUs or more the servers are pinned to one and
   the generator to another. Target: wide >= 0.9x bare.
2. The instrumented app with a dead sink (a Redis port nobody listens on, every event kept)
   under a steady load for --rss-seconds: the server's RSS sampled every second. Target:
   bounded by the queue's byte limit plus a small constant (the spool takes the rest).

    python benchmarks/server_load.py [--seconds 3] [--rounds 8] [--http h11|httptools]
                                     [--rss-seconds 60 (0: skip)] [--apps bare,wide,...]

Side by side with what users would install instead (benchmarks/server_apps.py, each in a
server of its own): ``--apps bare,wide_plain,wide,sentry,sentry_sampled,otel,correlation_structlog``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent


#: With two or more CPUs the server gets one and the load generator another, so they do
#: not steal each other's time slices (which is most of the noise on a small VM).
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPU = CPUS[-1] if len(CPUS) >= 2 else None
CLIENT_CPU = CPUS[0] if len(CPUS) >= 2 else None


def _pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(app: str, env: dict[str, str], http: str = "h11") -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"server_apps:{app}",
            "--port",
            str(port),
            "--http",
            http,
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=HERE,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_pin(SERVER_CPU),
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


def wrk_load(port: int, seconds: float, connections: int = 8) -> tuple[float, float]:
    """requests/s and p99 (ms) from ``wrk`` (one thread, keep-alive connections)."""
    output = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            f"http://127.0.0.1:{port}/items/42",
        ],
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=_pin(CLIENT_CPU),
    ).stdout
    rate = re.search(r"Requests/sec:\s*([\d.]+)", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    if rate is None or p99 is None:
        sys.exit(f"could not read wrk's output:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return float(rate.group(1)), float(p99.group(1)) * scale


def python_load(port: int, seconds: float) -> tuple[float, float]:
    """requests/s and p99 (ms) from keep-alive client threads in this process."""
    latencies = sorted(load(port, seconds))
    return len(latencies) / seconds, latencies[int(len(latencies) * 0.99)] * 1000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11")
    parser.add_argument("--rss-seconds", type=float, default=60.0)
    parser.add_argument(
        "--apps",
        default="bare,wide,wide_no_echo",
        help="apps of server_apps.py to compare (the first is the base of the ratios); "
        "the peers: sentry, sentry_sampled, otel, correlation_structlog",
    )
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None
    generator = "wrk (1 thread, 8 connections)" if use_wrk else "4 Python client threads"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "WIDE_LOGGING_SINK": f"file:{tmp}/events.jsonl",
            "WIDE_LOGGING_FALLBACK": f"file:{tmp}/spool/events.jsonl",
        }
        apps = tuple(args.apps.split(","))
        servers = {app: serve(app, env, args.http) for app in apps}
        results: dict[str, list[tuple[float, float]]] = {app: [] for app in apps}
        try:
            for _, port in servers.values():  # warm up
                python_load(port, 0.5)
            for _ in range(args.rounds):  # alternated: A B C A B C ...
                for app, (_, port) in servers.items():
                    measure = wrk_load if use_wrk else python_load
                    results[app].append(measure(port, args.seconds))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(30)
        bare_rps = statistics.median(r for r, _ in results[apps[0]])
        print(
            f"uvicorn ({args.http}, one worker, pinned to CPU {SERVER_CPU}), load from "
            f"{generator}, {args.rounds} alternated rounds of {args.seconds:g} s"
        )
        for app, runs in results.items():
            rps = statistics.median(r for r, _ in runs)
            p99 = statistics.median(p for _, p in runs)
            print(
                f"  {app:<22} {rps:>9,.0f} requests/s   p99 {p99:6.2f} ms   "
                f"ratio {rps / bare_rps:.2f}x"
            )
        print()
        if args.rss_seconds <= 0:
            return

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
