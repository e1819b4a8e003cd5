"""The frame index: self-recall, filters, ranges, deletes, persistence and crash safety."""

import os

import numpy as np
import pytest

from clipseek.errors import ClipseekError
from clipseek.store import FrameStore, ShotSpan, VideoRecord


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def clustered(n_videos=5, shots=4, per_shot=3, dim=32, seed=0):
    """Each shot of each video gets its own direction; its frames are small perturbations of it."""
    rng = np.random.default_rng(seed)
    videos = []
    for v in range(n_videos):
        centres = unit(rng.normal(size=(shots, dim)))
        times, vecs, spans = [], [], []
        for s in range(shots):
            spans.append(ShotSpan(s * 3.0, (s + 1) * 3.0))
            for f in range(per_shot):
                times.append(s * 3.0 + 0.5 + f)
                vecs.append(centres[s] + 0.05 * rng.normal(size=dim))
        videos.append((f"video{v:02d}", spans, np.array(times), unit(vecs), centres))
    return videos


def fill(store, videos):
    for video_id, spans, times, vecs, _ in videos:
        record = VideoRecord(video_id=video_id, path=f"/m/{video_id}.mp4", content_hash=video_id * 4,
                             duration_s=spans[-1].end_s)
        store.add(record, spans, times, vecs, "test-model", 0.0, spans[-1].end_s)


def test_every_shot_finds_itself_first_with_its_exact_boundaries(tmp_path):
    store = FrameStore(tmp_path)
    videos = clustered()
    fill(store, videos)
    for video_id, spans, _, _, centres in videos:
        for s, centre in enumerate(centres):
            (record, clip), *_ = store.search(centre, top_k=3)
            assert record.video_id == video_id
            assert (clip.start_s, clip.end_s) == (spans[s].start_s, spans[s].end_s)


def test_results_do_not_overlap_and_stay_inside_the_video(tmp_path):
    store = FrameStore(tmp_path)
    fill(store, clustered())
    query = unit(np.random.default_rng(5).normal(size=(1, 32)))[0]
    results = store.search(query, top_k=20)
    assert len(results) == 20
    assert [c.score for _, c in results] == sorted((c.score for _, c in results), reverse=True)
    by_video = {}
    for record, clip in results:
        assert 0.0 <= clip.start_s < clip.end_s <= record.duration_s
        assert clip.start_s <= clip.best_time_s <= clip.end_s
        by_video.setdefault(record.video_id, []).append((clip.start_s, clip.end_s))
    for spans in by_video.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_filter_restricts_results_to_the_chosen_videos(tmp_path):
    store = FrameStore(tmp_path)
    videos = clustered()
    fill(store, videos)
    target = videos[0][4][0]  # the first shot of video00
    results = store.search(target, top_k=5, video_ids=["video03"])
    assert results and all(r.video_id == "video03" for r, _ in results)


def test_delete_removes_a_video_and_its_frames_and_survives_reload(tmp_path):
    store = FrameStore(tmp_path)
    videos = clustered()
    fill(store, videos)
    store.commit()
    store.delete("video01")
    store.commit()
    reloaded = FrameStore(tmp_path)
    assert "video01" not in reloaded.videos and len(reloaded.videos) == 4
    assert reloaded.num_frames == 4 * 12
    for centre in videos[1][4]:
        assert all(r.video_id != "video01" for r, _ in reloaded.search(centre, top_k=5))


def test_indexing_a_range_again_replaces_only_that_range_and_joins_split_shots(tmp_path):
    store = FrameStore(tmp_path)
    record = VideoRecord(video_id="v", path="/m/v.mp4", content_hash="h", duration_s=10.0)
    vec = unit(np.eye(4)[:2])
    store.add(record, [ShotSpan(0, 5)], np.array([1.0, 3.0]), vec, "m", 0.0, 5.0)
    record2 = VideoRecord(video_id="v", path="/m/v.mp4", content_hash="h", duration_s=10.0)
    store.add(record2, [ShotSpan(5, 7, starts_at_cut=False), ShotSpan(7, 10)], np.array([6.0, 8.0]), vec, "m",
              5.0, 10.0)
    video = store.videos["v"]
    assert [(s.start_s, s.end_s) for s in video.shots] == [(0, 7), (7, 10)]  # 5.0 was a range edge, not a cut
    assert video.complete and video.ranges == [[0.0, 10.0]]
    again = VideoRecord(video_id="v", path="/m/v.mp4", content_hash="h", duration_s=10.0)
    store.add(again, [ShotSpan(5, 10, starts_at_cut=False)], np.array([9.0]), vec[:1], "m", 5.0, 10.0)
    times, _ = store.frames_of("v")
    assert times.tolist() == [1.0, 3.0, 9.0]


