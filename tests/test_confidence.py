"""Confidence ("how much to trust this result"), "more like this" and the query's vector, in the index
layer: pure functions, the library on every backend (synthetic vectors), and the demo model's meaning
(a concept that is in no video is never more than "low"; the present ones are "high"). No Flow."""

from __future__ import annotations

import numpy as np
import pytest
from index_helpers import SynthVideo, library_of, unit, videos
from test_index_library import BACKENDS, backend_options

from clipseek.errors import QueryError
from clipseek.index import Library, RangeUpload, open_backend
from clipseek.index.confidence import (
    CALIBRATIONS,
    UNMEASURED,
    Thresholds,
    at_least,
    calibration_for,
    check_level,
    level,
    sample_rows,
    sample_spans,
    standing,
)
from clipseek.index.queries import combine_query, parse_like
from clipseek.types import Shot


@pytest.fixture(params=list(BACKENDS))
def make_library(request, tmp_path):
    """Libraries on every backend (as tests/test_index_library.py's), closed after the test."""
    opened: list[Library] = []

    def make() -> Library:
        options = backend_options(request.param, tmp_path)
        opened.append(Library(open_backend(options.pop("name"), tmp_path / "ws", **options)))
        return opened[-1]

    yield make
    for library in opened:
        library.close()


# -- pure -----------------------------------------------------------------------------------------
def test_standing_is_the_distance_above_the_sample_in_standard_deviations():
    sample = np.array([0.1, 0.2, 0.3, 0.4])
    z = standing(np.array([0.25, 0.25 + sample.std()]), sample)
    assert z == pytest.approx([0.0, 1.0])
    assert standing(np.array([0.9]), np.full(10, 0.5))[0] > 100  # no spread: a clear outlier, not a division by 0
    assert standing(np.array([0.9]), np.zeros(0))[0] == 0.0


def test_a_level_needs_both_the_confidence_and_the_cosine():
    t = Thresholds(high_z=3, medium_z=2, high_cosine=0.9, medium_cosine=0.8)
    assert level(0.95, 3.5, t) == "high"
    assert level(0.85, 3.5, t) == "medium"  # stands out, but the cosine says only a part matches
    assert level(0.95, 2.5, t) == "medium"
    assert level(0.95, 1.0, t) == "low"
    assert level(float("nan"), 5.0, t) == "low"


def test_levels_are_checked_and_ordered():
    assert check_level("") == check_level(None) == check_level("any") == "low"
    assert check_level(" High ") == "high"
    with pytest.raises(ValueError, match="min_confidence must be one of low, medium, high, got 'sure'"):
        check_level("sure")
    assert at_least("high", "medium") and at_least("low", "low") and not at_least("medium", "high")


def test_the_sample_is_evenly_spread_and_bounded():
    assert list(sample_rows(5, 10)) == [0, 1, 2, 3, 4]
    rows = sample_rows(10_000, 100)
    assert len(rows) == 100 and rows[0] == 0 and rows[-1] == 9_999
    spans = sample_spans({f"v{i:03d}": 10.0 for i in range(1000)}, videos=50)
    assert len(spans) == 50 and spans[0] == ("v000", 0.0, 11.0) and spans[-1][0] == "v999"


def test_models_without_measured_thresholds_use_the_confidence_only():
    assert calibration_for("some-other-model") is UNMEASURED and not UNMEASURED.measured
    assert calibration_for("clipseek-demo") is CALIBRATIONS["clipseek-demo"]
    assert UNMEASURED.for_kind("image").high_cosine == -1.0


def test_text_and_image_vectors_combine_by_the_image_weight():
    t, i = unit([1.0, 0.0]), unit([0.0, 1.0])
    assert combine_query(t, None) == (pytest.approx(t), "text")
    assert combine_query(None, i)[1] == "image"
    both, kind = combine_query(t, i, 0.75)
    assert kind == "image" and both == pytest.approx(unit([0.25, 0.75]))
    with pytest.raises(QueryError, match="image_weight must be a number from 0 to 1, got 2"):
        combine_query(t, i, 2)
    with pytest.raises(QueryError, match="no embedding"):
        combine_query(None, None)
    with pytest.raises(QueryError, match="2 dimensions, the image query 3"):
        combine_query(t, unit([1.0, 1.0, 1.0]), 0.5)


def test_more_like_this_specs_are_parsed_or_refused_by_name():
    assert parse_like("abc123@12.5") == ("abc123", 12.5)
    assert parse_like("/media/a@b.mp4@3") == ("/media/a@b.mp4", 3.0)
    for bad in ("abc123", "@3", "abc@soon", "abc@-1", "abc@nan"):
        with pytest.raises(QueryError, match="VIDEO@SECONDS|0 s or more"):
            parse_like(bad)


