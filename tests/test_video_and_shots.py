"""Decoding and shot detection on synthetic videos whose cut times are known exactly."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from synth import Segment, make_video

from clipseek.errors import VideoOpenError
from clipseek.media.shots import SamplingSettings, content_box, scan_frames
from clipseek.media.video import FrameReader, content_hash, grab_jpeg, probe

FRAME_S = 0.04  # 25 fps


def scan(path: Path, size_px: int = 64, start_s: float = 0.0, end_s: float | None = None, **settings):
    info = probe(path)
    end = end_s if end_s is not None else info.duration_s
    return scan_frames(FrameReader(path, info, size_px, start_s, end_s), SamplingSettings(**settings), info.fps,
                       size_px, info.aspect, start_s, end)


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "cuts.mp4"
    segments = [
        Segment("0xFF0000", 2.0),
        Segment("0x008200", 1.0),  # same luma as the red before it: only hue changes
        Segment("white", 3.0, fade_out_s=0.5),
        Segment("black", 0.4),
        Segment("yellow", 2.0, fade_in_s=0.5),
        Segment("blue", 0.6),
        Segment("x", 7.0, source="testsrc2"),
    ]
    return path, make_video(path, segments)


def test_hard_cuts_including_one_of_equal_brightness_are_found_to_the_frame(cut_video):
    path, cuts = cut_video
    result = scan(path)
    starts = [s.start_s for s in result.shots]
    for cut in (2.0, 3.0, 8.4, 9.0):
        assert min(abs(s - cut) for s in starts) <= FRAME_S + 1e-6, (cut, starts)


def test_a_fade_through_black_gives_one_boundary_in_the_middle_of_the_black(cut_video):
    path, _ = cut_video
    starts = [s.start_s for s in scan(path).shots]
    fade = [s for s in starts if 5.5 < s < 6.9]
    assert len(fade) == 1, starts
    assert abs(fade[0] - 6.2) <= 0.12  # black runs 6.0-6.4 (plus the darkest fade frames)
    assert len(starts) == 6


def test_shots_tile_the_video_and_every_shot_has_a_sampled_frame(cut_video):
    path, _ = cut_video
    result = scan(path)
    info = probe(path)
    assert result.shots[0].start_s == 0.0 and result.shots[-1].end_s == pytest.approx(info.duration_s)
    for before, after in zip(result.shots, result.shots[1:], strict=False):
        assert before.end_s == after.start_s
    assert {f.shot_index for f in result.frames} == set(range(len(result.shots)))  # a frame in every shot
    for frame in result.frames:
        shot = result.shots[frame.shot_index]
        assert shot.start_s <= frame.time_s < shot.end_s
        assert frame.pixels.shape == (64, 64, 3) and frame.pixels.dtype == np.uint8


def test_no_sampled_frame_is_black_and_short_shots_get_their_middle_frame(cut_video):
    path, _ = cut_video
    result = scan(path)
    y0, y1, x0, x1 = content_box(64, 4 / 3)
    for frame in result.frames:
        assert frame.pixels[y0:y1, x0:x1].mean() > 16
    blue = [f for f in result.frames if 8.4 <= f.time_s < 9.0]  # a 0.6 s shot: sampled 0.5 s in
    assert len(blue) == 1 and 8.86 <= blue[0].time_s < 9.0
    later = scan(path, first_offset_s=1.0)  # now the shot is shorter than the offset: its middle frame
    blue = [f for f in later.frames if 8.4 <= f.time_s < 9.0]
    assert len(blue) == 1 and 8.6 <= blue[0].time_s <= 8.8


def test_sampling_respects_the_longest_gap_and_the_cap_per_second(cut_video):
    path, _ = cut_video
    result = scan(path, max_gap_s=1.0, max_fps=2.0, drift_threshold=0.0)
    times = [f.time_s for f in result.frames]
    starts = {round(s.start_s, 2) for s in result.shots}
    for a, b in zip(times, times[1:], strict=False):
        # at most 2 a second, but a piece (a shot, or a new max_gap_s step of a long shot) starts afresh
        new_piece = abs(b - round(b)) < 1e-6 or any(a < start <= b for start in starts)
        assert b - a >= 0.5 - 1e-6 or new_piece, (a, b)
    for shot in result.shots:
        inside = [t for t in times if shot.start_s <= t < shot.end_s]
        edges = [shot.start_s, *inside, shot.end_s]
        assert max(b - a for a, b in zip(edges, edges[1:], strict=False)) <= 1.0 + 0.5 + FRAME_S


def test_a_time_range_is_decoded_alone_and_starts_with_a_shot_that_is_not_a_cut(cut_video):
    path, _ = cut_video
    result = scan(path, start_s=4.0, end_s=9.0)
    assert result.shots[0].start_s == 4.0 and not result.shots[0].starts_at_cut
    assert result.shots[-1].end_s == 9.0
    assert all(4.0 <= f.time_s < 9.0 for f in result.frames)
    assert result.num_decoded == pytest.approx(5.0 / FRAME_S, abs=1)


def test_frame_times_are_the_real_pts_of_a_variable_frame_rate_video(tmp_path):
    path = tmp_path / "vfr.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=4",
                    "-vf", "setpts='if(lt(N,25),N/25,1+(N-25)/10)/TB'", "-fps_mode", "passthrough",
                    "-frames:v", "40", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    truth = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time",
                            "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    expected = [float(line.strip(",")) for line in truth.split()]
    got = [f.time_s for f in FrameReader(path, probe(path), 32)]
    assert len(got) == len(expected) == 40
    assert np.allclose(got, expected, atol=1e-3)
    assert got[30] - got[29] > 0.05  # the slow part really is slower


def test_rotated_video_is_decoded_upright(tmp_path):
    plain = tmp_path / "plain.mp4"
    make_video(plain, [Segment("red", 1.0)], size="160x120")
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(plain), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)
    info = probe(rotated)
    assert (info.width_px, info.height_px, info.rotation_deg) == (120, 160, 90)
    frame = next(iter(FrameReader(rotated, info, 64))).pixels
    assert frame[:, 0].max() == 0 and frame[32, 32, 0] > 200  # pillarboxed portrait picture, red


def test_memory_of_sampling_does_not_depend_on_video_length(tmp_path):
    # The sampler holds only the frames of first_offset_s and the detector's look-ahead; decode a long
    # single-shot video and check the sampled output is all that grows (bounded by max_gap_s).
    path = tmp_path / "long.mp4"
    make_video(path, [Segment("x", 60.0, source="testsrc2")], size="64x48", fps=10)
    result = scan(path, max_gap_s=5.0, max_fps=0.2)
    assert len(result.shots) <= 4  # testsrc2 has a few abrupt colour changes of its own
    assert 60 / 5.0 - 1 <= len(result.frames) <= 60 * 0.2 + len(result.shots)


def test_probe_errors_name_the_file_and_the_reason(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoOpenError, match="empty.mp4: file is empty"):
        probe(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(VideoOpenError, match="junk.mp4: not a readable video file"):
        probe(junk)
    with pytest.raises(VideoOpenError, match="is a folder"):
        probe(tmp_path)


def test_thumbnail_and_hash(cut_video):
    path, _ = cut_video
    jpeg = grab_jpeg(path, probe(path), 1.0, 96)
    assert jpeg[:2] == b"\xff\xd8"
    assert content_hash(path) == content_hash(path) and len(content_hash(path)) == 64


def test_the_reader_decodes_ahead_and_a_reader_stopped_early_leaves_nothing_running(cut_video):
    import threading
    import time

    path, _ = cut_video
    info = probe(path)
    everything = list(FrameReader(path, info, 32, prefetch_frames=1))
    assert [f.index for f in everything] == list(range(len(everything))) and len(everything) == 400  # 16 s at 25 fps
    assert np.allclose([f.time_s for f in everything], np.arange(400) * FRAME_S, atol=1e-6)
    before = threading.active_count()
    reader = FrameReader(path, info, 32, prefetch_frames=8)
    frames = iter(reader)
    first = [next(frames) for _ in range(3)]
    time.sleep(0.5)  # the reader thread fills its queue of 8 meanwhile and waits
    frames.close()
    assert [f.index for f in first] == [0, 1, 2]
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(first, everything, strict=False))
    assert threading.active_count() == before
    children = subprocess.run(["pgrep", "-P", str(os.getpid()), "ffmpeg"], capture_output=True, text=True)
    assert children.stdout.strip() == ""


def test_detection_size_is_validated_and_a_small_detection_size_finds_the_same_cuts(cut_video):
    with pytest.raises(ValueError, match="detect_px must be at least 16, got 0"):
        SamplingSettings(detect_px=0)
    path, _ = cut_video
    small = scan(path, size_px=224, detect_px=32)
    full = scan(path, size_px=224, detect_px=224)
    assert [round(s.start_s, 2) for s in small.shots] == [round(s.start_s, 2) for s in full.shots]
