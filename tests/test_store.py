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