# -- the library, every backend -------------------------------------------------------------------
def test_a_present_shot_is_high_and_a_vector_like_nothing_in_the_library_is_low(make_library):
    library = make_library()
    synth = videos(6)
    library_of(synth, library)
    for video in synth[:3]:
        best = library.search(video.centres[1], top_k=3)[0]
        assert best.record.video_id == video.video_id and best.level == "high", best
        assert best.confidence >= 3.0
    absent = unit(np.random.default_rng(99).normal(size=32))
    found = library.search(absent, top_k=5)  # "test-model" has no measured thresholds: the confidence decides
    assert found and all(h.level != "high" for h in found), [(h.clip.score, h.confidence) for h in found]
    assert library.search(absent, top_k=5, min_confidence="high") == []
    assert len(library.search(synth[0].centres[0], top_k=5, min_confidence="high")) >= 1
    with pytest.raises(QueryError, match="min_confidence must be one of"):
        library.search(absent, top_k=5, min_confidence="certain")


def test_confidence_does_not_grow_with_the_library(make_library):
    """The same mix of content, six times over: a maximum would grow by chance, the confidence does not."""
    small = make_library()
    synth = videos(4)
    library_of(synth, small)
    query = synth[0].centres[2]
    before = small.search(query, top_k=1)[0].confidence
    library_of([SynthVideo(f"copy{c}-{i}", seed=i) for c in range(5) for i in range(4)], small)  # 6x, same mix
    after = small.search(query, top_k=1)[0].confidence
    assert after == pytest.approx(before, rel=0.1), (before, after)


def test_more_like_this_uses_the_stored_frame_and_finds_its_clip_first(make_library):
    library = make_library()
    synth = videos(5)
    library_of(synth, library)
    for video in synth[:3]:
        for shot in (0, 2):
            t = float(video.times[3 * shot + 1])
            record, time_s, vector = library.frame_vector(video.video_id, t + 0.2)
            assert record.video_id == video.video_id and time_s == pytest.approx(t)
            stored = video.vectors[3 * shot + 1]
            assert float(vector @ stored) == pytest.approx(1.0, abs=1e-3)  # the stored vector, not re-encoded
            best = library.search(vector, top_k=3, query_kind="image")[0]
            assert best.record.video_id == video.video_id and best.clip.start_s <= t < best.clip.end_s
    with pytest.raises(QueryError, match="no indexed video matches 'nothing'"):
        library.frame_vector("nothing", 1.0)
    with pytest.raises(QueryError, match=">= 0"):
        library.frame_vector(synth[0].video_id, -2.0)


# -- the demo model's meaning ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_embeddings():
    """Frames of half the demo concepts (3 scenes each) and the text vectors of every concept."""
    from clipseek.demo import vocab
    from clipseek.media.imaging import letterbox
    from clipseek.model.clip import load_clip

    image, text = load_clip("demo", None, towers="image"), load_clip("demo", None, towers="text")
    rng = np.random.default_rng(2024)
    present = [c for i, c in enumerate(vocab.CONCEPTS) if i % 2 == 0]
    pictures = [letterbox(vocab.render_scene(vocab.random_scene(rng, c.shape, c.colour), 320, 240), image.image_size)
                for c in present for _ in range(3)]
    frames = image.encode_frames(np.stack(pictures))
    texts = text.encode_texts([c.caption for c in vocab.CONCEPTS])
    return image.spec.name, present, frames, dict(zip(vocab.CONCEPTS, texts, strict=True))


def test_with_the_demo_model_absent_concepts_are_low_and_present_ones_high(make_library, demo_embeddings):
    model, present, frames, texts = demo_embeddings
    library = make_library()
    for v in range(len(present)):  # one video per concept: one 3 s shot, a frame a second
        library.index_range(RangeUpload(
            video_id=f"demo{v:03d}", content_hash=f"{v:064d}", path=f"/media/demo{v:03d}.mp4", duration_s=3.0,
            start_s=0.0, end_s=3.0, shots=[Shot(0.0, 3.0)], times_s=np.array([0.5, 1.5, 2.5]),
            vectors=frames[3 * v:3 * v + 3], model=model))
    for concept, vector in texts.items():
        hits = library.search(vector, top_k=5, model=model)
        if concept in present:
            assert hits[0].record.video_id == f"demo{present.index(concept):03d}", concept
            assert hits[0].level == "high", (concept, hits[0].clip.score, hits[0].confidence)
        else:
            assert all(h.level == "low" for h in hits), (concept, [(h.clip.score, h.confidence) for h in hits])
            assert library.search(vector, top_k=5, model=model, min_confidence="medium") == []
