"""Playing and cutting the clips of search results, for the web page (no Streamlit in here).

The page plays a result from the original file when the browser can play that file and it is small
enough to send through the page; otherwise, and for "Download clip", it cuts the clip frame-accurately
(``clipseek.ffmpeg_cmd.clip_argv``: re-encoded, not a keyframe-snapped copy) into a per-session
temporary folder.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path

from clipseek.api.format import format_time
from clipseek.errors import VideoOpenError
from clipseek.media.ffmpeg_cmd import clip_argv
from clipseek.media.video import probe

CUT_TIMEOUT_S = 600.0

# Containers a browser's <video> element plays (with the usual H.264/VP9/AV1 inside); others are cut
# to H.264 MP4 before they are played.
BROWSER_CONTAINERS = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/mp4", ".webm": "video/webm",
                      ".ogv": "video/ogg"}


def player_window(start_s: float, end_s: float) -> tuple[int, int]:
    """The whole seconds st.video is given: it drops fractions, so start at or before the clip and
    stop at or after its end."""
    start = max(0, math.floor(start_s))
    return start, max(start + 1, math.ceil(end_s))


def clip_label(start_s: float, end_s: float) -> str:
    """``00:03.5–00:08.9``: the exact times of a clip."""
    return f"{format_time(start_s)}–{format_time(end_s)}"


def browser_mimetype(path: Path) -> str | None:
    """The MIME type to play ``path`` as in a browser, or None when browsers do not play its container."""
    return BROWSER_CONTAINERS.get(path.suffix.lower())


def plays_original(path: Path, max_bytes: int) -> bool:
    """Whether the page should play the original file (else it plays a cut clip)."""
    return browser_mimetype(path) is not None and path.stat().st_size <= max_bytes


def clip_file_name(video_path: str | Path, start_s: float, end_s: float) -> str:
    """``holiday_00m03.5s-00m08.9s.mp4``: a download name that says which moment it is."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(video_path).stem).strip("._-")[:60] or "clip"
    return f"{stem}_{_name_time(start_s)}-{_name_time(end_s)}.mp4"


def _name_time(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}m{secs:04.1f}s"


def cut_clip(video_path: Path, start_s: float, end_s: float, out_path: Path) -> Path:
    """Cut [start_s, end_s) of ``video_path`` into the MP4 ``out_path``; raises VideoOpenError."""
    if end_s <= start_s:
        raise ValueError(f"a clip must end after it starts, got {start_s:.3f}-{end_s:.3f} s")
    info = probe(video_path)
    argv = clip_argv(video_path, info, start_s, end_s, out_path)
    try:
        subprocess.run(argv, capture_output=True, check=True, timeout=CUT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.CalledProcessError as exc:
        out_path.unlink(missing_ok=True)
        raise VideoOpenError(str(video_path), f"could not cut the clip {clip_label(start_s, end_s)}",
                             exc.stderr.decode(errors="replace")) from None
    except subprocess.TimeoutExpired:
        out_path.unlink(missing_ok=True)
        raise VideoOpenError(str(video_path), f"cutting {clip_label(start_s, end_s)} took over "
                                              f"{CUT_TIMEOUT_S:.0f} s") from None
    return out_path


class ClipFolder:
    """A temporary folder for one browser session that holds at most one cut clip.

    A new clip replaces the previous one; the folder is removed by ``cleanup()`` or, at the latest,
    when the object is garbage collected (Streamlit drops a session's state when the session ends).
    Download buttons cut their clip on a thread of their own, hence the lock.
    """

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="clipseek-web-"))
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)

    def clip(self, video_path: str | Path, start_s: float, end_s: float) -> Path:
        """The clip's file, cut now unless it is the clip already in the folder."""
        name = clip_file_name(video_path, start_s, end_s)
        with self._lock:
            self.path.mkdir(parents=True, exist_ok=True)
            out = self.path / name
            if out.is_file():
                return out
            for old in self.path.iterdir():
                old.unlink(missing_ok=True)
            return cut_clip(Path(video_path), start_s, end_s, out)

    def clip_bytes(self, video_path: str | Path, start_s: float, end_s: float) -> bytes:
        return self.clip(video_path, start_s, end_s).read_bytes()

    def cleanup(self) -> None:
        self._finalizer()

    @property
    def removed(self) -> bool:
        return not self._finalizer.alive
