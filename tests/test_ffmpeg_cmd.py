"""argv building and ffprobe/showinfo parsing, without running ffmpeg."""

from clipseek.media.ffmpeg_cmd import (
    VideoInfo,
    clip_argv,
    decode_argv,
    file_url,
    parse_probe,
    parse_showinfo,
    pick_video_stream,
    probe_argv,
    thumbnail_argv,
)

INFO = VideoInfo(stream_index=2, width_px=320, height_px=240, fps=25.0, duration_s=10.0, start_time_s=0.0,
                 rotation_deg=0, codec="h264", num_frames=250)


def test_file_names_are_passed_as_file_urls_so_odd_names_are_not_options_or_protocols():
    argv = probe_argv("/media/-i http:evil.mp4")
    assert argv[-1] == "file:/media/-i http:evil.mp4"
    assert file_url("/a/b.mp4") == "file:/a/b.mp4"


def test_decode_argv_maps_the_chosen_stream_letterboxes_and_keeps_real_timestamps():
    argv = decode_argv("/v/a.mp4", INFO, 224, start_s=5.0, end_s=8.0)
    joined = " ".join(argv)
    assert argv[0] == "ffmpeg" and "-nostdin" in argv
    assert argv[argv.index("-ss") + 1] == "5.000000" and argv.index("-ss") < argv.index("-i")
    assert argv[argv.index("-t") + 1] == "3.000000"
    assert "[0:2]scale=224:224" in joined and "force_original_aspect_ratio=decrease" in joined
    assert "pad=224:224:(ow-iw)/2:(oh-ih)/2" in joined and "showinfo" in joined
    assert argv[argv.index("-fps_mode") + 1] == "passthrough" and "-copyts" in argv
    assert argv[argv.index("-f") + 1] == "rawvideo" and argv[-1] == "pipe:"
    assert "flags=area" in joined


def test_decode_argv_without_range_reads_the_whole_video():
    argv = decode_argv("/v/a.mp4", INFO, 64)
    assert "-ss" not in argv and "-t" not in argv


def test_thumbnail_and_clip_argv():
    thumb = thumbnail_argv("/v/a.mp4", INFO, 3.25, 320)
    assert thumb[thumb.index("-ss") + 1] == "3.250000" and "mjpeg" in thumb and thumb[-1] == "pipe:"
    clip = clip_argv("/v/a.mp4", INFO, 1.5, 4.0, "/tmp/out clip.mp4")
    assert clip[clip.index("-ss") + 1] == "1.500000" and clip[clip.index("-t") + 1] == "2.500000"
    assert "libx264" in clip and "copy" not in clip  # re-encoded: frame-accurate, not keyframe-snapped
    assert clip[-1] == "file:/tmp/out clip.mp4"


def test_showinfo_lines_give_frame_number_and_pts_time():
    line = ("[Parsed_showinfo_4 @ 0x55d] n:  12 pts:  12288 pts_time:0.48    duration:512 "
            "duration_time:0.02 fmt:rgb24 sar:1/1 s:64x64")
    assert parse_showinfo(line) == (12, 0.48)
    assert parse_showinfo("[Parsed_showinfo_4 @ 0x55d] config in time_base: 1/25600") is None


def _stream(index, codec_type="video", width=640, height=360, **extra):
    return {"index": index, "codec_type": codec_type, "codec_name": "h264", "width": width, "height": height,
            "avg_frame_rate": "30000/1001", **extra}


def test_the_video_stream_is_found_even_when_it_is_not_stream_0_and_cover_art_is_skipped():
    streams = [
        {"index": 0, "codec_type": "audio"},
        _stream(1, width=300, height=300, disposition={"attached_pic": 1}),
        _stream(2, width=1280, height=720),
    ]
    assert pick_video_stream(streams)["index"] == 2
    info = parse_probe({"streams": streams, "format": {"duration": "12.5", "start_time": "1.4"}})
    assert info.stream_index == 2 and info.duration_s == 12.5 and info.start_time_s == 1.4
    assert abs(info.fps - 29.97) < 0.01


def test_rotation_swaps_the_display_size():
    side = _stream(0, width=1920, height=1080, side_data_list=[{"rotation": -90}])
    info = parse_probe({"streams": [side], "format": {"duration": "3"}})
    assert (info.width_px, info.height_px, info.rotation_deg) == (1080, 1920, 270)
    tagged = _stream(0, width=1920, height=1080, tags={"rotate": "90"})
    assert parse_probe({"streams": [tagged], "format": {}}).width_px == 1080


def test_audio_only_has_no_video_info_and_missing_numbers_default_to_zero():
    assert parse_probe({"streams": [{"index": 0, "codec_type": "audio"}], "format": {}}) is None
    info = parse_probe({"streams": [_stream(0, avg_frame_rate="0/0", r_frame_rate="25/1")],
                        "format": {"duration": "N/A"}})
    assert info.fps == 25.0 and info.duration_s == 0.0
