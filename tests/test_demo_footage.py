"""The demo model on footage it was not trained on, end to end, in English and in Chinese.

tests/shape_footage.py draws the demo vocabulary with code of its own (other shapes' geometry, shades,
backgrounds, frame sizes and frame rate than the training renderer), with objects small and large, moving
across the frame and near its edges, and hard cuts between objects of the same colour or the same shape.
The real Flow indexes it with the demo model; every shot's caption is searched (English, then Chinese) and
the top result must be a shot of that concept with start and end within 0.25 s of the truth (as in
test_demo_search.py). Figures and the command that measured them are in docs/demo-model.md; the bars sit a
little below them and are never lowered to pass (issue 13's 95% is not reached yet: see ISSUE_TARGET).
``pytest tests/test_demo_footage.py -s`` prints them.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import shape_footage
from conftest import indexed_demo_engine
from shape_footage import make_library

from clipseek.api.client import ClipseekClient
from clipseek.api.demo_eval import breakdown, cut_recall, evaluate

TOLERANCE_S = 0.25
# Measured with the shipped checkpoint (docs/demo-model.md, steps 3-5): whole library English 65/68 = 0.956,
# Chinese 64/68 = 0.941; each search filtered to its own video 68/68 and 67/68. This library (seed 77) is on the
# lucky side: three more libraries of the same renderer (seeds 78-80, 230 shots) gave 90.9% / 88.7%, so issue
# 13's target, 0.95 for both languages, is not met (docs/demo-model.md). The bars below sit two shots under what
# the shipped model does here; raise them with a better one, never lower them to pass.
ISSUE_TARGET = 0.95
MIN_HIT_RATE = {"en": 0.92, "zh": 0.91}
MIN_WITHIN_VIDEO_HIT_RATE = {"en": 0.97, "zh": 0.95}


@pytest.fixture(scope="module")
def footage_flow(tmp_path_factory):
    videos = tmp_path_factory.mktemp("footage")
    truth = make_library(videos)
    with indexed_demo_engine(videos, tmp_path_factory.mktemp("footage-ws")) as flow:
        yield ClipseekClient(flow.http), videos / "truth.json", truth


def test_the_footage_plan_has_the_hard_cases_and_shows_the_whole_vocabulary():
    plans = shape_footage.plan_library(shape_footage.DEFAULT_VIDEOS, shape_footage.DEFAULT_SEED)
    shots = [shot for plan in plans for shot in plan.shots]
    assert len(shots) >= 60 and len({shot.concept for shot in shots}) >= 60
    assert {(plan.width_px, plan.height_px) for plan in plans} == {(640, 480), (640, 360)}
    assert all(shape_footage.FPS <= shot.frames <= 6 * shape_footage.FPS for shot in shots)
    kinds = Counter(shot.same_as_previous for shot in shots)
    assert kinds["colour"] >= 10 and kinds["shape"] >= 10
    assert Counter(shot.size_class for shot in shots)["small"] >= 10
    assert sum(shot.start != shot.end for shot in shots) >= len(shots) / 2
    for plan in plans:
        for before, after in zip(plan.shots, plan.shots[1:], strict=False):
            assert before.concept != after.concept
            if after.same_as_previous == "colour":
                assert before.concept.colour == after.concept.colour
            if after.same_as_previous == "shape":
                assert before.concept.shape == after.concept.shape


def test_footage_video_cuts_exactly_where_its_truth_says(tmp_path):
    plan = shape_footage.plan_library(1, seed=3)[0]
    plan.shots = [replace(shot, frames=min(shot.frames, 40)) for shot in plan.shots[:4]]  # a short one
    shape_footage.write_video(plan, tmp_path / plan.name)
    entry = shape_footage.truth_of(plan)
    argv = ["ffmpeg", "-v", "error", "-i", str(tmp_path / plan.name), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    raw = subprocess.run(argv, check=True, capture_output=True).stdout
    decoded = np.frombuffer(raw, dtype=np.uint8).reshape(-1, plan.height_px, plan.width_px, 3)
    assert len(decoded) == entry["frames"]
    drawn = [frame for shot in plan.shots for frame in shape_footage.shot_frames(shot, plan.width_px, plan.height_px)]
    errors = [np.abs(a.astype(np.int16) - b).mean() for a, b in zip(drawn, decoded, strict=True)]
    assert max(errors) < 6.0  # H.264 at CRF 23: each decoded frame is the frame drawn for it
    for shot in entry["shots"][1:]:  # ... so the picture changes exactly at each cut
        cut = round(shot["start_s"] * shape_footage.FPS)
        assert np.abs(decoded[cut].astype(np.int16) - decoded[cut - 1]).mean() > 3 * max(errors[cut - 1:cut + 1])


@pytest.mark.slow
def test_the_footage_is_indexed_with_its_shots(footage_flow):
    client, truth_path, truth = footage_flow
    indexed = {v.path.rsplit("/", 1)[-1]: v for v in client.videos()}
    assert len(indexed) == len(truth["videos"])
    shots = sum(len(v["shots"]) for v in truth["videos"])
    found = sum(indexed[v["file"]].num_shots for v in truth["videos"])
    print(f"\n{len(truth['videos'])} videos, {shots} shots in the truth, {found} shots found by the loader")
    cuts = cut_recall(client, truth_path)
    print(cuts)
    assert "missed cut" not in cuts  # seed 77: every cut within 0.1 s (seeds 78-80: 183/188, docs/demo-model.md)
    for video in truth["videos"]:
        assert indexed[video["file"]].duration_s == pytest.approx(video["duration_s"], abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "zh"])
def test_each_caption_finds_its_shot_in_footage_the_model_was_not_trained_on(footage_flow, language):
    client, truth_path, truth = footage_flow
    result = evaluate(client, truth_path, tolerance_s=TOLERANCE_S, language=language)
    within = evaluate(client, truth_path, tolerance_s=TOLERANCE_S, language=language, only_within_video=True)
    print(f"\ncaptions {language}, whole library: {result.report()}\n{breakdown(result, truth)}")
    print(f"captions {language}, each search filtered to its own video: {within.report()}")
    reached = "reached" if result.rate >= ISSUE_TARGET else "missed"
    print(f"issue 13's target {ISSUE_TARGET:.0%} on this one library: {reached} (over ten libraries of this "
          "renderer it is not met: docs/demo-model.md)")
    assert result.rate >= MIN_HIT_RATE[language], result.report()
    assert within.rate >= MIN_WITHIN_VIDEO_HIT_RATE[language], within.report()
