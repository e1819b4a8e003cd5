"""The library's contract, on every backend: self-recall, clips, filters, ranges, content vs paths,
deletes that win, validation, and search at every top_k after any history. No Flow, no model."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from index_helpers import SynthVideo, library_of, pairs, unit, videos

from clipseek.errors import ClipseekError, QueryError
from clipseek.index import Library, open_backend
from clipseek.index.embedded.vectors import HnswSettings

# With CLIPSEEK_QDRANT_URL set (a real server), the qdrant runs go there, each test in collections of its own.
QDRANT_URL = os.environ.get("CLIPSEEK_QDRANT_URL", "")
BACKENDS = {
    "embedded-exact": {"name": "embedded", "hnsw": HnswSettings(exact_below=10**9)},
    "embedded-graph": {"name": "embedded", "hnsw": HnswSettings(exact_below=0)},
    "qdrant-server" if QDRANT_URL else "qdrant-local": {"name": "qdrant", "qdrant_url": QDRANT_URL},
}


def backend_options(name: str, tmp_path) -> dict:
    options = dict(BACKENDS[name])
    if options["name"] == "qdrant":
        options["collection"] = f"test-{uuid.uuid5(uuid.NAMESPACE_URL, str(tmp_path)).hex[:12]}"
    return options


class Disk:
    """Which media files exist, as the library asks (copies vs moves)."""

    def __init__(self):
        self.files: set[str] = set()

    def __call__(self, path: str) -> bool:
        return path in self.files


@pytest.fixture(params=list(BACKENDS))
def make_library(request, tmp_path):
    opened: list[Library] = []
    disk = Disk()

    def make(workspace=None) -> Library:
        options = backend_options(request.param, tmp_path)
        backend = open_backend(options.pop("name"), workspace or tmp_path / "ws", **options)
        library = Library(backend, exists=disk)
        opened.append(library)
        return library

    make.disk = disk
    make.backend = request.param
    yield make
    for library in opened:
        try:
            library.close()
        except Exception:  # already closed by the test
            pass


def reopen(make, library):
    library.close()
    return make()


def test_every_shot_finds_itself_first_with_its_exact_boundaries(make_library):
    library = make_library()
    synth = videos(5)
    library_of(synth, library)
    for video in synth:
        for s, centre in enumerate(video.centres):
            (record, clip), *_ = pairs(library.search(centre, top_k=3))
            assert record.video_id == video.video_id
            assert (clip.start_s, clip.end_s) == (video.spans[s].start_s, video.spans[s].end_s)


def test_results_are_ranked_do_not_overlap_and_stay_inside_their_videos(make_library):
    library = make_library()
    library_of(videos(6), library)
    results = pairs(library.search(unit(np.random.default_rng(5).normal(size=32)), top_k=20))
    assert len(results) == 20
    scores = [c.score for _, c in results]
    assert scores == sorted(scores, reverse=True)
    spans: dict[str, list] = {}
    for record, clip in results:
        assert 0.0 <= clip.start_s < clip.end_s <= record.duration_s
        assert clip.start_s <= clip.best_time_s <= clip.end_s
        spans.setdefault(record.video_id, []).append((clip.start_s, clip.end_s))
    for ranges in spans.values():
        ranges.sort()
        assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_a_filter_restricts_results_to_the_chosen_videos_by_id_hash_or_path(make_library):
    library = make_library()
    synth = videos(5)
    library_of(synth, library)
    for key in ("video003", synth[3].path, synth[3].content_hash):
        results = pairs(library.search(synth[0].centres[0], top_k=5, video_keys=[key]))
        assert results and all(r.video_id == "video003" for r, _ in results), key
    with pytest.raises(QueryError, match="unknown video"):
        pairs(library.search(synth[0].centres[0], top_k=5, video_keys=["/nowhere.mp4"]))


def test_a_delete_removes_the_video_and_its_frames_and_survives_a_restart(make_library):
    library = make_library()
    synth = videos(5)
    library_of(synth, library)
    assert library.delete("video001").status == "deleted"
    library = reopen(make_library, library)
    assert {r.video_id for r in library.videos()} == {"video000", "video002", "video003", "video004"}
    assert library.frame_count() == 4 * 12
    for centre in synth[1].centres:
        assert all(r.video_id != "video001" for r, _ in pairs(library.search(centre, top_k=5)))
    with pytest.raises(ClipseekError, match="no indexed video matches"):
        library.delete("video001")


def test_a_range_replaces_only_its_own_time_and_shots_split_by_a_range_edge_are_joined(make_library):
    library = make_library()
    video = SynthVideo("ranged", shots=4)
    assert library.index_range(video.upload(0.0, 4.5)).status == "indexed"
    record = library.videos()[0]
    assert not record.complete and record.ranges == [[0.0, 4.5]]
    assert library.index_range(video.upload(4.5, None)).status == "indexed"
    record = library.videos()[0]
    assert record.complete and record.ranges == [[0.0, 12.0]]
    assert [(s.start_s, s.end_s) for s in record.shots] == [(0, 3), (3, 6), (6, 9), (9, 12)]  # 4.5 was an edge
    assert library.frame_count("ranged") == 12
    again = video.upload(6.0, 9.0, force=True)
    again.times_s, again.vectors = again.times_s[:1], again.vectors[:1]  # the range now yields one frame
    assert library.index_range(again).status == "indexed"
    assert library.frame_count("ranged") == 10
    assert library.index_range(video.upload(0.0, 4.5)).status == "unchanged"  # covered, not forced


def test_mixing_models_or_dimensions_is_refused(make_library):
    library = make_library()
    library.index_range(SynthVideo("a", dim=32).upload(model="model-a"))
    with pytest.raises(ClipseekError, match="32-d embeddings"):
        library.index_range(SynthVideo("b", dim=8).upload(model="model-b"))
    with pytest.raises(ClipseekError, match="model-a"):
        library.index_range(SynthVideo("b", dim=32).upload(model="model-b"))
    with pytest.raises(QueryError, match="dimensions"):
        pairs(library.search(unit(np.ones(8)), top_k=3))
    with pytest.raises(QueryError, match="model-a"):
        pairs(library.search(unit(np.ones(32)), top_k=3, model="model-b"))


@pytest.mark.parametrize("bad", [
    {"end_s": float("nan")}, {"start_s": float("nan")}, {"end_s": float("inf")}, {"start_s": -1.0},
    {"duration_s": float("nan")}, {"end_s": 0.0}, {"times": [float("nan")]}, {"vector": float("nan")},
    {"times": [99.0]}, {"vector": 0.0},
])
def test_a_malformed_range_is_refused_and_never_changes_the_index(make_library, bad):
    library = make_library()
    video = SynthVideo("good")
    library.index_range(video.upload())
    before = (library.frame_count(), [(r.video_id, r.ranges) for r in library.videos()])
    upload = video.upload(force=True)
    for name in ("end_s", "start_s", "duration_s"):
        if name in bad:
            setattr(upload, name, bad[name])
    if "times" in bad:
        upload.times_s = np.array(bad["times"] + upload.times_s.tolist()[1:])
    if "vector" in bad:
        upload.vectors = upload.vectors.copy()
        upload.vectors[0] = bad["vector"]
    with pytest.raises(ValueError):
        library.index_range(upload)
    assert (library.frame_count(), [(r.video_id, r.ranges) for r in library.videos()]) == before


@pytest.mark.parametrize("top_k", [0, -1, 101, 2**31, 10**18, True, 1.5])
def test_a_bad_top_k_is_refused_with_a_clear_error(make_library, top_k):
    library = make_library()
    library_of(videos(1), library)
    with pytest.raises(QueryError, match="top_k must be between 1 and 100"):
        pairs(library.search(unit(np.ones(32)), top_k=top_k))
    with pytest.raises(QueryError, match="finite"):
        pairs(library.search(np.full(32, np.nan), top_k=3))


def test_the_same_content_at_two_paths_is_one_video_with_both_paths_and_one_delete_keeps_the_other(make_library):
    library = make_library()
    video = SynthVideo("dup")
    make_library.disk.files |= {"/media/dup.mp4", "/media/copy/dup.mp4"}
    library.index_range(video.upload())
    frames = library.frame_count()
    outcome = library.index_range(video.upload(path="/media/copy/dup.mp4"))
    assert outcome.status == "unchanged"
    assert library.videos()[0].paths == ("/media/dup.mp4", "/media/copy/dup.mp4")
    assert library.frame_count() == frames  # one set of vectors
    deleted = library.delete("/media/dup.mp4")
    assert deleted.status == "deleted" and "stays indexed at /media/copy/dup.mp4" in deleted.message
    library = reopen(make_library, library)
    (record,) = library.videos()
    assert record.paths == ("/media/copy/dup.mp4",) and library.frame_count() == frames
    (hit, _), *_ = pairs(library.search(video.centres[0], top_k=1))
    assert hit.path == "/media/copy/dup.mp4"


def test_a_move_is_recognised_only_when_the_old_file_is_gone(make_library):
    library = make_library()
    video = SynthVideo("mover")
    make_library.disk.files |= {"/media/mover.mp4"}
    library.index_range(video.upload())
    make_library.disk.files = {"/media/moved/mover.mp4"}  # the old file is gone
    assert library.probe(video.video_id, video.content_hash, "/media/moved/mover.mp4").paths == (
        "/media/moved/mover.mp4",)
    library = reopen(make_library, library)
    assert library.videos()[0].paths == ("/media/moved/mover.mp4",)


def test_a_path_whose_content_changed_replaces_the_old_video(make_library):
    library = make_library()
    old, new = SynthVideo("oldcontent"), SynthVideo("newcontent", seed=9)
    library.index_range(old.upload(path="/media/clip.mp4"))
    assert library.index_range(new.upload(path="/media/clip.mp4")).status == "indexed"
    assert [(r.video_id, r.paths) for r in library.videos()] == [("newcontent", ("/media/clip.mp4",))]
    assert library.frame_count() == len(new.times)


def test_a_delete_wins_over_ranges_of_a_run_planned_before_it(make_library):
    library = make_library()
    video = SynthVideo("racing", shots=4)
    planned = library.generation()
    assert library.index_range(video.upload(0.0, 6.0, generation=planned)).status == "indexed"
    library.delete(video.path)
    late = library.index_range(video.upload(6.0, None, generation=planned))
    assert late.status == "deleted" and "deleted while it was being indexed" in late.message
    assert library.videos() == [] and library.frame_count() == 0
    library = reopen(make_library, library)
    assert library.videos() == []
    fresh = library.generation()  # a new run after the delete indexes it again
    assert library.index_range(video.upload(generation=fresh)).status == "indexed"


def test_search_answers_every_top_k_after_heavy_churn_and_a_restart(make_library):
    """Many deletes and re-indexes leave a graph full of replaced nodes; every top_k up to the maximum
    must still answer (hnswlib raised 'Cannot return the results in a contiguous 2D array')."""
    library = make_library()
    synth = videos(30, shots=2)
    rng = np.random.default_rng(3)
    for _ in range(6):
        for video in synth:
            if rng.random() < 0.5:
                library.index_range(video.upload(force=True))
            elif library.find(video.video_id)[0] is not None:
                library.delete(video.video_id)
    live = library.frame_count()
    assert 0 < live < 30 * 6
    for _ in range(2):
        for top_k in range(1, 101):
            results = pairs(library.search(synth[0].centres[0], top_k=top_k))
            assert 1 <= len(results) <= top_k
        library = reopen(make_library, library)
    assert library.frame_count() == live


def test_a_clip_grows_over_frames_that_were_not_candidates(make_library):
    """The best frame of a 30 s shot is the top hit; its other 30 frames score 0.975, below 100
    distractors (0.98), so none is a candidate; they still join the clip (within 0.03 of 0.99)."""
    def at_cosine(cosines, seed):
        rng = np.random.default_rng(seed)
        out = []
        for c in cosines:
            u = rng.normal(size=32)
            u[0] = 0.0
            u /= np.linalg.norm(u)
            out.append(c * np.eye(32)[0] + np.sqrt(1 - c * c) * u)
        return np.asarray(out, dtype=np.float32)

    library = make_library()
    target = SynthVideo("target", shots=1)
    upload = target.upload()
    upload.duration_s = upload.end_s = 31.0
    upload.shots[0] = upload.shots[0].__class__(0.0, 31.0)
    upload.times_s, upload.vectors = np.arange(31) + 0.5, at_cosine([0.99] + [0.975] * 30, 0)
    library.index_range(upload)
    for v in range(10):
        d = SynthVideo(f"distract{v}", shots=10, seed=v + 1)
        u = d.upload()
        u.vectors = at_cosine([0.98] * len(u.times_s), v + 1)
        library.index_range(u)
    for _ in range(2):
        (record, clip), *_ = pairs(library.search(np.eye(32, dtype=np.float32)[0], top_k=3))
        assert record.video_id == "target"
        assert clip.score == pytest.approx(0.99, abs=2e-3)
        assert (clip.start_s, clip.end_s) == (0.0, 31.0)
        library = reopen(make_library, library)
