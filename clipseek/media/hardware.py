"""Which decoder to ask ffmpeg for: NVIDIA's (``-hwaccel cuda``) when it can work here, software
otherwise, and software again for the rest of the process once the hardware path has failed.

The choice itself is a pure function of what ``ffmpeg -hwaccels`` lists and how many CUDA devices
the driver reports (``choose_decode``), so it is tested without a GPU. The device count comes from
the CUDA driver library through ctypes, not from torch: the loader, which decodes, never imports
torch (clipseek.torch_free). ``-hwaccel cuda`` without ``-hwaccel_output_format`` makes ffmpeg copy
each decoded frame back to system memory, so the loader's filter graph (scale, pad, showinfo) and
its pipe stay as they are. When ffmpeg cannot open the CUDA device (no driver, a driver too old, no
device left) it exits before the first frame; when the device cannot decode the stream (a codec or
profile NVDEC lacks) every frame fails; a CUDA call can also fail in the middle. ``looks_like_hw_failure``
recognises all three from ffmpeg's stderr, so the caller (clipseek.media.video.FrameReader) decodes the
range again in software, and ``DecodePath.note_failure`` switches the whole process to software when it
was the device.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import re
import subprocess
import threading
from dataclasses import dataclass

logger = logging.getLogger("clipseek.media.hardware")

HWACCEL_CHOICES = ("auto", "cuda", "none")
# ffmpeg's messages when the CUDA device cannot be set up at all (no driver, no device left), or a CUDA
# call fails on the way: the device is the problem, so the process decodes in software from then on.
HW_FAILURE_RE = re.compile(
    r"Device creation failed|No device available for decoder|Device setup failed for decoder|"
    r"Cannot load (libcuda|libnvcuvid)|Could not dynamically load CUDA|"
    r"CUDA_ERROR_\w+|cuInit\(0\) failed|Error creating a CUDA device|Failed to create a CUDA device",
    re.IGNORECASE)
# ffmpeg's messages when the device works but cannot decode this stream (a codec or profile NVDEC lacks,
# e.g. AV1 on an older card: "Failed setup for format cuda: hwaccel initialisation returned error", then
# every frame fails): the stream is decoded again in software, other files still go to the GPU.
HW_STREAM_FAILURE_RE = re.compile(
    r"Failed setup for format cuda|hwaccel initiali[sz]ation returned error|"
    r"Hardware is lacking required capabilities|doesn't support hardware accelerated",
    re.IGNORECASE)

@dataclass(frozen=True)
class DecodeChoice:
    """``hwaccel``: the ffmpeg ``-hwaccel`` value, or None for software decode; ``reason``: why."""

    hwaccel: str | None
    reason: str

    @property
    def input_args(self) -> list[str]:
        """ffmpeg options that go before ``-i``."""
        return ["-hwaccel", self.hwaccel] if self.hwaccel else []


def parse_hwaccels(output: str) -> list[str]:
    """The methods listed by ``ffmpeg -hide_banner -hwaccels``."""
    lines = output.splitlines()
    for number, line in enumerate(lines):
        if line.strip().lower().startswith("hardware acceleration methods"):
            return [name.strip() for name in lines[number + 1:] if name.strip()]
    return []


def choose_decode(requested: str, hwaccels: list[str], cuda_devices: int) -> DecodeChoice:
    """The decode path for the setting ``requested`` (``auto``, ``cuda`` or ``none``), given the
    hwaccels this ffmpeg was built with and the CUDA devices the driver reports.

    ``auto`` takes CUDA only when both are there; ``cuda`` insists (an error if this ffmpeg lacks
    it, so a misconfigured GPU box does not silently decode on the CPU); ``none`` never uses it.
    """
    requested = requested.strip().lower()
    if requested not in HWACCEL_CHOICES:
        raise ValueError(f"hardware decode must be one of {', '.join(HWACCEL_CHOICES)}, got {requested!r}")
    if requested == "none":
        return DecodeChoice(None, "software decode asked for")
    has_cuda = "cuda" in hwaccels
    if requested == "cuda":
        if not has_cuda:
            raise ValueError(f"hardware decode 'cuda' asked for, but this ffmpeg offers only: "
                             f"{', '.join(hwaccels) or 'no hwaccels'}")
        return DecodeChoice("cuda", f"cuda asked for ({cuda_devices} CUDA device(s) seen)")
    if not has_cuda:
        return DecodeChoice(None, "this ffmpeg was built without cuda")
    if cuda_devices <= 0:
        return DecodeChoice(None, "no CUDA device (ffmpeg could use one)")
    return DecodeChoice("cuda", f"ffmpeg has cuda and the driver reports {cuda_devices} device(s)")


def hwaccels_argv(ffmpeg_bin: str = "ffmpeg") -> list[str]:
    return [ffmpeg_bin, "-nostdin", "-hide_banner", "-hwaccels"]


def ffmpeg_hwaccels(ffmpeg_bin: str = "ffmpeg") -> list[str]:
    """What this ffmpeg lists under ``-hwaccels`` ([] if it cannot be run)."""
    try:
        done = subprocess.run(hwaccels_argv(ffmpeg_bin), capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not ask %s for its hwaccels: %s", ffmpeg_bin, exc)
        return []
    return parse_hwaccels(done.stdout)


def cuda_device_count() -> int:
    """CUDA devices the driver reports (honouring CUDA_VISIBLE_DEVICES); 0 without a driver.
    Asks libcuda directly, so no process needs torch for it."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


