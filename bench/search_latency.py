"""Search latency through the running Flow (HTTP and gRPC) over synthetic indexes, and ANN recall.

Synthetic frames are clustered unit vectors (Gaussian blobs around random centres: pure Gaussian
vectors make hnswlib look worse than on real embeddings), written straight into an index workspace
(clipseek.index, embedded backend) as videos of ``FRAMES_PER_VIDEO`` frames at 1 fps with a shot every
5 s, then the Flow starts on that workspace. Workspaces are cached under build/bench/ (building 100k takes minutes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.inputs import CACHE_DIR
from bench.measure import percentile
from clipseek.types import Shot

FRAMES_PER_VIDEO = 1000
SHOT_S = 5.0
RECALL_QUERIES = 200
TEXTS = ["a red car", "a dog running on grass", "people at a wedding", "snow on mountains", "a cat asleep",
         "fireworks at night", "a man riding a bike", "a bowl of soup", "waves on a beach", "a city at dusk",
         "children playing football", "a plane taking off", "a crowded market", "rain on a window",
         "a horse in a field", "a birthday cake with candles"]


def clustered_vectors(count: int, dim: int, seed: int = 0, clusters: int | None = None,
                      spread: float = 0.35) -> np.ndarray:
    """``count`` unit vectors in ``clusters`` blobs (about one blob per 100 vectors)."""
    rng = np.random.default_rng(seed)
    clusters = clusters or max(4, count // 100)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((count, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, count, step):
        n = min(step, count - start)
        which = rng.integers(0, clusters, size=n)
        noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        block = centres[which] + noise
        out[start:start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def workspace_path(count: int, dim: int, model: str) -> Path:
    safe = Path(model).stem.replace("/", "_")
    return CACHE_DIR / f"ws2-{safe}-{dim}d-{count}"


def synthetic_upload(number: int, vectors: np.ndarray, model: str, frames_per_video: int = FRAMES_PER_VIDEO):
    """Video ``number`` of a synthetic library: ``len(vectors)`` frames at 1 fps, a shot every SHOT_S."""
    from clipseek.index import RangeUpload

    n = len(vectors)
    video_id = f"{number:016x}"
    shots = [Shot(t, min(t + SHOT_S, float(n))) for t in np.arange(0.0, n, SHOT_S).tolist()]
    return RangeUpload(video_id=video_id, content_hash=video_id * 4, path=f"/synthetic/video-{number:05d}.mp4",
                       duration_s=float(n), start_s=0.0, end_s=float(n), shots=shots,
                       times_s=np.arange(n, dtype=np.float64) + 0.5, vectors=vectors, model=model, width_px=1280,
                       height_px=720, fps=30.0)


def build_workspace(count: int, dim: int, model: str, workspace: Path | None = None) -> tuple[Path, float]:
    """An index workspace (embedded backend) with ``count`` synthetic frames, checkpointed; (path, build
    seconds, or 0 if it was cached). Frame ``i`` gets label ``i``; the raw vectors are kept beside it in
    ``bench-vectors.npy`` for exact recall."""
    import shutil

    from clipseek.index import Library, open_backend
    from clipseek.index.embedded.vectors import HnswSettings
    from clipseek.model.spec import resolve_model

    path = workspace or workspace_path(count, dim, model)
    model = resolve_model(model, "none").name  # the name the encoders stamp on their vectors
    if (path / "FORMAT").is_file() and (path / "bench-vectors.npy").is_file():
        return path, 0.0
    shutil.rmtree(path, ignore_errors=True)
    vectors = clustered_vectors(count, dim)
    started = time.perf_counter()
    library = Library(open_backend("embedded", path, hnsw=HnswSettings(checkpoint_min_mb=1e9)))
    for number, start in enumerate(range(0, count, FRAMES_PER_VIDEO)):
        library.index_range(synthetic_upload(number, vectors[start:start + FRAMES_PER_VIDEO], model))
    library.backend.vectors.wait_until_inserted(timeout_s=24 * 3600)
    library.backend.vectors.checkpoint()
    library.close()
    build_s = time.perf_counter() - started
    np.save(path / "bench-vectors.npy", vectors)
    return path, build_s


def ann_recall_at_10(path: Path, queries: int = RECALL_QUERIES, ef_search: int | None = None,
                     timing: dict | None = None) -> float:
    """recall@10 of the engine's candidate search (k = 100 candidates from the hnsw graph at its ef, or
    ``ef_search``) against exact search, for queries drawn near the data (fresh points of the same
    blobs). With a ``timing`` dict, also the mean ms of one hnsw query (k 100, one at a time) as "knn_ms"."""
    from clipseek.index.embedded.backend import EmbeddedBackend
    from clipseek.index.embedded.vectors import HnswSettings

    vectors = np.load(path / "bench-vectors.npy", mmap_mode="r")
    settings = HnswSettings()
    backend = EmbeddedBackend(path, settings)
    try:
        graph = backend.vectors._graph
        rng = np.random.default_rng(1)
        picks = rng.choice(len(vectors), size=queries, replace=False)
        noise = rng.standard_normal((queries, vectors.shape[1])).astype(np.float32) * (0.35 / np.sqrt(vectors.shape[1]))
        query = np.asarray(vectors[picks]) + noise
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        labels_seen, scores_seen = [], []
        for start in range(0, len(vectors), 200_000):  # exact top 10 of each chunk, then of all chunks
            scores = query @ np.asarray(vectors[start:start + 200_000]).T
            top = np.argpartition(-scores, 10, axis=1)[:, :10]
            labels_seen.append(top + start)
            scores_seen.append(np.take_along_axis(scores, top, axis=1))
        all_labels, all_scores = np.concatenate(labels_seen, axis=1), np.concatenate(scores_seen, axis=1)
        exact = np.take_along_axis(all_labels, np.argsort(-all_scores, axis=1)[:, :10], axis=1)
        k = 100  # what a search asks the graph for at top_k = 10 (top_k * oversample, at least 100)
        graph.set_ef(max(ef_search or settings.ef_search, k))
        if timing is not None:
            started = time.perf_counter()
            for row in query:
                graph.knn_query(row[None], k=k)
            timing["knn_ms"] = (time.perf_counter() - started) / len(query) * 1000
        labels, distances = graph.knn_query(query, k=k)
        order = np.argsort(distances, axis=1)[:, :10]
        found = np.take_along_axis(labels, order, axis=1)
        return float(np.mean([len(set(found[i]) & set(exact[i])) / 10 for i in range(queries)]))
    finally:
        backend.close()


def in_process_search(workspace: str, model: str, pretrained: str, queries: int = 100) -> dict:
    """The two halves of a search without the Flow: text encoding (on the runtime and threads the text
    encoder uses by default: ONNX Runtime on a CPU), and Library.search (ms, p50)."""
    from clipseek.index import open_library
    from clipseek.model.clip import load_clip
    from clipseek.model.onnx_text import OnnxTextModel, OnnxUnavailable
    from services.text_encoder.executor import TextEncoderSettings

    try:
        clip = OnnxTextModel(model, pretrained, TextEncoderSettings().onnx_threads)
    except OnnxUnavailable:
        clip = load_clip(model, pretrained, towers="text")
    library = open_library("embedded", Path(workspace))
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(queries)]
    encode_ms, search_ms = [], []
    try:
        for text in texts:
            started = time.perf_counter()
            vector = clip.encode_texts([text])[0]
            encode_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            library.search(vector, 10)
            search_ms.append((time.perf_counter() - started) * 1000)
    finally:
        library.close()
    return {"text_encode_p50_ms": percentile(encode_ms, 50), "store_search_p50_ms": percentile(search_ms, 50),
            "store_search_p99_ms": percentile(search_ms, 99)}


@dataclass
class LatencyResult:
    frames: int
    build_s: float
    recall_at_10: float
    http_ms: list[float]
    grpc_ms: list[float]
    parts: dict

    def stats(self, protocol: str) -> tuple[float, float, float]:
        values = self.http_ms if protocol == "http" else self.grpc_ms
        return percentile(values, 50), percentile(values, 95), percentile(values, 99)


def time_searches(flow, queries: int) -> dict[str, list[float]]:
    """End-to-end milliseconds of ``queries`` searches per protocol (top 10) through a running Flow."""
    from clipseek.api.client import ClipseekClient

    clients = {"http": ClipseekClient(flow.http), "grpc": ClipseekClient(flow.grpc)}
    timings: dict[str, list[float]] = {"http": [], "grpc": []}
    for client in clients.values():
        for i in range(10):  # warm-up
            client.search(TEXTS[i % len(TEXTS)])
    for i in range(queries):  # alternate protocols so load spikes hit both alike
        for protocol, client in clients.items():
            started = time.perf_counter()
            # a text of its own per protocol: the same text twice would be a hit in the text encoder's
            # query cache for the second protocol (it skipped the model, ~13 ms, and looked faster)
            segments = client.search(f"{TEXTS[i % len(TEXTS)]} {i} {protocol}", top_k=10)
            timings[protocol].append((time.perf_counter() - started) * 1000)
            if not segments:
                raise RuntimeError("a search returned nothing")
    return timings


def search_in_fresh_process(workspace: str, model: str, pretrained: str, queries: int) -> dict[str, list[float]]:
    """A Flow on ``workspace`` and ``time_searches`` through it, as a bench.worker task (see
    bench.indexing.index_in_fresh_process for why a fresh process)."""
    from bench.indexing import start_flow

    with start_flow(model, pretrained, CACHE_DIR, Path(workspace)) as flow:
        return time_searches(flow, queries)


def measure_search(count: int, dim: int, model: str, pretrained: str, queries: int, log) -> LatencyResult:
    """Build (or reuse) the workspace, check recall, time the halves alone, then ``queries`` searches
    per protocol through a Flow started on that workspace."""
    from bench.worker import run_in_child

    path, build_s = build_workspace(count, dim, model)
    log(f"  {count} frames: workspace " + (f"built in {build_s:.1f} s" if build_s else "cached"))
    recall = ann_recall_at_10(path)
    parts = run_in_child("search_parts", workspace=str(path), model=model, pretrained=pretrained,
                         queries=min(queries, 100))
    timings = run_in_child("flow_search", workspace=str(path), model=model, pretrained=pretrained, queries=queries)
    log(f"  {count} frames: recall@10 {recall:.3f}, HTTP p50 {percentile(timings['http'], 50):.1f} ms")
    return LatencyResult(count, build_s, recall, timings["http"], timings["grpc"], parts)