def test_mixing_models_or_dimensions_is_refused(tmp_path):
    store = FrameStore(tmp_path)
    record = VideoRecord(video_id="v", path="/m/v.mp4", content_hash="h", duration_s=2.0)
    store.add(record, [ShotSpan(0, 2)], np.array([1.0]), unit(np.ones((1, 4))), "model-a", 0, 2)
    other = VideoRecord(video_id="w", path="/m/w.mp4", content_hash="g", duration_s=2.0)
    with pytest.raises(ClipseekError, match="4-d embeddings"):
        store.add(other, [ShotSpan(0, 2)], np.array([1.0]), unit(np.ones((1, 8))), "model-b", 0, 2)
    with pytest.raises(ClipseekError, match="model-a"):
        store.add(other, [ShotSpan(0, 2)], np.array([1.0]), unit(np.ones((1, 4))), "model-b", 0, 2)


def test_a_crash_while_committing_leaves_the_last_commit_readable(tmp_path, monkeypatch):
    store = FrameStore(tmp_path)
    videos = clustered(n_videos=2)
    fill(store, videos[:1])
    store.commit()
    fill(store, videos[1:])

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    # Crash after the new snapshot's files are written but before CURRENT is switched.
    real_replace = os.replace
    monkeypatch.setattr(os, "replace",
                        lambda src, dst: crash() if str(dst).endswith("CURRENT") else real_replace(src, dst))
    with pytest.raises(OSError, match="simulated"):
        store.commit()
    monkeypatch.undo()
    reloaded = FrameStore(tmp_path)
    assert list(reloaded.videos) == ["video00"] and reloaded.num_frames == 12
    (record, clip), *_ = reloaded.search(videos[0][4][1], top_k=1)
    assert record.video_id == "video00" and (clip.start_s, clip.end_s) == (3.0, 6.0)


def test_a_torn_snapshot_folder_is_ignored_and_cleaned_up(tmp_path):
    store = FrameStore(tmp_path)
    fill(store, clustered(n_videos=1))
    store.commit()
    torn = tmp_path / "snap-999999.tmp"
    torn.mkdir()
    (torn / "index.bin").write_bytes(b"half written")
    reloaded = FrameStore(tmp_path)
    assert reloaded.num_frames == 12 and not torn.exists()


def test_the_index_grows_past_its_initial_capacity_and_reuses_deleted_slots(tmp_path):
    store = FrameStore(tmp_path)
    rng = np.random.default_rng(1)
    for i in range(3):
        vecs = unit(rng.normal(size=(700, 16)))
        record = VideoRecord(video_id=f"big{i}", path=f"/m/big{i}.mp4", content_hash=f"h{i}", duration_s=700.0)
        store.add(record, [ShotSpan(0, 700)], np.arange(700, dtype=float), vecs, "m", 0, 700)
    assert store.num_frames == 2100
    store.delete("big0")
    capacity = store._index.get_max_elements()
    vecs = unit(rng.normal(size=(700, 16)))
    record = VideoRecord(video_id="big3", path="/m/big3.mp4", content_hash="h3", duration_s=700.0)
    store.add(record, [ShotSpan(0, 700)], np.arange(700, dtype=float), vecs, "m", 0, 700)
    assert store._index.get_max_elements() == capacity and store.num_frames == 2100


def test_scores_match_exact_cosines_and_survive_reload_including_old_workspaces(tmp_path):
    """Search scores every frame of a hit shot from the store's float16 copy of the vectors (the
    candidates keep hnswlib's float32 score): both agree with exact cosines, after a reload too, and
    a workspace written before the copy existed (no vectors.npy) gets it from the index."""
    videos = clustered(n_videos=60)  # 720 frames: most are not among the 100 candidates
    store = FrameStore(tmp_path)
    fill(store, videos)
    store.commit()
    query = unit(np.random.default_rng(7).normal(size=(1, 32)))[0]
    frame_vec = {(v[0], float(t)): vec for v in videos for t, vec in zip(v[2], v[3], strict=True)}
    results = store.search(query, top_k=8)
    before = [(r.video_id, c.start_s, c.end_s, c.score) for r, c in results]
    assert len(before) == 8
    for record, clip in results:  # a clip's score is the exact cosine of its best frame
        assert abs(clip.score - float(frame_vec[(record.video_id, clip.best_time_s)] @ query)) < 1e-5
        inside = [float(vec @ query) for (vid, t), vec in frame_vec.items()
                  if vid == record.video_id and clip.start_s <= t < clip.end_s]
        assert clip.score == pytest.approx(max(inside), abs=2e-3)
    snap = tmp_path / (tmp_path / "CURRENT").read_text().strip()
    assert (snap / "vectors.npy").is_file()
    reloaded = [(r.video_id, c.start_s, c.end_s, c.score) for r, c in FrameStore(tmp_path).search(query, top_k=8)]
    assert reloaded == before
    (snap / "vectors.npy").unlink()
    migrated = FrameStore(tmp_path)
    assert [(r.video_id, c.start_s, c.end_s, c.score) for r, c in migrated.search(query, top_k=8)] == before
    migrated.commit()
    assert (tmp_path / (tmp_path / "CURRENT").read_text().strip() / "vectors.npy").is_file()


