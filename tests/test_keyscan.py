"""The keyframe-guided scan: the same shots as decoding every frame, from fewer decoded frames; the
fallbacks; and frames chosen the same whatever the time ranges."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from synth import Segment, make_video

from clipseek.api.client import plan_ranges
from clipseek.media.keyscan import GuidedReader, GuideSettings, packet_change_times, structure_ok
from clipseek.media.scan import scan_range
from clipseek.media.shots import FrameLooker, SamplingSettings
from clipseek.media.video import FrameReader, probe

FRAME_S = 0.04  # 25 fps
SEGMENTS = [
    Segment("0xFF0000", 2.0),
    Segment("0x008200", 1.0),  # same luma as the red before it: only hue changes
    Segment("white", 3.0, fade_out_s=0.5),
    Segment("black", 0.4),
    Segment("yellow", 2.0, fade_in_s=0.5),
    Segment("blue", 0.6),
    Segment("x", 4.0, source="testsrc2"),
    Segment("0x3050C0", 5.0),
    Segment("x", 3.0, source="smptebars"),
    Segment("0x30A050", 4.0),
]


def both(path: Path, size_px: int = 64, start_s: float = 0.0, end_s: float | None = None):
    info = probe(path)
    settings = SamplingSettings()
    return (scan_range(path, info, settings, size_px, start_s, end_s, use_guide=True),
            scan_range(path, info, settings, size_px, start_s, end_s, use_guide=False))


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory):
    """The cut video of test_video_and_shots with a keyframe every second and no scene-cut keyframes,
    so most cuts fall between keyframes."""
    path = tmp_path_factory.mktemp("k") / "gop.mp4"
    return path, make_video(path, SEGMENTS, extra=["-g", "25", "-sc_threshold", "0", "-bf", "2"])


def test_the_keyframe_scan_finds_every_cut_of_a_full_decode_to_the_frame_from_fewer_frames(gop_video):
    path, cuts = gop_video
    guided, full = both(path)
    assert guided.method == "keyframes" and full.method == "full"
    got = [s.start_s for s in guided.scan.shots]
    want = [s.start_s for s in full.scan.shots]
    assert len(got) == len(want), (got, want)
    assert np.allclose(got, want, atol=FRAME_S / 2), (got, want)
    for cut in (2.0, 3.0, 8.4, 9.0, 13.0, 18.0, 21.0):
        assert min(abs(s - cut) for s in got) <= FRAME_S + 1e-6, (cut, got)
    assert guided.frames_decoded < 0.8 * full.frames_decoded
    assert {f.shot_index for f in guided.scan.frames} == set(range(len(guided.scan.shots)))  # a frame a shot


@pytest.fixture(scope="module")
def scenecut_video(tmp_path_factory):
    """The same cuts encoded the way x264 encodes by default: a keyframe every 2 s and one at each
    scene cut it sees (``scenecut``), so most cuts are keyframes placed early."""
    path = tmp_path_factory.mktemp("k") / "scenecut.mp4"
    return path, make_video(path, SEGMENTS, extra=["-g", "50", "-bf", "3"])


def guided_stats(path: Path, **settings) -> tuple:
    info = probe(path)
    looker = FrameLooker(64, info.aspect, SamplingSettings().detect_px)
    reader = GuidedReader(path, info, 64, settings=GuideSettings(**settings), look=looker)
    times = [round(f.time_s, 3) for f in reader]
    return reader.stats, times


def test_an_encoders_scene_cut_keyframe_is_taken_as_the_cut_without_decoding_before_it(scenecut_video):
    path, cuts = scenecut_video
    guided, full = both(path)
    got = [s.start_s for s in guided.scan.shots]
    assert got == pytest.approx([s.start_s for s in full.scan.shots], abs=FRAME_S / 2)
    for cut in cuts:
        if cut not in (6.0, 6.4):  # the black between them is a fade: one boundary, in the dark run
            assert min(abs(s - cut) for s in got) <= FRAME_S + 1e-6, (cut, got)
    on, _ = guided_stats(path)
    off, _ = guided_stats(path, keyframe_cuts=False, stop_after_jump=False)
    assert on.keyframe_cuts >= 3, on  # stretches ending at an early keyframe, not decoded
    assert on.frames_decoded <= 0.85 * off.frames_decoded, (on, off)
    assert {f.shot_index for f in guided.scan.frames} == set(range(len(guided.scan.shots)))


def test_a_cut_is_found_where_every_keyframe_sits_on_a_cut(tmp_path):
    """Shots shorter than x264's keyframe interval: its only keyframes are its scene cuts, so each cut's
    keyframe pair is no further apart than its neighbours (cuts too). The second renderer's footage (seed
    78, footage_12): a small moving blue star, then a large still white star at 8.60 s; the keyframe scan
    once skipped that stretch and lost the cut that a full decode finds."""
    import shape_footage

    plan = shape_footage.plan_library(14, 78)[11]
    path = tmp_path / plan.name
    shape_footage.write_video(plan, path)
    cuts = [shot["start_s"] for shot in shape_footage.truth_of(plan)["shots"][1:]]
    assert any(abs(cut - 8.6) < 0.02 for cut in cuts)
    guided, full = both(path)
    assert guided.method == "keyframes" and full.method == "full"
    for result in (guided, full):
        starts = [s.start_s for s in result.scan.shots]
        assert all(any(abs(start - cut) <= 0.1 for start in starts) for cut in cuts), (result.method, starts, cuts)


def test_keyframes_at_irregular_times_inside_one_moving_shot_are_not_taken_as_cuts(tmp_path):
    """An encoder (or a muxer's forced keyframes) can put keyframes early for reasons other than a scene
    cut; inside one moving shot the keyframes then look alike enough (or change like their neighbours),
    and no cut is made up."""
    path = tmp_path / "irregular.mp4"
    make_video(path, [Segment("x", 12.0, source="testsrc2")],
               extra=["-g", "50", "-sc_threshold", "0", "-force_key_frames", "0,1.3,2,3.1,4,5.5,6,8.2,9,11"])
    guided, full = both(path)
    assert [s.start_s for s in guided.scan.shots] == [s.start_s for s in full.scan.shots] == [0.0]
    stats, _ = guided_stats(path)
    assert stats.keyframes >= 10  # the forced keyframes are there


TEXTURED = [Segment("x", 2.36, source="testsrc2"), Segment("x", 2.16, source="smptebars"),
            Segment("x", 2.72, source="testsrc"), Segment("x", 2.32, source="yuvtestsrc"),
            Segment("x", 3.0, source="testsrc2")]


def test_a_stretch_whose_cut_shows_in_the_packet_sizes_is_decoded_only_past_the_cut(tmp_path):
    """Cuts between keyframes (no scene-cut keyframes) from one busy picture to another: the packet sizes
    show each cut, and where the frame just past it looks like the next keyframe the rest of the stretch
    is not decoded; the shots stay those of the full decode, to the frame."""
    path = tmp_path / "textured.mp4"
    cuts = make_video(path, TEXTURED, extra=["-g", "25", "-sc_threshold", "0", "-bf", "2"])
    guided, full = both(path)
    got = [s.start_s for s in guided.scan.shots]
    assert got == pytest.approx([s.start_s for s in full.scan.shots], abs=FRAME_S / 2)
    assert got[1:] == pytest.approx(cuts, abs=FRAME_S / 2)
    on, _ = guided_stats(path)
    off, _ = guided_stats(path, stop_after_jump=False)
    assert on.keyframe_cuts == 0  # no early keyframes in this encoding
    assert on.stopped_after_jump >= 2, on
    assert on.frames_decoded <= 0.8 * off.frames_decoded, (on, off)


def test_packet_sizes_mark_a_frame_that_costs_like_a_keyframe_and_a_change_of_level():
    times = np.arange(12) * 0.04
    sizes = np.array([9000, 20, 25, 20, 22, 3000, 20, 24, 21, 20, 23, 20])
    keys = np.array([True] + [False] * 11)
    assert packet_change_times(times, sizes, keys) == [pytest.approx(0.2)]
    level = np.array([9000, 4000, 4200, 3900, 4100, 30, 25, 30, 28, 31, 26, 30])
    found = packet_change_times(times, level, keys)  # the drop, and the frames while it settles
    assert found[0] == pytest.approx(0.2) and max(found) < 0.2 + 4 * 0.04
    assert packet_change_times(times, np.array([9000] + [30] * 11), keys) == []


def test_an_intra_only_video_falls_back_to_decoding_every_frame(tmp_path):
    path = tmp_path / "intra.avi"
    make_video(path, SEGMENTS[:3], codec="mjpeg")
    info = probe(path)
    assert not structure_ok(path, info)
    result = scan_range(path, info, SamplingSettings(), 64, 0.0, None)
    assert result.method == "full"
    assert min(abs(s.start_s - 2.0) for s in result.scan.shots) <= FRAME_S + 1e-6


def test_a_video_with_one_keyframe_a_minute_is_decoded_in_full_and_gives_the_same_shots(tmp_path):
    path = tmp_path / "longgop.mp4"
    make_video(path, SEGMENTS, extra=["-g", "1500", "-sc_threshold", "0"])
    guided, full = both(path)
    assert guided.method == "keyframes"
    assert [round(s.start_s, 2) for s in guided.scan.shots] == [round(s.start_s, 2) for s in full.scan.shots]
    assert guided.frames_decoded >= full.frames_decoded  # nothing skipped


def test_guided_frames_have_the_real_pts_of_a_variable_frame_rate_video(tmp_path):
    path = tmp_path / "vfr.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=4",
                    "-vf", "setpts='if(lt(N,25),N/25,1+(N-25)/10)/TB'", "-fps_mode", "passthrough",
                    "-frames:v", "40", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    truth = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time",
                            "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    expected = [float(line.strip(",")) for line in truth.split()]
    info = probe(path)
    got = [f.time_s for f in GuidedReader(path, info, 32, look=FrameLooker(32, info.aspect, 112))]
    assert got and all(min(abs(g - e) for e in expected) < 1e-3 for g in got)


def test_guided_pixels_match_the_ffmpeg_command_line_also_for_a_rotated_video(tmp_path):
    plain = tmp_path / "plain.mp4"
    make_video(plain, [Segment("x", 1.0, source="testsrc2")], size="160x120")
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(plain), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)
    for path in (plain, rotated):
        info = probe(path)
        ours = next(iter(GuidedReader(path, info, 64, look=FrameLooker(64, info.aspect, 112)))).pixels
        theirs = next(iter(FrameReader(path, info, 64))).pixels
        # the command line rotates and then scales, PyAV scales and then rotates: a little resampling apart
        difference = np.abs(ours.astype(int) - theirs.astype(int)).mean()
        upside_down = np.abs(np.rot90(ours, 2).astype(int) - theirs.astype(int)).mean()
        assert difference < 10 and upside_down > 10 * difference, (path.name, difference, upside_down)


@pytest.mark.parametrize("chunk_s", [10.0, 7.0])
@pytest.mark.parametrize("video", ["gop_video", "scenecut_video"])
def test_the_frames_chosen_do_not_depend_on_how_the_video_is_split_into_ranges(video, chunk_s, request):
    path, _ = request.getfixturevalue(video)
    info = probe(path)

    def frame_times(chunk: float) -> list[float]:
        times = []
        for start_s, end_s in plan_ranges(info.duration_s, chunk):
            times += [round(f.time_s, 3) for f in
                      scan_range(path, info, SamplingSettings(), 64, start_s, end_s).scan.frames]
        return times

    assert frame_times(chunk_s) == frame_times(120.0)


def test_ranges_read_side_by_side_give_what_they_give_one_at_a_time(gop_video):
    """The loader serves the ranges in flight concurrently (flow.yml: allow_concurrent): ranges of one
    video read on threads through one MediaSource give the same shots, frame times and pixels as the
    same ranges read one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    from clipseek.media.source import MediaSource

    path, _ = gop_video
    info = probe(path)
    ranges = plan_ranges(info.duration_s, 7.0)
    assert len(ranges) >= 3

    def read(source: MediaSource, span: tuple[float, float | None]):
        scan = source.read_range(str(path), *span).result.scan
        return ([(round(s.start_s, 3), round(s.end_s, 3)) for s in scan.shots],
                [(round(f.time_s, 3), f.pixels.tobytes()) for f in scan.frames])

    alone = [read(MediaSource([str(path.parent)], SamplingSettings(), 64), span) for span in ranges]
    shared = MediaSource([str(path.parent)], SamplingSettings(), 64)
    with ThreadPoolExecutor(len(ranges) * 2) as pool:
        together = list(pool.map(lambda span: read(shared, span), ranges * 2))
    assert together == alone * 2
