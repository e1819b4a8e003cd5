"""The Search screen: a sentence in, clips out as cards with a thumbnail, the exact times, a player and a
frame-accurate download."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import clips  # web/clips.py
import streamlit as st
from common import NOTHING_INDEXED, WebSettings, demo_notice_ui, escape_md, get_client, video_names, whole_seconds

from clipseek.api.client import ClipseekClient
from clipseek.api.format import format_time
from clipseek.docs import Segment, VideoDoc
from clipseek.errors import ClipseekError, QueryError

CARDS_PER_ROW = 4


@dataclass
class SearchRequest:
    text: str
    top_k: int
    video_ids: list[str]


@dataclass
class SearchResult:
    request: SearchRequest
    segments: list[Segment]
    error: str = ""


# -- cached resources -------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=2000, ttl=3600)
def get_thumbnail(address: str, api_key: str, video: str, time_s: float, width_px: int) -> bytes:
    return get_client(address, api_key).thumbnail(video, time_s, width_px)


def clip_folder() -> clips.ClipFolder:
    """This session's temporary folder for cut clips (removed when the session ends)."""
    folder = st.session_state.get("clip_folder")
    if folder is None or folder.removed:
        folder = st.session_state["clip_folder"] = clips.ClipFolder()
    return folder


# -- small helpers ----------------------------------------------------------------------------------


def segment_key(segment: Segment) -> str:
    return f"{segment.video_id}@{segment.start_s:.3f}-{segment.end_s:.3f}"


# -- page parts -------------------------------------------------------------------------------------


def search_form_ui(names: dict[str, str]) -> SearchRequest | None:
    """The search box (Enter submits), top-k and the video filter; returns a request when submitted."""
    with st.form("search_form", border=False, enter_to_submit=True):
        text_col, filter_col, k_col, button_col = st.columns([6, 4, 1, 1.2], vertical_alignment="bottom")
        text = text_col.text_input("Describe the moment", key="query",
                                   placeholder="a dog jumps into a swimming pool")
        video_ids = filter_col.multiselect("Only in these videos", options=list(names), format_func=names.get,
                                           key="video_filter", placeholder="All videos")
        top_k = k_col.number_input("Results", min_value=1, max_value=100, value=12, step=1, key="top_k")
        submitted = button_col.form_submit_button("Search", type="primary", width="stretch")
    if not submitted:
        return None
    return SearchRequest(text=text, top_k=int(top_k), video_ids=list(video_ids))


def run_search(client: ClipseekClient, request: SearchRequest) -> SearchResult | None:
    """The result, with the reason when the Flow refused the query; None (said on the page) when the
    search itself failed."""
    try:
        segments = client.search(request.text, request.top_k, request.video_ids)
    except QueryError as exc:
        return SearchResult(request, [], error=str(exc))
    except ClipseekError as exc:
        st.error(f"The search failed: {exc}", icon=":material/error:")
        return None
    return SearchResult(request, segments)


def results_ui(result: SearchResult, names: dict[str, str], address: str, settings: WebSettings) -> None:
    """The result cards, or why there are none."""
    if result.error:
        st.warning(f"Cannot search for that: {result.error}", icon=":material/warning:")
        return
    where = " in the selected videos" if result.request.video_ids else ""
    text = escape_md(result.request.text)
    if not result.segments:
        st.info(f"No clips match “{text}”{where}. Try other words, or search all videos.",
                icon=":material/search_off:")
        return
    count = len(result.segments)
    st.caption(f"{count} clip{'s' if count != 1 else ''} for “{text}”{where}, best first")
    for row_start in range(0, count, CARDS_PER_ROW):
        columns = st.columns(CARDS_PER_ROW)
        for offset, segment in enumerate(result.segments[row_start:row_start + CARDS_PER_ROW]):
            with columns[offset]:
                card_ui(row_start + offset + 1, segment, names.get(segment.video_id, Path(segment.video).name),
                        address, settings)