def at_cosine(cosines, dim=32, seed=0):
    """Unit vectors whose cosine to e0 (the query below) is each of ``cosines``."""
    rng = np.random.default_rng(seed)
    out = []
    for c in cosines:
        u = rng.normal(size=dim)
        u[0] = 0.0
        u /= np.linalg.norm(u)
        e0 = np.eye(dim)[0]
        out.append(c * e0 + np.sqrt(1 - c * c) * u)
    return np.asarray(out, dtype=np.float32)


@pytest.mark.parametrize("reload", ["same store", "reloaded", "workspace without vectors.npy",
                                    "vectors.npy by label"])
def test_a_clip_grows_over_frames_that_were_not_candidates(tmp_path, reload):
    """The best frame of a 30 s shot is the top hit; its other 30 frames score 0.975, below 100
    distractors (0.98), so none is among the 100 candidates. They still join the clip (within 0.03
    of 0.99), which needs their scores from the store's own copy of the vectors, also after a reload
    and after taking the copy from the index of an older workspace."""
    store = FrameStore(tmp_path)
    target = VideoRecord(video_id="target", path="/m/target.mp4", content_hash="t" * 64, duration_s=31.0)
    store.add(target, [ShotSpan(0.0, 31.0)], np.arange(31) + 0.5, at_cosine([0.99] + [0.975] * 30), "m", 0.0, 31.0)
    for v in range(10):
        record = VideoRecord(video_id=f"d{v}", path=f"/m/d{v}.mp4", content_hash=f"{v}" * 64, duration_s=100.0)
        shots = [ShotSpan(s * 10.0, s * 10.0 + 10.0) for s in range(10)]
        store.add(record, shots, np.arange(10) * 10.0 + 5.0, at_cosine([0.98] * 10, seed=v + 1), "m", 0.0, 100.0)
    store.commit()
    if reload != "same store":
        snap = tmp_path / (tmp_path / "CURRENT").read_text().strip()
        if reload == "workspace without vectors.npy":
            (snap / "vectors.npy").unlink()
        if reload == "vectors.npy by label":  # the layout before frames.npz had its label -> row map
            arrays = dict(np.load(snap / "frames.npz"))
            by_label = np.load(snap / "vectors.npy")[arrays.pop("row")]
            np.savez(snap / "frames.npz", **arrays)
            np.save(snap / "vectors.npy", by_label)
        store = FrameStore(tmp_path)
    (record, clip), *_ = store.search(np.eye(32, dtype=np.float32)[0], top_k=3)
    assert record.video_id == "target"
    assert clip.score == pytest.approx(0.99, abs=1e-5)
    assert (clip.start_s, clip.end_s) == (0.0, 31.0)


def test_re_indexing_and_deleting_do_not_grow_the_vector_copy(tmp_path):
    videos = clustered(n_videos=3)
    store = FrameStore(tmp_path)
    for _ in range(5):  # the same videos again and again: labels grow, live frames do not
        fill(store, videos)
        store.commit()
    store.delete(videos[0][0])
    store.commit()
    live = sum(len(v[2]) for v in videos[1:])
    assert store.num_frames == live
    snap = tmp_path / (tmp_path / "CURRENT").read_text().strip()
    assert np.load(snap / "vectors.npy").shape == (live, 32)
    reloaded = FrameStore(tmp_path)
    for video_id, spans, _, _, centres in videos[1:]:
        (record, clip), *_ = reloaded.search(centres[1], top_k=3)
        assert (record.video_id, clip.start_s, clip.end_s) == (video_id, spans[1].start_s, spans[1].end_s)
