"""The embedded local event log: offsets, partitions, commits, crash recovery, readers."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from ddso.errors import ConfigError, ServiceError
from ddso.io.eventlog import LocalEventLog, partition_for

pytestmark = pytest.mark.unit


def _records(n: int, start: int = 0, customers: int = 7) -> list[tuple[bytes | None, bytes]]:
    return [(f"c{i % customers}".encode(), f"event-{i}".encode()) for i in range(start, start + n)]


def _read_all(log: LocalEventLog, partition: int, start: int = 0) -> list:
    out, offset = [], start
    while batch := log.read(partition, offset, 64):
        out.extend(batch)
        offset = batch[-1][0] + 1
    return out


def _segment(path: Path, partition: int = 0) -> Path:
    return sorted((path / f"p{partition:04d}").glob("*.seg"))[-1]


def test_append_read_commit_resume_across_reopen(tmp_path: Path) -> None:
    with LocalEventLog(tmp_path, partitions=1) as log:
        assert log.append(_records(5)) == [0, 1, 2, 3, 4]
        assert log.append([(None, b"no-key"), (b"k", b"")], sync=True) == [5, 6]
        assert log.end_offset(0) == 7
        assert log.read(0, 3, 2) == [(3, b"c3", b"event-3"), (4, b"c4", b"event-4")]
        assert log.read(0, 5, 10) == [(5, None, b"no-key"), (6, b"k", b"")]
        assert log.read(0, 7, 10) == []
        assert log.committed("stream") == {}
        log.commit("stream", {0: 4})
    with LocalEventLog(tmp_path) as log:  # partitions come from the folder
        assert log.partitions == 1
        assert log.committed("stream") == {0: 4}
        assert [r[0] for r in log.read(0, log.committed("stream")[0], 100)] == [4, 5, 6]
        assert log.append(_records(1, start=7)) == [7]
        assert log.committed("other") == {}
    with pytest.raises(ConfigError, match="has 1 partitions, not 3"):
        LocalEventLog(tmp_path, partitions=3)


def test_partitioning_by_key_is_stable_and_ordered(tmp_path: Path) -> None:
    assert partition_for(b"c42", 3) == zlib.crc32(b"c42") % 3
    assert {partition_for(None, 3, i) for i in range(3)} == {0, 1, 2}
    records = _records(300, customers=20)
    with LocalEventLog(tmp_path, partitions=3) as log:
        offsets = log.append(records)
        log.append(_records(300, start=300, customers=20))
        log.commit("g", {0: 10, 2: 5})
        log.commit("g", {1: 7})
        assert log.committed("g") == {0: 10, 1: 7, 2: 5}
    with LocalEventLog(tmp_path, readonly=True) as log:
        seen: dict[bytes, list[int]] = {}
        for p in range(3):
            recs = _read_all(log, p)
            assert [r[0] for r in recs] == list(range(log.end_offset(p)))
            for _, k, v in recs:
                assert partition_for(k, 3) == p
                seen.setdefault(k, []).append(int(v.split(b"-")[1]))
        assert sum(len(v) for v in seen.values()) == 600
        assert all(ids == sorted(ids) for ids in seen.values())
        first_p = partition_for(records[0][0], 3)
        assert log.read(first_p, offsets[0], 1)[0][2] == records[0][1]


def test_segments_roll_and_read_across_them(tmp_path: Path) -> None:
    with LocalEventLog(tmp_path, segment_bytes=2_000) as log:
        for i in range(0, 1_000, 50):
            log.append(_records(50, start=i))
        assert len(list((tmp_path / "p0000").glob("*.seg"))) >= 10
        assert [r[0] for r in _read_all(log, 0)] == list(range(1_000))
        assert log.read(0, 777, 1)[0][2] == b"event-777"
    with LocalEventLog(tmp_path, readonly=True) as reader:
        assert [r[2] for r in _read_all(reader, 0, 333)] == [r[1] for r in _records(667, 333)]


@pytest.mark.parametrize("tail", [
    b"\x64\x00\x00\x00\x11\x22\x33\x44" + b"partial body",  # header claims 100 bytes
    b"\x00" * 64,  # size extended by a crash, data never written
    b"\x08\x00\x00\x00\x00\x00\x00\x00" + b"\xff\xff\xff\xffabcd",  # complete but bad crc
])
def test_torn_tail_is_hidden_then_truncated(tmp_path: Path, tail: bytes) -> None:
    with LocalEventLog(tmp_path) as log:
        log.append(_records(10), sync=True)
    segment = _segment(tmp_path)
    good_size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(tail)
    with LocalEventLog(tmp_path, readonly=True) as reader:  # readers never repair
        assert reader.end_offset(0) == 10
        assert len(_read_all(reader, 0)) == 10
    assert segment.stat().st_size == good_size + len(tail)
    with LocalEventLog(tmp_path) as log:
        assert segment.stat().st_size == good_size
        assert log.append([(b"k", b"after-crash")]) == [10]
        assert log.read(0, 9, 5) == [(9, b"c2", b"event-9"), (10, b"k", b"after-crash")]


def test_reader_sees_only_complete_frames(tmp_path: Path) -> None:
    writer = LocalEventLog(tmp_path)
    reader = LocalEventLog(tmp_path, readonly=True)
    writer.append(_records(3))
    assert reader.end_offset(0) == 3
    # A frame the writer is in the middle of writing: first its first half, then the rest.
    with LocalEventLog(tmp_path / "scratch") as scratch:
        scratch.append([(b"k", b"x" * 5_000)])
    frame = _segment(tmp_path / "scratch").read_bytes()
    segment = _segment(tmp_path)
    writer.close()
    with open(segment, "ab") as f:
        f.write(frame[:2_600])
        f.flush()
        assert reader.read(0, 3, 10) == []
        assert reader.end_offset(0) == 3
        f.write(frame[2_600:])
    assert reader.read(0, 3, 10) == [(3, b"k", b"x" * 5_000)]
    reader.close()


_WRITER = """
import sys
from ddso.io.eventlog import LocalEventLog
log = LocalEventLog(sys.argv[1])
for batch in range(int(sys.argv[2])):
    log.append([(b"k%d" % i, b"%06d:" % (batch * 10 + i) + b"v" * 9_000) for i in range(10)])
