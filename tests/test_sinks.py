from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import orjson
import pytest

from wide_logging import ConfigurationError, mask_url
from wide_logging.sinks import RotatingFileSink, StreamSink, open_sink


def lines(n: int, size: int = 100, tag: str = "x") -> list[bytes]:
    return [orjson.dumps({"id": f"{tag}-{i}", "pad": "p" * size}) for i in range(n)]


def all_lines(sink: RotatingFileSink) -> list[bytes]:
    out: list[bytes] = []
    for path in [*sink.segments(), sink.path]:
        if path.exists():
            out.extend(line for line in path.read_bytes().split(b"\n") if line)
    return out


def test_appends_jsonl(tmp_path: Path) -> None:
    sink = RotatingFileSink(tmp_path / "a" / "events.jsonl")
    sink.write(lines(3))
    sink.write(lines(2, tag="y"))
    data = (tmp_path / "a" / "events.jsonl").read_bytes()
    assert data.endswith(b"\n")
    assert [orjson.loads(line)["id"] for line in data.splitlines()] == [
        "x-0",
        "x-1",
        "x-2",
        "y-0",
        "y-1",
    ]
    sink.close()


def test_rotates_by_size_and_keeps_n_backups(tmp_path: Path) -> None:
    sink = RotatingFileSink(tmp_path / "events.jsonl", max_bytes=2048, backups=2)
    for n in range(20):
        sink.write(lines(3, tag=f"b{n}"))
    segments = sink.segments()
    assert len(segments) == 2
    assert all(p.stat().st_size <= 2048 for p in [*segments, sink.path])
    assert segments == sorted(segments)
    ids = [orjson.loads(line)["id"] for line in all_lines(sink)]
    # the newest events survive, in order, every line whole
    assert ids[-1] == "b19-2"
    assert ids == sorted(ids, key=lambda i: (int(i.split("-")[0][1:]), int(i.split("-")[1])))
    sink.close()


def test_discarded_segments_are_reported(tmp_path: Path) -> None:
    discarded: list[Path] = []
    sink = RotatingFileSink(
        tmp_path / "events.jsonl", max_bytes=1024, backups=1, on_discard=discarded.append
    )
    for n in range(10):
        sink.write(lines(4, tag=f"b{n}"))
    assert discarded
    assert all(not p.exists() for p in discarded)


def test_a_failed_write_leaves_no_partial_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = RotatingFileSink(tmp_path / "events.jsonl")
    sink.write(lines(2))
    real_write = os.write
    calls = {"n": 0}

    def half_then_fail(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        sink.write(lines(5, tag="lost"))
    monkeypatch.setattr(os, "write", real_write)
    sink.write(lines(1, tag="after"))
    ids = [
        orjson.loads(line)["id"] for line in (tmp_path / "events.jsonl").read_bytes().splitlines()
    ]
    assert ids == ["x-0", "x-1", "after-0"]


def _writer(path: str, tag: str, batches: int) -> None:
    sink = RotatingFileSink(path, max_bytes=64 * 1024, backups=1000)
    for n in range(batches):
        sink.write(lines(20, size=200, tag=f"{tag}-{n}"))
    sink.close()


def test_processes_sharing_a_file_never_interleave_or_lose_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), f"p{i}", 100)) for i in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    sink = RotatingFileSink(path, max_bytes=64 * 1024, backups=1000)
    ids = [orjson.loads(line)["id"] for line in all_lines(sink)]  # every line parses
    assert len(ids) == len(set(ids)) == 3 * 100 * 20
    assert len(sink.segments()) > 10  # rotation really happened under contention


def test_seal_rotates_only_a_non_empty_file(tmp_path: Path) -> None:
    sink = RotatingFileSink(tmp_path / "spool.jsonl")
    sink.seal()
    assert sink.segments() == []
    sink.write(lines(1))
    sink.seal()
    assert len(sink.segments()) == 1
    sink.write(lines(1, tag="next"))
    assert orjson.loads((tmp_path / "spool.jsonl").read_bytes())["id"] == "next-0"


def test_file_url_parsing(tmp_path: Path) -> None:
    sink = open_sink(f"file:{tmp_path}/e.jsonl?max_bytes=4096&backups=3")
    assert isinstance(sink, RotatingFileSink)
    assert (sink.path, sink.max_bytes, sink.backups) == (tmp_path / "e.jsonl", 4096, 3)
    absolute = open_sink(f"file://{tmp_path}/f.jsonl")
    assert isinstance(absolute, RotatingFileSink)
    assert absolute.path == tmp_path / "f.jsonl"
    assert isinstance(open_sink("stdout"), StreamSink)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:", "needs a path"),
        ("file:x.jsonl?max_bytes=big", "must be an integer"),
        ("file:x.jsonl?color=red", "unknown file sink option"),
        ("file:x.jsonl?max_bytes=10", ">= 1024"),
        ("ftp://user:pw@host/x", "unsupported sink"),
    ],
)
def test_bad_sink_urls_fail_at_configuration(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        open_sink(url)
    assert "pw" not in str(info.value)


def test_file_sink_rejects_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="directory"):
        RotatingFileSink(tmp_path)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        (
            "mongodb://app:pa%24s@db1,db2/?authSource=admin",
            "mongodb://app:***@db1,db2/?authSource=admin",
        ),
        ("rediss://host/0?password=pw&stream=x", "rediss://host/0?password=***&stream=x"),
        ("redis://token@host", "redis://***@host"),
        ("file:/var/log/x.jsonl", "file:/var/log/x.jsonl"),
    ],
)
def test_mask_url_hides_credentials(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_stream_sink_writes_lines(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    StreamSink("stdout").write([b'{"a":1}', b'{"b":2}'])
    assert capsysbinary.readouterr().out == b'{"a":1}\n{"b":2}\n'
