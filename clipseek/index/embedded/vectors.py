"""Unit vectors by integer label: an hnswlib graph, a float16 copy, a log, and checkpoints.

Durability comes from the vector log (clipseek.index.embedded.vector_log): a commit appends its
vectors and fsyncs, nothing more. The graph lives in memory and is written out as a **checkpoint**
only now and then (when the log since the last one exceeds a share of the checkpoint's size, so the
bytes written over a library's life stay proportional to its size), by a background thread, while
searches go on. At start-up the last checkpoint is loaded and the log after it replayed.

Who waits for whom:

- a commit never waits for the graph: ``add`` puts the vectors in the float16 copy and in a
  *pending* queue; a background thread inserts them into the graph in small batches;
- a search reads the graph (shared lock) and scores the pending vectors exactly, so a frame is
  searchable the moment its commit returns; it waits at most for one small insertion batch;
- a checkpoint pauses the inserting thread (never the searches) while it saves the graph; the graph is
  written by a forked child, and the fork (which holds the GIL) is kept short by putting the loaded graph
  in 2 MB pages at start-up (hugepages.py).

Searches over few frames (a small library, or a filter on a few videos) are exact (numpy over the
float16 copy), which also covers asking for more neighbours than the graph can return.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

import clipseek.index.embedded.hugepages as hugepages
from clipseek.index.embedded.files import fsync_dir, fsync_file, write_atomically
from clipseek.index.embedded.vector_log import VectorLog
from clipseek.index.locks import ReadWriteLock

logger = logging.getLogger("clipseek.index")

CHECKPOINT_POINTER = "CHECKPOINT"
# Every float16 bit pattern as float32: numpy's own float16 cast is not vectorised on x86; a table lookup
# gives the same values in less time (tests/test_index_embedded.py checks every pattern).
_FLOAT16_AS_FLOAT32 = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)


def as_float32(half: np.ndarray) -> np.ndarray:
    """``half.astype(np.float32)`` (same values, NaNs included) by table lookup."""
    return np.take(_FLOAT16_AS_FLOAT32, np.ascontiguousarray(half).view(np.uint16))


@dataclass
class HnswSettings:
    space: str = "cosine"
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 256  # recall@10 at 1M synthetic frames: 0.975 at 128, 0.995 at 256
    exact_below: int = 5000  # searches over fewer frames than this are exact (numpy)
    checkpoint_min_mb: float = 64.0  # the log may grow this much before a checkpoint ...
    checkpoint_fraction: float = 0.25  # ... or this share of the last checkpoint's size, whichever is more
    insert_threads: int = 0  # threads for insertion batches of 8 or more (0 = all cores)
    insert_batch_ms: float = 2.0  # the graph is locked for about this long per insertion batch (searches wait)
    max_pending: int = 2048  # commits wait while this many vectors wait for the graph (searched exactly meanwhile)
    huge_pages: bool = True  # load the graph into 2 MB pages: a checkpoint's fork is then short (hugepages.py)


def _grown(array: np.ndarray, size: int, fill) -> np.ndarray:
    if size <= len(array):
        return array
    capacity = max(size, 2 * len(array), 1024)
    out = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    out[: len(array)] = array
    return out


class HnswVectors:
    """The vectors of one workspace's frames (``folder`` = ``<workspace>/vectors``)."""

    def __init__(self, folder: Path, settings: HnswSettings, live_labels: np.ndarray, dim: int = 0,
                 commit_lock: threading.Lock | None = None):
        """``commit_lock``: held by the caller around each commit (log append ... publish); a checkpoint
        takes it for an instant, so that it never cuts the log in the middle of a commit."""
        self.folder = Path(folder)
        self._commit_lock = commit_lock or threading.Lock()
        self.settings = settings
        self.dim = dim
        self.folder.mkdir(parents=True, exist_ok=True)
        self._state = threading.Lock()  # the arrays and queues below
        self._graph_lock = ReadWriteLock()  # hnswlib: knn_query is not safe beside add_items
        self._work = threading.Condition(self._state)
        self._graph: hnswlib.Index | None = None
        size = int(live_labels.max()) + 1 if len(live_labels) else 0
        self._alive = np.zeros(size, dtype=bool)
        self._alive[live_labels] = True
        self._in_graph = np.zeros(size, dtype=bool)
        self._row = np.full(size, -1, dtype=np.int64)  # label -> row of the float16 copy
        self._vecs = np.zeros((0, max(dim, 1)), dtype=np.float16)
        self._rows = 0
        self._pending: deque[np.ndarray] = deque()  # labels waiting to enter the graph, FIFO
        self._pending_vecs: deque[np.ndarray] = deque()
        self._deletes: list[np.ndarray] = []  # labels to mark deleted in the graph
        self._paused = False
        self._batch = 1  # vectors per insertion batch (adapted to how long one takes)
        self._busy = False  # the inserting thread is between taking work and finishing it
        self._stopping = False
        self._checkpoint_seq = 0
        self._checkpoint_bytes = 0
        self._logged_since = 0
        self._graph_memory: list[tuple[int, int]] = []  # hnswlib's large allocations (hugepages.py)
        self.max_label = size - 1
        self.missing = self._load()
        self._checkpoint_wanted = threading.Event()
        self._checkpoint_lock = threading.Lock()
        self._inserter = threading.Thread(target=self._insert_loop, name="clipseek-hnsw-insert", daemon=True)
        self._inserter.start()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="clipseek-checkpoint", daemon=True)
        self._checkpointer.start()

    # -- loading -------------------------------------------------------------------------------
    def _load(self) -> np.ndarray:
        """Load the checkpoint and replay the log; returns the live labels that have no vector."""
        pointer = self.folder / CHECKPOINT_POINTER
        for stray in self.folder.glob("ckpt-*.tmp"):
            shutil.rmtree(stray, ignore_errors=True)
        if pointer.is_file():
            name = pointer.read_text().strip()
            ckpt = self.folder / name
            meta = json.loads((ckpt / "meta.json").read_text())
            self._checkpoint_seq = int(meta["log_seq"])
            self._checkpoint_bytes = sum(f.stat().st_size for f in ckpt.iterdir())
            self.dim = int(meta["dim"])
            labels = np.load(ckpt / "labels.npy").astype(np.int64)
            stored = np.load(ckpt / "rows.f16.npy", mmap_mode="r")
            self._rows = len(stored)
            # room to grow: doubling a full copy later would cost a commit seconds at a million frames
            self._vecs = np.empty((self._rows + max(1024, self._rows // 4), stored.shape[1]), dtype=np.float16)
            for start in range(0, self._rows, 65536):
                end = min(start + 65536, self._rows)
                self._vecs[start:end] = stored[start:end]
            del stored
            if (ckpt / "graph.bin").is_file():
                count = int(meta.get("graph_count", len(labels)))
                graph = hnswlib.Index(space=self.settings.space, dim=self.dim)
                with self._graph_allocation():
                    graph.load_index(str(ckpt / "graph.bin"), max_elements=max(1024, count + count // 4 + 1024),
                                     allow_replace_deleted=True)
                graph.set_ef(self.settings.ef_search)
                self._graph = graph
                self._use_huge_pages()
                ids = np.asarray(graph.get_ids_list(), dtype=np.int64)
                self._ensure(int(ids.max()) + 1 if len(ids) else 0)
                self._in_graph[ids] = True
                # frames deleted after the checkpoint was written
                for label in ids[~self._alive[ids]].tolist():
                    try:
                        graph.mark_deleted(int(label))
                    except RuntimeError:  # already marked deleted in the checkpoint
                        pass
                self.max_label = max(self.max_label, int(ids.max()) if len(ids) else -1)
            self._ensure(int(labels.max()) + 1 if len(labels) else 0)
            self._row[labels] = np.arange(len(labels), dtype=np.int64)
            for stale in self.folder.glob("ckpt-*"):
                if stale.name != name:
                    shutil.rmtree(stale, ignore_errors=True)
        self.log = VectorLog(self.folder, first_seq=self._checkpoint_seq + 1)  # new segments number past it
        replayed = 0
        for labels, vectors in self.log.read(after_seq=self._checkpoint_seq):
            self.dim = self.dim or vectors.shape[1]
            self._ensure(int(labels.max()) + 1)
            self.max_label = max(self.max_label, int(labels.max()))
            keep = self._alive[labels] & ~self._in_graph[labels]
            if keep.any():
                fresh = self._row[labels] < 0
                self._add_rows(labels[keep & fresh], vectors[keep & fresh])
                self._pending.append(labels[keep])
                self._pending_vecs.append(vectors[keep])
                replayed += int(keep.sum())
        self._logged_since = self.log.bytes_after(self._checkpoint_seq)
        live = np.flatnonzero(self._alive)
        missing = live[self._row[live] < 0]
        if len(missing):
            self._alive[missing] = False
        logger.info("vectors at %s: %d in the checkpoint, %d replayed from the log (inserted into the graph "
                    "in the background)", self.folder, self._rows - replayed, replayed)
        return missing

    def _ensure(self, size: int) -> None:
        self._alive = _grown(self._alive, size, False)
        self._in_graph = _grown(self._in_graph, size, False)
        self._row = _grown(self._row, size, -1)

    def _room_for(self, count: int) -> np.ndarray:
        """The float16 copy with room for ``count`` more rows: the same array, or a larger copy of it
        (made by the one writer without holding the lock that searches take; swapped in under it)."""
        vecs = self._vecs
        if vecs.shape[1] != self.dim:
            return np.zeros((max(1024, count), self.dim), dtype=np.float16)
        return _grown(vecs, self._rows + count, 0)

    def _add_rows(self, labels: np.ndarray, vectors: np.ndarray, room: np.ndarray | None = None) -> None:
        self._vecs = room if room is not None else self._room_for(len(labels))
        self._vecs[self._rows: self._rows + len(labels)] = vectors
        self._row[labels] = np.arange(self._rows, self._rows + len(labels))
        self._rows += len(labels)

    # -- writing (the caller serialises writes) ------------------------------------------------
    def log_append(self, labels: np.ndarray, vectors: np.ndarray) -> tuple[int, int]:
        """Make the vectors durable (not yet visible). Raises OSError with nothing written."""
        mark = self.log.append(labels, vectors)
        self._logged_since += 16 + len(labels) * (8 + 4 * vectors.shape[1])
        return mark

    def log_undo(self, mark: tuple[int, int]) -> None:
        self.log.undo(mark)

    def publish(self, added_labels: np.ndarray, added_vectors: np.ndarray, deleted_labels: np.ndarray) -> None:
        """Make a committed change visible: new vectors searchable at once, deleted ones gone."""
        room = None
        if len(added_labels):
            self.dim = self.dim or added_vectors.shape[1]
            room = self._room_for(len(added_labels))  # a copy, when the array is full: outside the lock
        with self._state:
            if len(added_labels):
                self._ensure(int(added_labels.max()) + 1)
                self.max_label = max(self.max_label, int(added_labels.max()))
                self._alive[added_labels] = True
                self._add_rows(added_labels, added_vectors, room)
                self._pending.append(added_labels)
                self._pending_vecs.append(added_vectors)
            if len(deleted_labels):
                self._alive[deleted_labels] = False
                self._deletes.append(deleted_labels)
            self._work.notify_all()
        if self._checkpoint_due():
            self._checkpoint_wanted.set()

    # -- the graph, filled in the background ---------------------------------------------------
    def _insert_loop(self) -> None:
        while True:
            with self._work:
                while not self._stopping and (self._paused or not (self._pending or self._deletes)):
                    self._work.wait()
                if self._stopping:
                    return
                deletes, self._deletes = self._deletes, []
                taken = 0
                labels = vectors = np.zeros(0, dtype=np.int64)
                if self._pending:
                    taken = min(len(self._pending[0]), self._batch)
                    labels, vectors = self._pending[0][:taken], self._pending_vecs[0][:taken]
                    keep = self._alive[labels]  # deleted before they reached the graph: skipped
                    labels, vectors = labels[keep], vectors[keep]
                if deletes:
                    dead = np.concatenate(deletes)
                    dead = dead[dead < len(self._in_graph)]
                    deletes = dead[self._in_graph[dead]]
                self._busy = True
            try:
                if len(deletes):
                    self._mark_deleted(deletes)
                if len(labels):
                    started = time.perf_counter()
                    self._insert(labels, vectors)
                    per_vector = (time.perf_counter() - started) / len(labels)
                    # as many vectors as fit in insert_batch_ms, so a search waits at most about that long
                    self._batch = int(min(512, max(1, self.settings.insert_batch_ms / 1000 / max(per_vector, 1e-6))))
            except Exception:  # a bug here must not go unnoticed; searches stay exact over what is pending
                logger.exception("inserting into the graph failed; the rest is searched exactly")
                with self._work:
                    self._stopping = True
                    self._busy = False
                    self._work.notify_all()
                return
            with self._work:
                if len(deletes):
                    self._in_graph[deletes] = False
                if taken:
                    self._in_graph[labels] = True
                    if taken == len(self._pending[0]):
                        self._pending.popleft()
                        self._pending_vecs.popleft()
                    else:
                        self._pending[0] = self._pending[0][taken:]
                        self._pending_vecs[0] = self._pending_vecs[0][taken:]
                self._busy = False
                self._work.notify_all()

    def _insert(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        threads = (self.settings.insert_threads or -1) if len(labels) >= 8 else 1
        with self._graph_lock.writing():
            if self._graph is None:
                graph = hnswlib.Index(space=self.settings.space, dim=self.dim)
                graph.init_index(max_elements=max(1024, 2 * len(labels)), ef_construction=self.settings.ef_construction,
                                 M=self.settings.m, allow_replace_deleted=True)
                graph.set_ef(self.settings.ef_search)
                self._graph = graph
            graph = self._graph
            needed = graph.get_current_count() + len(labels)
            if needed > graph.get_max_elements():
                graph.resize_index(max(needed, 2 * graph.get_max_elements()))
            graph.add_items(vectors, labels, num_threads=threads, replace_deleted=True)

    @contextmanager
    def _graph_allocation(self):
        """Note the large mappings hnswlib makes for the graph it loads (compared before and after), so that
        the huge-page pass touches the graph's memory and nothing else of the process. (Only the load is
        watched: that is the one pass; hnswlib's init and resize are not.)"""
        if not self.settings.huge_pages:
            yield
            return
        try:
            before = hugepages.large_anonymous_regions()
        except OSError:  # no /proc: not Linux
            yield
            return
        yield
        after = hugepages.large_anonymous_regions()
        self._graph_memory = hugepages.regions_added(before, after)

    def _mark_deleted(self, labels: np.ndarray) -> None:
        if self._graph is None:
            return
        with self._graph_lock.writing():
            for label in labels.tolist():
                try:
                    self._graph.mark_deleted(int(label))
                except RuntimeError:  # already deleted, or its slot was taken by a newer vector
                    pass

    def wait_for_room(self) -> None:
        """Hold a commit back while too many vectors wait for the graph: every search scores those
        exactly, so their number bounds what a search costs (sustained bulk writes then go at the
        graph's insertion speed)."""
        with self._work:
            self._work.wait_for(lambda: self._stopping or sum(len(p) for p in self._pending)
                                < self.settings.max_pending)

    def wait_until_inserted(self, timeout_s: float = 60.0) -> bool:
        """Block until the graph holds every published vector (tests, benchmarks, checkpoints)."""
        with self._work:
            return self._work.wait_for(lambda: self._stopping or not (self._pending or self._deletes or self._busy),
                                       timeout_s)

    # -- reading -------------------------------------------------------------------------------
    @property
    def pending_count(self) -> int:
        with self._state:
            return sum(len(p) for p in self._pending)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosine scores), best first, at most ``k``; only ``allowed`` labels when given."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        with self._state:
            alive, row, vecs = self._alive, self._row, self._vecs
            pending = np.concatenate(list(self._pending)) if self._pending else np.zeros(0, dtype=np.int64)
            deletes_waiting = sum(len(d) for d in self._deletes)
            graph = self._graph
        if allowed is not None:
            allowed = allowed[allowed < len(alive)]
            allowed = allowed[alive[allowed]]
            if len(allowed) <= self.settings.exact_below or graph is None:
                return self._exact(query, allowed, k, row, vecs)
        if graph is None or np.count_nonzero(alive) <= self.settings.exact_below:
            return self._exact(query, np.flatnonzero(alive), k, row, vecs)
        labels, scores = self._graph_search(graph, query, k + deletes_waiting, alive, allowed, row, vecs)
        if len(pending):
            pending = pending[alive[pending]]
            if allowed is not None:
                pending = pending[np.isin(pending, allowed)]
            extra_labels, extra_scores = self._exact(query, pending, k, row, vecs)
            labels = np.concatenate([labels, extra_labels])
            scores = np.concatenate([scores, extra_scores])
        order = np.argsort(-scores, kind="stable")[:k]
        return labels[order], scores[order]

    def _graph_search(self, graph: hnswlib.Index, query: np.ndarray, k: int, alive: np.ndarray,
                      allowed: np.ndarray | None, row: np.ndarray, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        allowed_set = None if allowed is None else set(allowed.tolist())
        with self._graph_lock.reading():
            count = graph.get_current_count()
            k = max(1, min(k, count))
            graph.set_ef(max(self.settings.ef_search, k))
            try:
                if allowed_set is None:
                    found, distances = graph.knn_query(query[None], k=k)
                else:
                    found, distances = graph.knn_query(query[None], k=min(k, len(allowed_set)),
                                                       filter=lambda label: label in allowed_set)
            except RuntimeError:  # fewer than k reachable (deleted nodes): answer exactly instead
                found = None
        if found is None:
            pool = allowed if allowed is not None else np.flatnonzero(alive)
            return self._exact(query, pool, k, row, vecs)
        labels = found[0].astype(np.int64)
        keep = alive[labels]
        return labels[keep], (1.0 - distances[0][keep]).astype(np.float32)

    @staticmethod
    def _exact(query: np.ndarray, labels: np.ndarray, k: int, row: np.ndarray,
               vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(labels) or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows = row[labels]
        scores = np.empty(len(labels), dtype=np.float32)
        for start in range(0, len(labels), 65536):
            scores[start:start + 65536] = as_float32(vecs[rows[start:start + 65536]]) @ query
        if len(labels) > k:
            top = np.argpartition(-scores, k - 1)[:k]
        else:
            top = np.arange(len(labels))
        top = top[np.argsort(-scores[top], kind="stable")]
        return labels[top].astype(np.int64), scores[top]

    def score(self, query: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Cosine of ``query`` (a vector, or a matrix of row vectors) to each label's vector (from the
        float16 copy): one score per label, or labels x rows."""
        query = np.asarray(query, dtype=np.float32)
        with self._state:
            row, vecs = self._row, self._vecs
        if not len(labels):
            return np.zeros((0,) if query.ndim == 1 else (0, len(query)), dtype=np.float32)
        out = []
        for start in range(0, len(labels), 65536):
            block = as_float32(vecs[row[labels[start:start + 65536]]])
            out.append(block @ (query if query.ndim == 1 else query.T))
        return np.concatenate(out)

    # -- checkpoints ---------------------------------------------------------------------------
    def _checkpoint_due(self) -> bool:
        """The log since the last checkpoint outgrew its share: a checkpoint keeps start-up replay short,
        and writing one per ``checkpoint_fraction`` of growth keeps the bytes written over a library's
        life proportional to its size (not quadratic)."""
        return self._logged_since > max(self.settings.checkpoint_min_mb * 2**20,
                                        self.settings.checkpoint_fraction * self._checkpoint_bytes)

    def _checkpoint_loop(self) -> None:
        while True:
            self._checkpoint_wanted.wait()
            self._checkpoint_wanted.clear()
            if self._stopping:
                return
            self.checkpoint(only_if_due=True)

    def checkpoint(self, only_if_due: bool = False) -> bool:
        """Write the graph and the float16 copy, then forget the log they cover. Searches and commits go
        on (the files are written by a forked copy of the process; new vectors wait for the graph until it is
        done). False when it could not be written
        (the log still holds everything: nothing is lost), or was not due."""
        with self._checkpoint_lock:
            if (self._graph is None and not self._rows) or (only_if_due and not self._checkpoint_due()):
                return False
            with self._commit_lock:  # no commit is half done: everything logged is published
                closed_seq = self.log.rotate()
                with self._state:
                    watermark = self.max_label + 1  # every label logged so far is below this
            # wait until every live vector logged so far is in the graph
            with self._work:
                self._work.wait_for(lambda: self._stopping or (
                    not (self._pending and self._pending[0][0] < watermark) and not self._busy))
                self._paused = True
                self._work.wait_for(lambda: not self._busy)
            name = f"ckpt-{closed_seq:06d}"
            tmp = self.folder / f"{name}.tmp"
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                with self._state:  # the rows of what the graph holds now (the rest is replayed from the log)
                    labels = np.flatnonzero(self._alive & self._in_graph & (self._row >= 0)).astype(np.int64)
                    rows, vecs = self._row[labels], self._vecs
                graph_count = self._graph.get_current_count() if self._graph is not None else 0
                meta = {"log_seq": closed_seq, "dim": self.dim, "graph_count": graph_count, "rows": len(labels)}
                writer = _start_checkpoint_writer(self._graph, tmp, labels, rows, vecs, meta)
            except OSError as exc:
                self._resume()
                return self._checkpoint_failed(tmp, exc)
            # insertion stays paused while the child writes: a page of the graph written meanwhile would be
            # copied for the child (copy-on-write), slowing this process and growing its memory; searches
            # score what waits exactly, and commits go on up to max_pending
            problem = writer.wait()
            self._resume()
            if problem:
                return self._checkpoint_failed(tmp, OSError(problem))
            try:
                os.replace(tmp, self.folder / name)
                fsync_dir(self.folder)
                write_atomically(self.folder / CHECKPOINT_POINTER, name)
            except OSError as exc:
                return self._checkpoint_failed(tmp, exc)
            for old in self.folder.glob("ckpt-*"):
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
            self.log.drop_through(closed_seq)
            self._checkpoint_seq = closed_seq
            self._checkpoint_bytes = sum(f.stat().st_size for f in (self.folder / name).iterdir())
            self._logged_since = self.log.bytes_after(closed_seq)
            logger.info("checkpoint %s: %d vectors, %.1f MB", name, len(labels), self._checkpoint_bytes / 2**20)
            return True

    def _use_huge_pages(self) -> None:
        """At start-up, before anything searches: the loaded graph in 2 MB pages, so that a checkpoint's
        fork copies few page-table entries (the fork holds the GIL: every search waits for it; at a
        million frames 45-60 ms in 4 KB pages, 10-17 ms after this). Only here: while the kernel copies
        a 2 MB range, a thread touching it waits, and passes beside searches and insertions made
        both wait tens of ms (insertions 11-190 ms), more than the fork they would save once per
        checkpoint. What the graph grows by later stays in 4 KB pages until the next start."""
        if not self.settings.huge_pages or self._graph is None or not self._graph_memory:
            return  # off, or a graph under hugepages.MIN_REGION (its fork is short anyway), or not Linux
        report = hugepages.collapse(self._graph_memory)
        if report.supported:
            logger.info("huge pages: %.0f MB of the index's graph in 2 MB pages, %.0f MB left in 4 KB pages "
                        "(%.1f s)", report.huge_bytes / 2**20, report.refused_bytes / 2**20, report.seconds)
        else:
            logger.info("huge pages are not available here (needs Linux >= 6.1, MADV_COLLAPSE): a checkpoint's "
                        "fork copies the graph's page tables, and searches wait for it (~45-60 ms at a million "
                        "frames)")

    def _resume(self) -> None:
        with self._work:
            self._paused = False
            self._work.notify_all()

    def _checkpoint_failed(self, tmp: Path, exc: OSError) -> bool:
        shutil.rmtree(tmp, ignore_errors=True)
        logger.warning("could not write a checkpoint of the index (%s); the log keeps every vector, nothing is "
                       "lost, and the next checkpoint will try again", exc)
        return False

    @property
    def log_bytes(self) -> int:
        return self._logged_since

    def close(self, checkpoint: bool = True) -> None:
        """Stop the background threads; write a checkpoint first when the log is long."""
        if checkpoint and self._logged_since > self.settings.checkpoint_min_mb * 2**20:
            self.wait_until_inserted()
            self.checkpoint()
        with self._work:
            self._stopping = True
            self._work.notify_all()
        self._checkpoint_wanted.set()
        self._inserter.join(timeout=30)
        self._checkpointer.join(timeout=30)
        self.log.close()


def _write_checkpoint_files(graph: hnswlib.Index | None, tmp: Path, labels: np.ndarray, rows: np.ndarray,
                            vecs: np.ndarray, meta: dict) -> None:
    if graph is not None:
        graph.save_index(str(tmp / "graph.bin"))
    out = np.lib.format.open_memmap(tmp / "rows.f16.npy", mode="w+", dtype=np.float16,
                                    shape=(len(labels), meta["dim"]))
    for start in range(0, len(labels), 65536):
        out[start:start + 65536] = vecs[rows[start:start + 65536]]
    out.flush()
    del out
    np.save(tmp / "labels.npy", labels)
    (tmp / "meta.json").write_text(json.dumps(meta))
    for child in tmp.iterdir():
        fsync_file(child)
    fsync_dir(tmp)


class _CheckpointWriter:
    """The checkpoint's files, written by a forked child: hnswlib's ``save_index`` holds the GIL for the
    whole write (seconds at a million frames), so in this process every search would wait for it. The
    child has a copy-on-write snapshot of the graph as it was at the fork (insertion is paused until it
    exits); it writes, fsyncs and exits without running any of this process's cleanup."""

    def __init__(self, graph, tmp, labels, rows, vecs, meta):
        self._read_fd, write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: no logging, no locks of the parent, only the writes
            os.close(self._read_fd)
            code = 0
            try:
                _write_checkpoint_files(graph, tmp, labels, rows, vecs, meta)
            except BaseException as exc:  # reported to the parent through the pipe
                os.write(write_fd, (str(exc) or type(exc).__name__).encode(errors="replace")[:4000])
                code = 1
            os._exit(code)
        os.close(write_fd)

    def wait(self) -> str:
        """'' when the files are written, else why not."""
        _, status = os.waitpid(self.pid, 0)
        message = os.read(self._read_fd, 4000).decode(errors="replace")
        os.close(self._read_fd)
        if os.waitstatus_to_exitcode(status) != 0:
            return message or f"the checkpoint writer exited with status {status}"
        return ""


class _InProcessWriter:
    def __init__(self, *args):
        try:
            _write_checkpoint_files(*args)
            self.problem = ""
        except OSError as exc:
            self.problem = str(exc)

    def wait(self) -> str:
        return self.problem


def _start_checkpoint_writer(graph, tmp, labels, rows, vecs, meta):
    if hasattr(os, "fork"):
        return _CheckpointWriter(graph, tmp, labels, rows, vecs, meta)
    return _InProcessWriter(graph, tmp, labels, rows, vecs, meta)