@functools.lru_cache(maxsize=8)
def detect_decode(requested: str = "auto", ffmpeg_bin: str = "ffmpeg") -> DecodeChoice:
    """``choose_decode`` with what this machine offers (asked once per process)."""
    requested = requested.strip().lower()
    if requested not in HWACCEL_CHOICES or requested == "none":
        return choose_decode(requested, [], 0)  # refuses a bad value before running anything
    hwaccels = ffmpeg_hwaccels(ffmpeg_bin)
    choice = choose_decode(requested, hwaccels, cuda_device_count() if "cuda" in hwaccels else 0)
    logger.info("video decode: %s (%s)", choice.hwaccel or "software", choice.reason)
    return choice


class DecodePath:
    """The decode path of a process: the detected choice until the hardware path fails once, then
    software for good (a device that could not be opened will not open on the next file).

    Use: put ``path.input_args`` (or ``path.hwaccel``) into the decode argv; when ffmpeg exits
    with an error before its first frame, call ``path.note_failure(stderr)``: True means it was the
    hardware path that failed and the same decode should be run again in software.
    """

    def __init__(self, choice: DecodeChoice):
        self._choice = choice
        self._lock = threading.Lock()
        self.failure: str = ""

    @property
    def hwaccel(self) -> str | None:
        return None if self.failure else self._choice.hwaccel

    @property
    def input_args(self) -> list[str]:
        return ["-hwaccel", self.hwaccel] if self.hwaccel else []

    def note_failure(self, stderr: str) -> bool:
        """Record a failed hardware decode; True when its device failed and this call switched the
        process to software (a stream NVDEC cannot decode leaves the choice as it is)."""
        if self._choice.hwaccel is None or not HW_FAILURE_RE.search(stderr or ""):
            return False
        with self._lock:
            if self.failure:
                return False  # already software
            self.failure = next(line for line in stderr.splitlines() if HW_FAILURE_RE.search(line))
        logger.warning("hardware decode (%s) failed, decoding in software from now on: %s",
                       self._choice.hwaccel, self.failure.strip())
        return True


def looks_like_hw_failure(stderr: str) -> bool:
    """Whether ffmpeg's stderr says the hardware decoder failed: its device (HW_FAILURE_RE) or this
    stream on it (HW_STREAM_FAILURE_RE). Either way the same decode can be run again in software."""
    return bool(HW_FAILURE_RE.search(stderr or "") or HW_STREAM_FAILURE_RE.search(stderr or ""))


_PATHS: dict[tuple[str, str], DecodePath] = {}
_PATHS_LOCK = threading.Lock()


def decode_path(requested: str = "auto", ffmpeg_bin: str = "ffmpeg") -> DecodePath:
    """The process's one DecodePath for this setting (detected on first use)."""
    key = (requested.strip().lower(), ffmpeg_bin)
    with _PATHS_LOCK:
        if key not in _PATHS:
            _PATHS[key] = DecodePath(detect_decode(*key))
        return _PATHS[key]
