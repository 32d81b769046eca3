"""The embedded default's append-only event log: Kafka's semantics in a local folder.

The stream job reads either Kafka or this log through the same notions: partitions chosen by
a stable hash of the key (one customer stays in one partition, in order), per-partition
offsets, and consumer-group offsets committed after the sinks hold a batch.

Layout of ``path``::

    meta.json                      {"format": 1, "partitions": N}
    writer.lock                    flock held by the one writer process
    p0000/00000000000000000000.seg segments, named by the offset of their first record
    groups/<group>.json            {"<partition>": next_offset, ...}

A segment is a sequence of frames ``<u32 body length><u32 crc32(body)><body>`` with body =
``<i32 key length, -1 for None><key><value>``. A record's offset is its segment's base plus
its position in the segment, so nothing else needs to be stored or kept in step.

Concurrency: **one writer process, any number of readers.** The writer (``readonly=False``,
the default) takes an exclusive lock; a second writer gets :class:`ServiceError`. On open the
writer truncates a torn last frame (a crash mid-write) found by its length or crc. Readers
never modify segments; they only return frames that are complete and whose crc matches, so a
frame being written is invisible until it is whole. Any process may commit offsets for a
group; the last commit wins, as in Kafka without fencing. One instance is thread-safe.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import struct
import threading
import zlib
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ddso.errors import ConfigError, DataFileError, ServiceError

log = logging.getLogger(__name__)

FORMAT = 1
SEGMENT_BYTES = 64 * 1024 * 1024
INDEX_EVERY = 128
"""One file position is kept per this many records: reads seek to it and skip forward."""
READ_CHUNK = 1024 * 1024
MAX_BODY = 256 * 1024 * 1024
"""A length above this is a corrupt header, never a real record."""

_HEADER = struct.Struct("<II")
_KEYLEN = struct.Struct("<i")
_NO_KEY = _KEYLEN.pack(-1)
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

Record = tuple[int, bytes | None, bytes]
"""``(offset, key, value)`` as returned by :meth:`LocalEventLog.read`."""


@dataclass
class _Segment:
    base: int
    path: Path
    end_pos: int = 0
    """Bytes of complete, checked frames (or frames this process wrote)."""
    count: int = 0
    sparse: list[int] = field(default_factory=list)
    """``sparse[j]`` is the file position of record ``j * INDEX_EVERY``."""
    fd: int | None = None

    @property
    def end(self) -> int:
        return self.base + self.count


@dataclass
class _Partition:
    dir: Path
    segments: list[_Segment]
    bases: list[int]
    cursor: tuple[int, int, int] = (-1, -1, 0)
    """``(offset, segment base, file position)`` where the last read stopped, so a sequential
    reader resumes there instead of skipping from the sparse index."""


def partition_for(key: bytes | None, partitions: int, counter: int = 0) -> int:
    """The partition of ``key``: crc32, stable across processes, hosts and Python versions.

    Records without a key are spread round-robin by ``counter``.
    """
    if partitions == 1:
        return 0
    if key is None:
        return counter % partitions
    return zlib.crc32(key) % partitions


def _fd(seg: _Segment) -> int:
    if seg.fd is None:
        seg.fd = os.open(seg.path, os.O_RDONLY)
    return seg.fd


def _scan(seg: _Segment) -> int:
    """Index the complete, crc-checked frames after ``seg.end_pos``.

    Returns how many bytes after the last good frame were left out: 0 when the segment ends
    cleanly, otherwise a frame still being written (for a reader) or a torn one.
    """
    fd = _fd(seg)
    size = os.fstat(fd).st_size
    want = READ_CHUNK
    while seg.end_pos < size:
        pos = seg.end_pos
        buf = os.pread(fd, min(size - pos, want), pos)
        view = memoryview(buf)
        i = 0
        while i + 8 <= len(buf):
            n, crc = _HEADER.unpack_from(buf, i)
            if i + 8 + n > len(buf) and _KEYLEN.size <= n <= MAX_BODY:
                break
            if n < _KEYLEN.size or n > MAX_BODY or zlib.crc32(view[i + 8:i + 8 + n]) != crc:
                seg.end_pos = pos + i  # a zero-filled, garbage or torn frame
                return size - seg.end_pos
            if seg.count % INDEX_EVERY == 0:
                seg.sparse.append(pos + i)
            seg.count += 1
            i += 8 + n
        seg.end_pos = pos + i
        if i == 0:
            if len(buf) < 8:
                return size - pos
            need = 8 + _HEADER.unpack_from(buf, 0)[0]
            if pos + need > size:
                return size - pos  # the last frame is incomplete
            want = need  # one frame larger than a chunk: read it whole
        else:
            want = READ_CHUNK
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (created if missing) for the duration."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_json_atomic(path: Path, obj: object) -> None:
    """Write ``obj`` so that readers see the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class LocalEventLog:
    """An append-only, partitioned event log in the folder ``path``.

    ``partitions`` is fixed when the log is created; ``None`` opens an existing log with its
    own count (or creates one partition). ``readonly=True`` opens as a reader: no lock, no
    recovery, :meth:`append` refused. See the module docstring for the format and the
    one-writer rule.
    """

    def __init__(self, path: str | os.PathLike[str], partitions: int | None = None, *,
                 readonly: bool = False, segment_bytes: int = SEGMENT_BYTES):
        self.path = Path(path)
        self.readonly = readonly
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._write_fds: dict[int, int] = {}
        self._round_robin = 0
        meta = self.path / "meta.json"
        if readonly:
            if not meta.exists():
                raise DataFileError(f"{meta}: no event log here; a writer creates it on open")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._take_writer_lock()
        if meta.exists():
            stored = self._read_meta(meta)
            if partitions is not None and partitions != stored:
                self.close()
                raise ConfigError(f"{self.path} has {stored} partitions, not {partitions}; "
                                  "open it with partitions=None or the stored count")
            partitions = stored
        elif partitions is None:
            partitions = 1
        if partitions < 1:
            self.close()
            raise ConfigError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self._parts = [self._open_partition(p) for p in range(partitions)]
        if not meta.exists():
            # Written last, so a reader that finds meta.json also finds every partition.
            _write_json_atomic(meta, {"format": FORMAT, "partitions": partitions})

    # --- opening -------------------------------------------------------------------------

    def _take_writer_lock(self) -> None:
        fd = os.open(self.path / "writer.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServiceError(
                f"{self.path}: another writer holds writer.lock; one process writes an event "
                "log, others open it with readonly=True"
            ) from None
        self._lock_fd = fd

    @staticmethod
    def _read_meta(meta: Path) -> int:
        try:
            data = json.loads(meta.read_text())
            if data["format"] != FORMAT:
                raise ValueError(f"format {data['format']} is not {FORMAT}")
            return int(data["partitions"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataFileError(f"{meta}: unreadable event-log metadata ({e})") from None

    def _open_partition(self, p: int) -> _Partition:
        pdir = self.path / f"p{p:04d}"
        if not self.readonly:
            pdir.mkdir(exist_ok=True)
        bases = sorted(int(f.stem) for f in pdir.glob("*.seg")) if pdir.exists() else []
        if not bases:
            if self.readonly:
                raise DataFileError(f"{pdir}: partition {p} has no segment files")
            bases = [0]
            (pdir / f"{0:020d}.seg").touch()
        part = _Partition(pdir, [_Segment(b, pdir / f"{b:020d}.seg") for b in bases], bases)
        last = part.segments[-1]
        torn = _scan(last)
        if not self.readonly:
            if torn:
                # A crash mid-append: the frame was never acknowledged, so dropping it loses
                # nothing a caller was promised.
                log.warning("%s: truncating %d bytes of a torn last frame at byte %d",
                            last.path, torn, last.end_pos)
                os.truncate(last.path, last.end_pos)
            self._write_fds[p] = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        return part

    # --- writing -------------------------------------------------------------------------

    def append(self, records: list[tuple[bytes | None, bytes]], *,
               sync: bool = False) -> list[int]:
        """Append ``(key, value)`` records; return their offsets, in the input order.

        Each partition's share is written with one ``write``. ``sync=True`` also fsyncs
        before returning, so the records survive a power loss, not only a process crash.
        """
        if self.readonly:
            raise ValueError(f"{self.path} is open readonly; appends need the writer")
        with self._lock:
            if self.partitions == 1:
                first = self._append_partition(0, records, sync)
                return list(range(first, first + len(records)))
            shares: list[list[tuple[bytes | None, bytes]]] = [[] for _ in range(self.partitions)]
            where = []
            for rec in records:
                p = partition_for(rec[0], self.partitions, self._round_robin)
                self._round_robin += rec[0] is None
                where.append((p, len(shares[p])))
                shares[p].append(rec)
            firsts = [self._append_partition(p, share, sync) if share else 0
                      for p, share in enumerate(shares)]
            return [firsts[p] + i for p, i in where]

    def _append_partition(self, p: int, records: list[tuple[bytes | None, bytes]],
                          sync: bool) -> int:
        part = self._parts[p]
        seg = part.segments[-1]
        if seg.end_pos >= self.segment_bytes:
            seg = self._roll(p, part)
        first, count, pos = seg.end, seg.count, seg.end_pos
        sparse, sparse_len = seg.sparse, len(seg.sparse)
        header, keylen, crc32 = _HEADER.pack, _KEYLEN.pack, zlib.crc32
        chunks = []
        for key, value in records:
            body = _NO_KEY + value if key is None else keylen(len(key)) + key + value
            if count % INDEX_EVERY == 0:
                sparse.append(pos)
            chunks.append(header(len(body), crc32(body)))
            chunks.append(body)
            pos += 8 + len(body)
            count += 1
        fd = self._write_fds[p]
        try:
            _write_all(fd, b"".join(chunks))
            if sync:
                os.fsync(fd)
        except OSError as e:
            del sparse[sparse_len:]
            os.truncate(seg.path, seg.end_pos)
            raise ServiceError(
                f"{seg.path}: append failed ({e.strerror}); nothing was written"
            ) from e
        seg.count, seg.end_pos = count, pos
        return first

    def _roll(self, p: int, part: _Partition) -> _Segment:
        old = part.segments[-1]
        # The finished segment is made durable before the next one exists, so a crash can
        # only ever tear the last segment.
        os.fsync(self._write_fds[p])
        os.close(self._write_fds[p])
        seg = _Segment(old.end, part.dir / f"{old.end:020d}.seg")
        self._write_fds[p] = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fsync_dir(part.dir)
        part.segments.append(seg)
        part.bases.append(seg.base)
        return seg

    def sync(self) -> None:
        """fsync every partition's open segment."""
        with self._lock:
            for fd in self._write_fds.values():
                os.fsync(fd)

    # --- reading -------------------------------------------------------------------------

    def _part(self, partition: int) -> _Partition:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} out of range 0..{self.partitions - 1}")
        return self._parts[partition]

    def _refresh(self, part: _Partition) -> None:
        """Pick up what the writer appended since the last look (readers only)."""
        if not self.readonly:
            return
        seg = part.segments[-1]
        _scan(seg)
        nxt = part.dir / f"{seg.end:020d}.seg"
        while seg.count and nxt.exists():
            seg = _Segment(seg.end, nxt)
            part.segments.append(seg)
            part.bases.append(seg.base)
            _scan(seg)
            nxt = part.dir / f"{seg.end:020d}.seg"

    def _segment_for(self, part: _Partition, offset: int) -> _Segment | None:
        k = bisect_right(part.bases, offset) - 1
        seg = part.segments[k]
        if offset < seg.end:
            return seg
        if k + 1 < len(part.segments):
            _scan(seg)  # an older segment is indexed on first use
            if offset < seg.end:
                return seg
            raise DataFileError(f"{seg.path}: corrupt frame at byte {seg.end_pos}; records "
                                f"{seg.end}..{part.bases[k + 1] - 1} cannot be read")
        self._refresh(part)
        k = bisect_right(part.bases, offset) - 1
        seg = part.segments[k]
        return seg if offset < seg.end else None

    def read(self, partition: int, from_offset: int, max_records: int = 1000) -> list[Record]:
        """Up to ``max_records`` records ``(offset, key, value)`` from ``from_offset`` on.

        Returns fewer (or none) at the end of the partition; never blocks.
        """
        if from_offset < 0:
            raise ValueError(f"from_offset must be >= 0, got {from_offset}")
        with self._lock:
            part = self._part(partition)
            out: list[Record] = []
            while len(out) < max_records:
                seg = self._segment_for(part, from_offset + len(out))
                if seg is None:
                    break
                out.extend(self._read_segment(part, seg, from_offset + len(out),
                                              max_records - len(out)))
            return out

    def _read_segment(self, part: _Partition, seg: _Segment, offset: int,
                      limit: int) -> list[Record]:
        if part.cursor[:2] == (offset, seg.base):
            pos, skip = part.cursor[2], 0
        else:
            j = (offset - seg.base) // INDEX_EVERY
            pos, skip = seg.sparse[j], offset - seg.base - j * INDEX_EVERY
        limit = min(limit, seg.end - offset)
        fd, end_pos = _fd(seg), seg.end_pos
        unpack, keylen = _HEADER.unpack_from, _KEYLEN.unpack_from
        out: list[Record] = []
        next_offset = offset
        want = READ_CHUNK
        while len(out) < limit:
            buf = os.pread(fd, min(end_pos - pos, want), pos)
            i = 0
            while len(out) < limit and i + 8 <= len(buf):
                n = unpack(buf, i)[0]
                if i + 8 + n > len(buf):
                    break
                if skip:
                    skip -= 1
                else:
                    k = keylen(buf, i + 8)[0]
                    if k < 0:
                        out.append((next_offset, None, buf[i + 12:i + 8 + n]))
                    else:
                        out.append((next_offset, buf[i + 12:i + 12 + k], buf[i + 12 + k:i + 8 + n]))
                    next_offset += 1
                i += 8 + n
            want = 8 + unpack(buf, 0)[0] if i == 0 else READ_CHUNK
            pos += i
        part.cursor = (next_offset, seg.base, pos)
        return out

    def end_offset(self, partition: int) -> int:
        """The offset the next record appended to ``partition`` will get."""
        with self._lock:
            part = self._part(partition)
            self._refresh(part)
            return part.segments[-1].end

    # --- consumer groups -----------------------------------------------------------------

    def _group_path(self, group: str) -> Path:
        if not _GROUP_NAME.match(group):
            raise ValueError(f"group {group!r} must be 1-128 of letters, digits and '_ . -'")
        return self.path / "groups" / f"{group}.json"

    def commit(self, group: str, offsets: dict[int, int]) -> None:
        """Record ``{partition: next offset to read}`` for ``group``, atomically.

        Partitions not named keep their previous commit, also when other processes commit
        other partitions of the same group at the same time.
        """
        path = self._group_path(group)
        for p, off in offsets.items():
            self._part(p)
            if off < 0:
                raise ValueError(f"offset for partition {p} must be >= 0, got {off}")
        path.parent.mkdir(exist_ok=True)
        # Consumers of one group may be separate processes (Ray tasks): the read-merge-write
        # holds an flock, or one consumer's commit could overwrite another's partitions.
        with self._lock, _flocked(path.with_suffix(".lock")):
            merged = {**self.committed(group), **offsets}
            _write_json_atomic(path, {str(p): off for p, off in sorted(merged.items())})

    def committed(self, group: str) -> dict[int, int]:
        """``group``'s committed ``{partition: next offset}``; empty if it never committed."""
        path = self._group_path(group)
        try:
            return {int(p): int(off) for p, off in json.loads(path.read_text()).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as e:
            raise DataFileError(f"{path}: unreadable committed offsets ({e})") from None

    # --- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close every file and release the writer lock. Idempotent."""
        for part in getattr(self, "_parts", []):
            for seg in part.segments:
                if seg.fd is not None:
                    os.close(seg.fd)
                    seg.fd = None
        for fd in self._write_fds.values():
            os.close(fd)
        self._write_fds.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> LocalEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
