"""Choosing hardware decode from what ffmpeg and the CUDA driver offer, and falling back to software."""

import subprocess
import sys

import pytest

from clipseek.media.hardware import (
    DecodeChoice,
    DecodePath,
    choose_decode,
    cuda_device_count,
    detect_decode,
    ffmpeg_hwaccels,
    looks_like_hw_failure,
    parse_hwaccels,
)

HWACCELS_OUTPUT = "Hardware acceleration methods:\nvdpau\ncuda\nvaapi\nqsv\ndrm\nopencl\nvulkan\n\n"
# What ffmpeg 5.1 printed here for `-hwaccel cuda` on a machine without an NVIDIA driver.
NO_DRIVER_STDERR = """[AVHWDeviceContext @ 0x5566c8ac1380] Cannot load libcuda.so.1
[AVHWDeviceContext @ 0x5566c8ac1380] Could not dynamically load CUDA
Device creation failed: -1.
[h264 @ 0x5566c8adfe80] No device available for decoder: device type cuda needed for codec h264.
Device setup failed for decoder on input stream #0:0 : Operation not permitted"""


def test_the_hwaccels_ffmpeg_lists_are_parsed():
    assert parse_hwaccels(HWACCELS_OUTPUT) == ["vdpau", "cuda", "vaapi", "qsv", "drm", "opencl", "vulkan"]
    assert parse_hwaccels("Hardware acceleration methods:\n") == [] and parse_hwaccels("") == []


@pytest.mark.parametrize("requested, hwaccels, devices, expected", [
    ("auto", ["vaapi", "cuda"], 1, "cuda"),
    ("auto", ["vaapi", "cuda"], 0, None),  # ffmpeg could, but there is no GPU
    ("auto", ["vaapi"], 2, None),  # a GPU, but this ffmpeg was built without cuda
    ("none", ["cuda"], 4, None),
    ("cuda", ["cuda"], 0, "cuda"),  # asked for explicitly: tried, and the fallback catches a failure
    (" AUTO ", ["cuda"], 1, "cuda"),
])
def test_cuda_decode_is_chosen_only_when_ffmpeg_and_a_device_both_offer_it(requested, hwaccels, devices, expected):
    choice = choose_decode(requested, hwaccels, devices)
    assert choice.hwaccel == expected and choice.reason
    assert choice.input_args == (["-hwaccel", "cuda"] if expected else [])


def test_impossible_decode_settings_are_refused_with_the_bad_value():
    with pytest.raises(ValueError, match="must be one of auto, cuda, none, got 'nvdec'"):
        choose_decode("nvdec", ["cuda"], 1)
    with pytest.raises(ValueError, match="offers only: vaapi, qsv"):
        choose_decode("cuda", ["vaapi", "qsv"], 1)


def test_a_failed_hardware_decode_switches_the_process_to_software(caplog):
    path = DecodePath(DecodeChoice("cuda", "test"))
    assert path.input_args == ["-hwaccel", "cuda"]
    assert not path.note_failure("moov atom not found\nInvalid data found when processing input")  # not ours
    assert path.hwaccel == "cuda"
    assert looks_like_hw_failure(NO_DRIVER_STDERR) and path.note_failure(NO_DRIVER_STDERR)
    assert path.hwaccel is None and path.input_args == [] and "libcuda" in path.failure
    assert not path.note_failure(NO_DRIVER_STDERR)  # already software: nothing more to fall back to
    assert "decoding in software from now on" in caplog.text


def test_a_real_decode_succeeds_with_cuda_asked_for_on_any_machine(tmp_path):
    """With a GPU the first attempt decodes; without one ffmpeg refuses and the retry decodes."""
    video = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:d=1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)], check=True)
    path = DecodePath(DecodeChoice("cuda", "test"))
    for _attempt in range(2):
        done = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", *path.input_args, "-i", str(video),
                               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"], capture_output=True)
        if done.returncode == 0 or not path.note_failure(done.stderr.decode(errors="replace")):
            break
    assert done.returncode == 0 and len(done.stdout) == 10 * 64 * 64 * 3
    assert (path.hwaccel is None) == (cuda_device_count() == 0)


def test_detection_on_this_machine_agrees_with_ffmpeg_and_the_driver():
    hwaccels = ffmpeg_hwaccels()
    assert all(name.isidentifier() and name == name.lower() for name in hwaccels)
    assert detect_decode("auto") == choose_decode("auto", hwaccels, cuda_device_count())
    assert detect_decode("none").hwaccel is None


