"""Migrating a workspace written by the snapshot store (clipseek <= e8798a6) to the embedded layout.

The old layout: ``CURRENT`` names ``snap-NNNNNN/`` with ``meta.json`` (videos with their shots and
merged ranges, model, dim, video numbers), ``frames.npz`` (label -> video number, time, and since
late 2026 label -> row), ``vectors.npy`` (float16 copy; absent in the oldest) and ``index.bin``
(hnswlib). Labels are kept, so the old graph becomes the first checkpoint as it is.

The new files are built in ``.migrating/`` and moved into place; ``FORMAT`` is written last, and only
then is the old snapshot removed. A crash at any point leaves the old snapshot in place and the
migration starts again at the next load.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from clipseek.index.backend import Change, ModelIdentity
from clipseek.index.embedded.files import FORMAT, fsync_dir, fsync_file, write_atomically
from clipseek.index.records import Piece, VideoRecord
from clipseek.types import Shot

logger = logging.getLogger("clipseek.index")


def is_snapshot_workspace(workspace: Path) -> bool:
    return (workspace / "CURRENT").is_file() and not (workspace / "FORMAT").is_file()


def migrate_snapshot_workspace(workspace: Path) -> bool:
    """Migrate ``workspace`` if it holds the old layout; True when it did."""
    from clipseek.index.embedded.catalog import SqlCatalog

    if not is_snapshot_workspace(workspace):
        return False
    snap = workspace / (workspace / "CURRENT").read_text().strip()
    logger.warning("migrating the index at %s from the snapshot layout (%s) to the log + checkpoint layout",
                   workspace, snap.name)
    staging = workspace / ".migrating"
    for leftover in (staging, workspace / "vectors"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in workspace.glob("catalog.sqlite3*"):
        leftover.unlink()
    staging.mkdir()
    meta = json.loads((snap / "meta.json").read_text())
    arrays = np.load(snap / "frames.npz")
    frame_video = arrays["video"].astype(np.int64)
    frame_time = arrays["time"].astype(np.float64)
    live = np.flatnonzero(frame_video[: int(meta["next_label"])] >= 0)
    ids = {int(number): video_id for video_id, number in meta["video_numbers"].items()}
    dim = int(meta.get("dim", 0))

    vectors = staging / "vectors"
    ckpt = vectors / "ckpt-000000"
    ckpt.mkdir(parents=True)
    if dim:
        shutil.copyfile(snap / "index.bin", ckpt / "graph.bin")
        np.save(ckpt / "rows.f16.npy", _live_vectors(snap, arrays, live, dim))
    else:
        np.save(ckpt / "rows.f16.npy", np.zeros((0, 1), dtype=np.float16))
    np.save(ckpt / "labels.npy", live.astype(np.int64))
    (ckpt / "meta.json").write_text(json.dumps({"log_seq": 0, "dim": dim, "graph_count": int(meta["next_label"]),
                                                "rows": len(live), "migrated_from": snap.name}))
    (vectors / "CHECKPOINT").write_text("ckpt-000000")

    catalog = SqlCatalog(staging / "catalog.sqlite3")
    change = Change(model=ModelIdentity(meta.get("model", ""), dim) if dim else None)
    for video in meta["videos"]:
        shots = tuple(Shot(float(s["start_s"]), float(s["end_s"]), bool(s.get("starts_at_cut", True)))
                      for s in video.get("shots", []))
        pieces = []
        for start_s, end_s in video.get("ranges", []):
            piece = Piece(float(start_s), float(end_s), shots, video.get("indexed_at", "")).trimmed(start_s, end_s)
            if piece is not None:
                pieces.append(piece)
        record = VideoRecord(video_id=video["video_id"], content_hash=video["content_hash"],
                             duration_s=float(video["duration_s"]), paths=(video["path"],),
                             size_bytes=int(video.get("size_bytes", 0)), width_px=int(video.get("width_px", 0)),
                             height_px=int(video.get("height_px", 0)), fps=float(video.get("fps", 0.0)),
                             indexed_at=video.get("indexed_at", ""), pieces=tuple(pieces))
        change.videos.append(record)
        change.pieces += [(record.video_id, p) for p in pieces]
    rows = [(int(label), ids[int(frame_video[label])], float(frame_time[label])) for label in live.tolist()]
    catalog.write(change, rows)
    catalog.close()  # the last connection checkpoints the WAL into the file

    for path in vectors.rglob("*"):
        if path.is_file():
            fsync_file(path)
    fsync_dir(ckpt)
    fsync_dir(vectors)
    (staging / "catalog.sqlite3").rename(workspace / "catalog.sqlite3")
    vectors.rename(workspace / "vectors")
    fsync_dir(workspace)
    write_atomically(workspace / "FORMAT", FORMAT + "\n")
    (workspace / "CURRENT").unlink()
    for old in workspace.glob("snap-*"):
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(workspace)
    logger.warning("migrated %s: %d videos, %d frames", workspace, len(change.videos), len(rows))
    return True


def _live_vectors(snap: Path, arrays, live: np.ndarray, dim: int) -> np.ndarray:
    """The float16 vectors of the live labels, in label order, from whichever copy the snapshot has."""
    if (snap / "vectors.npy").is_file():
        stored = np.load(snap / "vectors.npy")
        if "row" in arrays:
            return stored[arrays["row"].astype(np.int64)[live]].astype(np.float16)
        return stored[live].astype(np.float16)  # one row per label
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=dim)
    index.load_index(str(snap / "index.bin"))
    out = np.zeros((len(live), dim), dtype=np.float16)
    for start in range(0, len(live), 50_000):
        out[start:start + 50_000] = index.get_items(live[start:start + 50_000], return_type="numpy")
    return out