def card_ui(rank: int, segment: Segment, name: str, address: str, settings: WebSettings) -> None:
    """One result: the best frame (or the player), the video, the exact times, the score, the actions."""
    key = segment_key(segment)
    path = Path(segment.video)
    on_this_machine = path.is_file()
    playing = on_this_machine and st.session_state.get("playing") == key
    with st.container(border=True, key=f"card_{rank}"):  # class st-key-card_<rank> in the page
        if playing:
            player_ui(segment, settings)
        else:
            thumbnail_ui(segment, address, settings.api_key, settings.thumbnail_width_px)
        st.markdown(f"**{rank}. {escape_md(name)}**  \n`{clips.clip_label(segment.start_s, segment.end_s)}`")
        st.caption(f"{segment.end_s - segment.start_s:.1f} s · score {segment.score:.3f} · "
                   f"best frame {format_time(segment.thumbnail_s)}")
        if not on_this_machine:
            st.caption("The video file is not on the page's machine: run the page where the videos are "
                       "to play and download clips.")
            return
        play_col, download_col = st.columns(2)
        play_col.button("Stop" if playing else "Play", icon=":material/stop:" if playing else ":material/play_arrow:",
                        key=f"play_{rank}", width="stretch", on_click=_toggle_playing, args=(key,))
        download_col.download_button(
            "Clip", icon=":material/download:", key=f"download_{rank}", width="stretch", mime="video/mp4",
            on_click="ignore",
            file_name=clips.clip_file_name(path, segment.start_s, segment.end_s),
            data=functools.partial(clip_folder().clip_bytes, str(path), segment.start_s, segment.end_s),
            help="Download this clip, cut frame-accurately (re-encoded to H.264 MP4)")


def _toggle_playing(key: str) -> None:
    st.session_state["playing"] = None if st.session_state.get("playing") == key else key


def thumbnail_ui(segment: Segment, address: str, api_key: str, width_px: int) -> None:
    try:
        jpeg = get_thumbnail(address, api_key, segment.video, segment.thumbnail_s, width_px)
    except ClipseekError as exc:
        st.caption(f"No thumbnail: {exc}")
        return
    st.image(jpeg, width="stretch")


def player_ui(segment: Segment, settings: WebSettings) -> None:
    """Play the segment in place: the original from the whole second before the clip (st.video takes
    whole seconds), or a frame-accurate cut when the original is large or not playable in a browser."""
    path = Path(segment.video)
    try:
        if clips.plays_original(path, settings.player_max_mb * 2**20):
            start, end = clips.player_window(segment.start_s, segment.end_s)
            st.video(str(path), format=clips.browser_mimetype(path), start_time=start, end_time=end,
                     autoplay=True)
            st.caption(f"Plays {whole_seconds(start)}–{whole_seconds(end)} (whole seconds); "
                       f"the clip is {clips.clip_label(segment.start_s, segment.end_s)}")
        else:
            with st.spinner("Cutting the clip…"):
                clip = clip_folder().clip(path, segment.start_s, segment.end_s)
            st.video(str(clip), autoplay=True)
            st.caption(f"Plays the cut clip {clips.clip_label(segment.start_s, segment.end_s)} (the original "
                       f"is over {settings.player_max_mb} MB or not a browser format)")
    except (ClipseekError, OSError, ValueError) as exc:
        st.error(f"Cannot play this clip: {exc}")


def search_ui(client: ClipseekClient, videos: list[VideoDoc], address: str, settings: WebSettings) -> None:
    if not videos:
        st.info(NOTHING_INDEXED, icon=":material/inbox:")
        return
    demo_notice_ui(videos)
    names = video_names(videos)
    request = search_form_ui(names)
    if request is not None:
        st.session_state["search_result"] = run_search(client, request)
        st.session_state["playing"] = None
    result: SearchResult | None = st.session_state.get("search_result")
    if result is not None:
        results_ui(result, names, address, settings)
