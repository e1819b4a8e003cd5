"""Turning frame scores into clips: pure logic, no index."""

import pytest

from clipseek.index.clips import Clip, Margin, ScoredFrame, clamp, clips_in_shot, merge_touching, rank


def frames(*pairs, hits=None):
    return [ScoredFrame(t, s, True if hits is None else t in hits) for t, s in pairs]


def test_a_shot_whose_frames_all_match_is_one_clip_at_the_shot_boundaries():
    clips = clips_in_shot(2.0, 6.0, frames((2.5, 0.30), (4.0, 0.31), (5.5, 0.29)), Margin())
    assert clips == [Clip(2.0, 6.0, 0.31, 4.0)]


def test_a_long_shot_is_cut_half_way_to_the_neighbours_that_do_not_match():
    shot = frames((1, 0.10), (4, 0.12), (7, 0.35), (10, 0.34), (13, 0.11), hits={7, 10})
    clips = clips_in_shot(0.0, 15.0, shot, Margin())
    assert clips == [Clip(5.5, 11.5, 0.35, 7)]


def test_two_separate_matching_moments_in_one_shot_give_two_disjoint_clips():
    shot = frames((1, 0.40), (4, 0.10), (7, 0.38), hits={1, 7})
    clips = sorted(clips_in_shot(0.0, 9.0, shot, Margin()), key=lambda c: c.start_s)
    assert [(c.start_s, c.end_s) for c in clips] == [(0.0, 2.5), (5.5, 9.0)]


def test_frames_that_are_not_hits_never_start_a_clip():
    shot = frames((1, 0.40), (4, 0.10), hits=set())
    assert clips_in_shot(0.0, 5.0, shot, Margin()) == []
    assert clips_in_shot(0.0, 5.0, [], Margin()) == []


def test_touching_clips_with_close_scores_merge_and_others_do_not():
    a, b, c = Clip(0, 2, 0.30, 1), Clip(2, 3, 0.32, 2.5), Clip(3, 5, 0.10, 4)
    assert merge_touching([b, a, c], Margin()) == [Clip(0, 3, 0.32, 2.5), c]
    apart = Clip(3.5, 4, 0.31, 3.7)
    assert merge_touching([a, apart], Margin()) == [a, apart]
    # the bar across a cut is its own setting; 0 keeps every clip inside its shot
    assert merge_touching([b, a, c], Margin(cut=0.01)) == [a, b, c]
    assert merge_touching([b, a, c], Margin(cut=0.0)) == [a, b, c]
    assert merge_touching([b, a, c], Margin(absolute=0.0, cut=0.03)) == [Clip(0, 3, 0.32, 2.5), c]


def test_clips_are_clamped_into_the_video_and_ranked_best_first():
    assert clamp(Clip(-1, 12, 0.3, 11.5), 10.0) == Clip(0.0, 10.0, 0.3, 10.0)
    ranked = rank([("v2", Clip(0, 1, 0.2, 0.5)), ("v1", Clip(0, 1, 0.4, 0.5)), ("v1", Clip(2, 3, 0.2, 2.5))], 2)
    assert [(v, c.score, c.start_s) for v, c in ranked] == [("v1", 0.4, 0), ("v1", 0.2, 2)]


def test_the_margin_adapts_to_how_spread_the_scores_are():
    # A model whose matching frames score 0.90-0.96 and the rest about 0.5: the 0.91 frame belongs.
    shot = frames((1, 0.96), (4, 0.91), (7, 0.52), hits={1, 4})
    tight = clips_in_shot(0.0, 9.0, shot, Margin(0.03))
    adaptive = clips_in_shot(0.0, 9.0, shot, Margin(0.03, relative=0.5, background=0.5))
    assert [(c.start_s, c.end_s) for c in sorted(tight, key=lambda c: c.start_s)] == [(0.0, 2.5), (2.5, 5.5)]
    assert [(c.start_s, c.end_s) for c in adaptive] == [(0.0, 5.5)]
    assert Margin(0.03, 0.5, background=0.2).of(0.3) == pytest.approx(0.05)
    assert Margin(0.03, 0.5, background=None).of(0.9) == 0.03
