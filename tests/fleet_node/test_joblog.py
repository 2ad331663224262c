"""The job log: every line in stdout.log, batched LogChunks with one stream each, capped size."""

from __future__ import annotations

import time

from fleet_node.joblog import MAX_CHUNK_BYTES, LogStreamer
from gym_raas_mqtt.protocol import LogChunk, LogStream
from tests.fleet_node.agent.agent_harness import wait_for


def test_batches_by_time_count_and_stream(tmp_path):
    chunks: list[LogChunk] = []
    s = LogStreamer("j1", tmp_path / "stdout.log", chunks.append, flush_s=0.2, max_lines=3)
    s.system("starting")
    for i in range(4):
        s.add(LogStream.STDOUT, f"line {i}")
    s.add(LogStream.STDERR, "oops")
    time.sleep(0.05)
    # The stream changes flush at once; the count limit too; "oops" waits for the timer.
    assert [c.lines for c in chunks] == [("[raas] starting",), ("line 0", "line 1", "line 2"),
                                         ("line 3",)]
    wait_for(lambda: len(chunks) == 4, timeout_s=2, what="timed flush")
    assert (chunks[3].stream, chunks[3].lines) == (LogStream.STDERR, ("oops",))
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    s.close()
    s.add(LogStream.STDOUT, "after close")  # ignored
    assert (tmp_path / "stdout.log").read_text().splitlines() == [
        "[raas] starting", "line 0", "line 1", "line 2", "line 3", "oops"]
    assert all(LogChunk.from_bytes(c.to_bytes()) == c for c in chunks)


def test_chunk_bytes_capped_and_truncation_flagged(tmp_path):
    chunks: list[LogChunk] = []
    s = LogStreamer("j1", tmp_path / "stdout.log", chunks.append, flush_s=10, max_lines=10_000)
    big = "x" * 10_000
    for _ in range(20):
        s.add(LogStream.STDOUT, big)
    s.add(LogStream.SYSTEM, "output truncated: more than 1 bytes")
    s.close()
    assert all(sum(map(len, c.lines)) <= MAX_CHUNK_BYTES + len(big) for c in chunks)
    assert len(chunks) >= 3 and chunks[-1].truncated and not chunks[0].truncated


def test_a_failing_publisher_never_loses_the_file(tmp_path):
    def boom(chunk: LogChunk) -> None:
        raise RuntimeError("broker gone")

    s = LogStreamer("j1", tmp_path / "stdout.log", boom, flush_s=0.01)
    s.add(LogStream.STDOUT, "kept")
    s.close()
    assert (tmp_path / "stdout.log").read_text() == "kept\n"