def run_gpu_bench(*args: str) -> str:
    from conftest import REPO

    done = subprocess.run([sys.executable, "bench/gpu.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(cuda_device_count() > 0, reason="a GPU is here: bench/gpu.py measures instead of skipping")
def test_the_gpu_benchmark_says_why_it_measures_nothing_without_cuda():
    assert "GPU section skipped: no CUDA device" in run_gpu_bench()


@pytest.mark.slow
def test_the_gpu_benchmark_code_runs_end_to_end_on_the_cpu(tmp_path):
    from conftest import TINY_MODEL

    out = run_gpu_bench("--dry-run-cpu", "--quick", "--video", "1min-1080p", "--model", TINY_MODEL,
                        "--frames", "32", "--batch", "16")
    assert "not GPU figures" in out and "of the decode limit" in out and "of the compute limit" in out
    assert "the loader's scan (guided" in out and "the loader's scan (full-sw" in out
    assert "shots of guided against full-sw: the same" in out
    assert "end to end in one process" in out and "end to end through the Flow" in out


def test_the_decode_argv_asks_for_the_hwaccel_before_the_input():
    from clipseek.media.ffmpeg_cmd import VideoInfo, decode_argv

    info = VideoInfo(0, 1280, 720, 30.0, 600.0, 0.0, 0, "h264", 18000)
    software = decode_argv("/v/a.mp4", info, 224, 10.0, 20.0)
    hardware = decode_argv("/v/a.mp4", info, 224, 10.0, 20.0, hwaccel="cuda")
    assert "-hwaccel" not in software
    at = hardware.index("-hwaccel")
    assert hardware[at + 1] == "cuda" and at < hardware.index("-i")
    # the rest (seek, filters, pipe) is the software argv's
    assert hardware[:at] + hardware[at + 2:] == software


def cut_video(tmp_path):
    from synth import Segment, make_video

    path = tmp_path / "cuts.mp4"
    cuts = make_video(path, [Segment("red", 1.6), Segment("x", 1.4, source="testsrc2"), Segment("0x2050C0", 1.2)])
    return path, cuts


needs_ffmpeg_cuda = pytest.mark.skipif("cuda" not in ffmpeg_hwaccels(),
                                       reason="this ffmpeg has no cuda hwaccel: it refuses -hwaccel cuda outright")


@needs_ffmpeg_cuda
def test_the_loaders_full_decoder_uses_the_hwaccel_and_falls_back_to_software(tmp_path, caplog):
    """Asked for cuda: where the device works the range decodes on it; where it cannot be opened (this
    machine: no driver) ffmpeg stops before its first frame, the range is decoded again in software and
    the process stays on software. Either way the shots and the sampled frames are the software decoder's."""
    from clipseek.media.scan import scan_range
    from clipseek.media.shots import SamplingSettings
    from clipseek.media.video import probe

    path, cuts = cut_video(tmp_path)
    info = probe(path)
    software = scan_range(path, info, SamplingSettings(), 64, 0.0, None, use_guide=False)
    decode = DecodePath(DecodeChoice("cuda", "test"))
    hardware = scan_range(path, info, SamplingSettings(), 64, 0.0, None, use_guide=False, decode=decode)
    assert software.method == "full" and software.scan.num_decoded == 105
    assert [round(s.start_s, 3) for s in software.scan.shots] == [0.0, *cuts]
    assert [s.start_s for s in hardware.scan.shots] == [s.start_s for s in software.scan.shots]
    assert [f.time_s for f in hardware.scan.frames] == [f.time_s for f in software.scan.frames]
    assert hardware.scan.num_decoded == software.scan.num_decoded
    if decode.hwaccel is None:  # the device failed: recorded once, and the next range goes straight to software
        assert hardware.method == "full" and decode.failure
        assert "decoding in software from now on" in caplog.text
        again = scan_range(path, info, SamplingSettings(), 64, 0.0, None, use_guide=False, decode=decode)
        assert again.method == "full"
    else:
        assert hardware.method == "full (cuda)"
    if cuda_device_count() == 0:
        assert decode.hwaccel is None  # no device here: the fallback above is what was tested


@needs_ffmpeg_cuda
def test_ranges_that_fail_on_the_device_side_by_side_all_decode_in_software(tmp_path):
    """The loader decodes ranges in flight on threads that share the process's decode path: when the
    device fails, every one of them retries in software (not only the first to report it)."""
    from concurrent.futures import ThreadPoolExecutor

    from clipseek.media.video import FrameReader, probe

    path, _cuts = cut_video(tmp_path)
    info = probe(path)
    expected = [f.time_s for f in FrameReader(path, info, 32)]
    decode = DecodePath(DecodeChoice("cuda", "test"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda _: [f.time_s for f in FrameReader(path, info, 32, decode=decode)], range(4)))
    assert runs == [expected] * 4


def test_a_hardware_decoder_that_breaks_down_mid_range_loses_no_frame(tmp_path, caplog):
    """ffmpeg fails with a CUDA error after some frames: the range is decoded again in software from
    its start, the frames already handed on are skipped, and none is missing or handed on twice."""
    from clipseek.media.video import FrameReader, probe

    path, _cuts = cut_video(tmp_path)
    info = probe(path)
    fake = tmp_path / "ffmpeg-breaks"
    fake.write_text(
        "#!/usr/bin/env python3\n"
        "import subprocess, sys\n"
        "argv = sys.argv[1:]\n"
        "if '-hwaccel' not in argv:\n"
        "    sys.exit(subprocess.call(['ffmpeg', *argv]))\n"
        "at = argv.index('-hwaccel')\n"
        "argv = argv[:at] + argv[at + 2:]\n"
        "argv = argv[:-1] + ['-frames:v', '30', argv[-1]]  # the output (pipe:) is last\n"
        "subprocess.call(['ffmpeg', *argv])\n"
        "sys.stderr.write('[h264 @ 0x1] CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure\\n')\n"
        "sys.exit(1)\n")
    fake.chmod(0o755)
    expected = [(f.index, f.time_s, f.pixels.tobytes()) for f in FrameReader(path, info, 32)]
    decode = DecodePath(DecodeChoice("cuda", "test"))
    reader = FrameReader(path, info, 32, ffmpeg_bin=str(fake), decode=decode)
    got = [(f.index, f.time_s, f.pixels.tobytes()) for f in reader]
    assert len(expected) == 105 and got == expected
    assert reader.hwaccel is None and "CUDA_ERROR_LAUNCH_FAILED" in decode.failure
    assert "decoding in software from now on" in caplog.text


# What an NVIDIA card without AV1 decode says for an AV1 file (ffmpeg 8): the device works, this
# stream cannot be decoded on it, and every frame fails.
AV1_ON_A_CARD_WITHOUT_AV1 = """[av1 @ 0x5c00] Hardware is lacking required capabilities
[av1 @ 0x5c00] Failed setup for format cuda: hwaccel initialisation returned error.
[av1 @ 0x5c00] Your platform doesn't support hardware accelerated AV1 decoding.
[dec:av1 @ 0x5c01] Decode error rate 1 exceeds maximum 0.666667"""


def test_a_stream_the_device_cannot_decode_is_retried_without_giving_up_the_device():
    path = DecodePath(DecodeChoice("cuda", "test"))
    assert looks_like_hw_failure(AV1_ON_A_CARD_WITHOUT_AV1)  # this stream: decoded again in software
    assert not path.note_failure(AV1_ON_A_CARD_WITHOUT_AV1)  # the next files still go to the GPU
    assert path.hwaccel == "cuda" and not path.failure
    assert not looks_like_hw_failure("moov atom not found\nInvalid data found when processing input")


def test_a_broken_file_is_not_taken_for_a_broken_gpu(tmp_path):
    """ffmpeg failing to open the file is the file's error: the hardware path stays chosen."""
    from clipseek.errors import VideoOpenError
    from clipseek.media.ffmpeg_cmd import VideoInfo
    from clipseek.media.video import FrameReader

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    decode = DecodePath(DecodeChoice("cuda", "test"))
    info = VideoInfo(0, 64, 64, 25.0, 1.0, 0.0, 0, "h264", 25)
    with pytest.raises(VideoOpenError, match="could not decode"):
        list(FrameReader(bad, info, 32, decode=decode))
    assert decode.hwaccel == "cuda" and not decode.failure


def test_a_bad_hwaccel_setting_stops_the_loader_at_start_naming_the_value(tmp_path):
    from clipseek.media.shots import SamplingSettings
    from clipseek.media.source import MediaSource

    with pytest.raises(ValueError, match="'gpu'"):
        MediaSource([str(tmp_path)], SamplingSettings(), 224, hwaccel="gpu")
    assert MediaSource([str(tmp_path)], SamplingSettings(), 224, hwaccel="none").decode.hwaccel is None