log.close()
"""


def test_concurrent_reader_of_another_process(tmp_path: Path) -> None:
    LocalEventLog(tmp_path, partitions=1).close()
    batches = 300
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(batches)],
                              cwd=Path(__file__).parents[3])
    reader = LocalEventLog(tmp_path, readonly=True)
    offset = 0
    while offset < batches * 10:
        for off, _, value in reader.read(0, offset, 100):
            assert off == offset
            assert value == b"%06d:" % off + b"v" * 9_000  # whole, never a prefix
            offset += 1
        if writer.poll() is not None and reader.end_offset(0) == offset:
            break
    assert writer.wait(timeout=30) == 0
    assert offset == batches * 10
    reader.close()


def test_one_writer_many_readers(tmp_path: Path) -> None:
    with LocalEventLog(tmp_path) as log:
        with pytest.raises(ServiceError, match="writer.lock"):
            LocalEventLog(tmp_path)
        log.append(_records(2))
        with LocalEventLog(tmp_path, readonly=True) as reader:
            assert reader.end_offset(0) == 2
            with pytest.raises(ValueError, match="readonly"):
                reader.append(_records(1))
            reader.commit("readers-may-commit", {0: 2})
        assert log.committed("readers-may-commit") == {0: 2}
        with pytest.raises(ValueError, match="group"):
            log.commit("../escape", {0: 1})
        with pytest.raises(ValueError, match="partition 5"):
            log.read(5, 0)
    assert not list(tmp_path.glob("groups/.*.tmp"))
    assert os.path.exists(tmp_path / "groups" / "readers-may-commit.json")


def _commit_many(path: str, partition: int, times: int) -> None:
    log = LocalEventLog(path, readonly=True)
    for offset in range(1, times + 1):
        log.commit("g", {partition: offset})
    log.close()


def test_commits_of_one_group_from_several_processes_are_all_kept(tmp_path: Path) -> None:
    """Two consumers (Ray tasks: processes) commit their own partitions at the same time."""
    import multiprocessing

    LocalEventLog(tmp_path, partitions=4).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_commit_many, args=(str(tmp_path), p, 150)) for p in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert LocalEventLog(tmp_path, readonly=True).committed("g") == {p: 150 for p in range(4)}
