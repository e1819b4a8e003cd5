"""Measure what a search's confidence can be calibrated on: the demo model's scores for concepts that are in
the library and for concepts that are not, at several library sizes.

    python bench/confidence.py [--videos 24] [--work /tmp/clipseek-confidence]

Makes the demo videos, samples and embeds their frames as the Flow does (clipseek.media.source,
clipseek.model.clip), then asks every colour+shape concept of the demo vocabulary (three phrasings) and an
image of every concept (rendered apart from the videos: another background, place and size) of libraries
made of the first 24, 12, 6 and 3 videos, and of those libraries copied 8 times with noise (more frames,
same content). For each query: the best frame's cosine, and its z-score against the query's scores over the
library (clipseek.index.confidence). Prints, per library, the spread of both for concepts present and absent.
docs/search.md records a run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from clipseek.demo import vocab  # noqa: E402
from clipseek.index.confidence import sample_rows, standing  # noqa: E402


def embed_library(videos_dir: Path, count: int) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """(frame vectors, video file of each, concept of each) of the demo library."""
    from make_demo_videos import main as make_videos

    from clipseek.media.shots import SamplingSettings
    from clipseek.media.source import MediaSource
    from clipseek.model.clip import load_clip
    from clipseek.model.spec import image_size_for

    if not (videos_dir / "truth.json").exists():
        make_videos([str(videos_dir), "--videos", str(count), "--quiet"])
    truth = json.loads((videos_dir / "truth.json").read_text())
    media = MediaSource([str(videos_dir)], SamplingSettings(), image_size_for("demo"))
    clip = load_clip("demo", None, towers="image")
    vectors, files, concepts = [], [], []
    for video in truth["videos"]:
        frames = media.read_range(str(videos_dir / video["file"]), None, None).result.scan.frames
        vectors.append(clip.encode_frames(np.stack([f.pixels for f in frames])))
        for frame in frames:
            shot = next(s for s in video["shots"] if s["start_s"] <= frame.time_s < s["end_s"])
            files.append(video["file"])
            concepts.append((shot["shape"], shot["colour"]))
    return np.concatenate(vectors), files, concepts


def query_vectors(size_px: int) -> tuple[dict, dict]:
    """Text queries (concept, phrasing) -> vector, and image queries concept -> vector."""
    from clipseek.media.imaging import letterbox
    from clipseek.model.clip import load_clip

    text = load_clip("demo", None, towers="text")
    image = load_clip("demo", None, towers="image")
    texts = {(c.shape, c.colour, t): text.encode_texts([vocab.caption(c.shape, c.colour, t)])[0]
             for c in vocab.CONCEPTS for t in (0, 3, 5)}
    rng = np.random.default_rng(7)
    pictures = [letterbox(vocab.render_scene(vocab.random_scene(rng, c.shape, c.colour), 320, 240), size_px)
                for c in vocab.CONCEPTS]
    images = dict(zip(((c.shape, c.colour) for c in vocab.CONCEPTS), image.encode_frames(np.stack(pictures)),
                      strict=True))
    return texts, images


def spread(values: list[float]) -> str:
    if not values:
        return "      (none)"
    v = np.asarray(values)
    return f"min {v.min():6.3f} p5 {np.percentile(v, 5):6.3f} med {np.median(v):6.3f} max {v.max():6.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--work", type=Path, default=Path("/tmp/clipseek-confidence"))
    args = parser.parse_args(argv)
    from clipseek.model.spec import image_size_for

    vectors, files, concepts = embed_library(args.work / "videos", args.videos)
    texts, images = query_vectors(image_size_for("demo"))
    rng = np.random.default_rng(0)
    print(f"{len(vectors)} frames in {args.videos} videos")
    for first in (24, 12, 6, 3):
        keep = np.array([int(f[5:7]) <= first for f in files])
        for copies in (1, 8):
            library = np.concatenate([vectors[keep]] * copies)
            if copies > 1:
                library = library + rng.normal(0, 0.02, library.shape)
                library /= np.linalg.norm(library, axis=1, keepdims=True)
            present = {c for c, k in zip(concepts, keep, strict=True) if k}
            sample = sample_rows(len(library))
            found: dict[tuple[str, bool], list[tuple[float, float]]] = {}
            for kind, queries in (("text", texts), ("image", images)):
                for key, query in queries.items():
                    scores = library @ query
                    top = float(scores.max())
                    z = float(standing(np.array([top]), scores[sample])[0])
                    found.setdefault((kind, key[:2] in present), []).append((top, z))
            print(f"\nlibrary: first {first} videos x{copies} ({len(library)} frames, {len(present)} of 64 concepts)")
            for (kind, is_present), rows in sorted(found.items()):
                label = f"{kind:5s} {'present' if is_present else 'absent ':7s} n={len(rows):3d}"
                print(f"  {label} cosine {spread([r[0] for r in rows])}")
                print(f"  {' ' * len(label)} z      {spread([r[1] for r in rows])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
