"""What the page's screens share: its settings, the client, small text helpers, one-shot messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from clipseek.api.client import DEFAULT_ADDRESS, ClipseekClient
from clipseek.demo import MODEL_NAME as DEMO_MODEL_NAME
from clipseek.demo.vocab import COLOURS, SHAPES
from clipseek.docs import VideoDoc
from clipseek.media.roots import DEFAULT_WORKSPACE

NOTHING_INDEXED = ("Nothing is indexed yet. Add videos in the **Add videos** tab, or from a shell: "
                   "`clipseek index /path/to/videos`.")


@dataclass
class WebSettings:
    """The page's settings; each is overridden by the environment variable ``CLIPSEEK_<NAME>``."""

    address: str = DEFAULT_ADDRESS  # the Flow's gateway, http://host:port or grpc://host:port
    api_key: str = ""  # the Flow's CLIPSEEK_API_KEY, when it has one
    media_roots: list[str] = field(default_factory=list)  # the Flow's media folders, as this machine sees them
    workspace: str = DEFAULT_WORKSPACE  # the Flow's workspace, whose uploads/ folder clipseek serve reads
    upload_dir: str = ""  # where uploads go; empty = <first media folder>/uploads, or <workspace>/uploads
    upload_max_mb: int = 2048  # largest file one upload may be
    player_max_mb: int = 200  # larger originals (and non-browser formats) are played as a cut clip
    thumbnail_width_px: int = 320  # width of the result thumbnails


@st.cache_resource(show_spinner=False)
def get_client(address: str, api_key: str) -> ClipseekClient:
    return ClipseekClient(address, api_key=api_key)


def escape_md(text: str) -> str:
    """``text`` shown as is in Streamlit markdown (file names may hold *, _, $, ...)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", text)


def video_names(videos: list[VideoDoc]) -> dict[str, str]:
    """video id -> file name, with the folder added where two files share a name."""
    names = {v.video_id: Path(v.path).name for v in videos}
    clashes = {n for n in names.values() if list(names.values()).count(n) > 1}
    return {v.video_id: (f"{Path(v.path).name} ({Path(v.path).parent.name})" if names[v.video_id] in clashes
                         else names[v.video_id]) for v in videos}


def whole_seconds(seconds: int) -> str:
    """``00:03`` (``1:02:03`` past an hour): a time the player can start at."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def flash(kind: str, text: str) -> None:
    """A message shown once, at the top of the page (set in a button callback, shown by flash_ui)."""
    st.session_state.setdefault("flash", []).append((kind, text))


def flash_ui() -> None:
    for kind, text in st.session_state.pop("flash", []):
        getattr(st, kind)(text)


def demo_notice_ui(videos: list[VideoDoc]) -> bool:
    """Say so when the index was made with the demo model; returns whether it was."""
    if not any(v.model == DEMO_MODEL_NAME for v in videos):
        return False
    st.info(f"**Demo model in use.** It knows only its synthetic vocabulary of coloured shapes: "
            f"{', '.join(SHAPES)} in {', '.join(COLOURS)}. Ask for things like “a red circle” or “an orange "
            f"star”; other words mean nothing to it. Serve a real CLIP model for real videos "
            f"(CLIPSEEK_MODEL, CLIPSEEK_PRETRAINED).", icon=":material/science:")
    return True
