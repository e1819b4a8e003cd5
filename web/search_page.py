"""The Search screen: a sentence and/or a picture in, clips out as cards with a thumbnail, the exact times,
a confidence badge, a player, a frame-accurate download and "more like this". With metadata, the words
match the videos' titles and briefs too (hybrid), and a category, topic or field narrows the search."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import clips  # web/clips.py
import streamlit as st
from common import NOTHING_INDEXED, WebSettings, demo_notice_ui, escape_md, get_client, video_names, whole_seconds

from clipseek.api.client import ClipseekClient
from clipseek.api.format import NO_CONFIDENT_RESULT, format_time, library_topic_seconds, video_metadata
from clipseek.docs import Segment, VideoDoc
from clipseek.errors import ClipseekError, QueryError

CARDS_PER_ROW = 4
LEVELS = ("low", "medium", "high")
BADGE_COLOURS = {"high": "green", "medium": "orange", "low": "gray"}
PICTURE_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
MODES = {"auto": "Frames and words (auto)", "frames": "Frames only", "text": "Words only (metadata)",
         "hybrid": "Frames and words"}
ANY = "(any)"


@dataclass
class SearchRequest:
    text: str
    top_k: int
    video_ids: list[str]
    min_confidence: str = "low"
    image: bytes | None = None  # a picture as the query (uploaded)
    image_name: str = ""
    image_weight: float = 0.5  # with text too: the picture's share
    like: str = ""  # "more like this": VIDEO@SECONDS
    like_label: str = ""  # how the page names that clip
    where: list[str] = field(default_factory=list)  # metadata filters "field=value" (topic=... filters shots)
    mode: str = "auto"  # frames, text, hybrid or auto (docs/metadata.md)

    def describe(self) -> str:
        """What was asked, in words, for the result's caption."""
        if self.like:
            return f"clips like {self.like_label or self.like}"
        parts = [f"“{escape_md(self.text)}”"] if self.text.strip() else []
        if self.image is not None:
            parts.append(f"the picture {escape_md(self.image_name or '')}".strip())
        return " and ".join(parts) or "“”"


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


def search_form_ui(videos: list[VideoDoc], names: dict[str, str]) -> SearchRequest | None:
    """The search box (Enter submits), top-k, the video filter, a picture, the confidence, and (when the
    library has metadata or topics) what to match on and a category, topic or field filter; returns a
    request when submitted."""
    with st.form("search_form", border=False, enter_to_submit=True):
        text_col, filter_col, k_col, button_col = st.columns([6, 4, 1, 1.2], vertical_alignment="bottom")
        text = text_col.text_input("Describe the moment", key="query",
                                   placeholder="a dog jumps into a swimming pool")
        video_ids = filter_col.multiselect("Only in these videos", options=list(names), format_func=names.get,
                                           key="video_filter", placeholder="All videos")
        top_k = k_col.number_input("Results", min_value=1, max_value=100, value=12, step=1, key="top_k")
        submitted = button_col.form_submit_button("Search", type="primary", width="stretch")
        picture_col, weight_col, confidence_col = st.columns([6, 3, 3], vertical_alignment="bottom")
        picture = picture_col.file_uploader("…or find moments that look like a picture (drop or browse)",
                                            type=PICTURE_TYPES, key="query_picture")
        weight = weight_col.slider("Picture's share (with words too)", 0.0, 1.0, 0.5, 0.1, key="image_weight")
        confidence = confidence_col.select_slider("Confidence at least", options=LEVELS, value="low",
                                                  key="min_confidence",
                                                  help="How far a result stands above the rest of the library "
                                                       "for this query (docs/search.md)")
        where, mode = words_filters_ui(videos)
    if not submitted:
        return None
    return SearchRequest(text=text, top_k=int(top_k), video_ids=list(video_ids), min_confidence=confidence,
                         image=picture.getvalue() if picture is not None else None,
                         image_name=picture.name if picture is not None else "", image_weight=float(weight),
                         where=where, mode=mode)


def words_filters_ui(videos: list[VideoDoc]) -> tuple[list[str], str]:
    """What to match on, and a category / topic / "field=value" filter: shown only when the library has
    metadata or topics (else nothing to filter on). Returns (where, mode)."""
    categories = sorted({str(c) for c in (video_metadata(v).get("category") for v in videos) if c})
    topics = list(library_topic_seconds(videos))
    if not (categories or topics or any(video_metadata(v) for v in videos)):
        return [], "auto"
    mode_col, category_col, topic_col, field_col = st.columns([3, 3, 3, 3], vertical_alignment="bottom")
    mode = mode_col.selectbox("Match on", options=list(MODES), format_func=MODES.get, key="search_mode",
                              help="Frames: what the videos show; words: their titles, briefs and tags")
    category = category_col.selectbox("Category", options=[ANY, *categories], key="search_category")
    topic = topic_col.selectbox("Topic of the shot", options=[ANY, *topics], key="search_topic")
    fields = field_col.text_input("Other fields (field=value, comma-separated)", key="search_where",
                                  placeholder="tags=sunset")
    where = [f"category={category}"] if category != ANY else []
    where += [f"topic={topic}"] if topic != ANY else []
    where += [part.strip() for part in fields.split(",") if part.strip()]
    return where, mode


def run_search(client: ClipseekClient, request: SearchRequest) -> SearchResult | None:
    """The result, with the reason when the Flow refused the query; None (said on the page) when the
    search itself failed."""
    try:
        segments = client.search(request.text, request.top_k, request.video_ids,
                                 min_confidence=request.min_confidence, image=request.image,
                                 image_weight=request.image_weight, like=request.like, where=request.where,
                                 mode=request.mode)
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
    request = result.request
    where = " in the selected videos" if request.video_ids else ""
    where += f" where {', '.join(request.where)}" if request.where else ""
    asked = request.describe()
    if not result.segments:
        if request.min_confidence != "low":
            st.info(f"No clip matches {asked}{where} with {request.min_confidence} confidence or above: the "
                    f"library may hold nothing like it. Lower “Confidence at least” to see the closest clips.",
                    icon=":material/search_off:")
        else:
            st.info(f"No clips match {asked}{where}. Try other words, or search all videos.",
                    icon=":material/search_off:")
        return
    if all(s.level == "low" for s in result.segments):
        st.warning(f"{NO_CONFIDENT_RESULT[0].upper()}{NO_CONFIDENT_RESULT[1:]}. These are only the closest clips.",
                   icon=":material/help:")
    count = len(result.segments)
    st.caption(f"{count} clip{'s' if count != 1 else ''} for {asked}{where}, best first")
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
        if segment.level:
            st.badge(f"{segment.level} confidence ({segment.confidence:.1f})",
                     color=BADGE_COLOURS.get(segment.level, "gray"))
        st.caption(f"{segment.end_s - segment.start_s:.1f} s · score {segment.score:.3f} · "
                   f"best frame {format_time(segment.thumbnail_s)}")
        about = [escape_md(part) for part in (segment.title, segment.category, segment.topic) if part]
        if segment.match and segment.match != "frames":
            about.append(f"found by {segment.match.replace('+', ' and ')}")
        if about:
            st.caption(" · ".join(about))
        st.button("More like this", icon=":material/image_search:", key=f"like_{rank}", width="stretch",
                  on_click=_more_like, args=(segment, name),
                  help="Search with this clip's best frame (its stored vector: nothing is re-encoded)")
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


def _more_like(segment: Segment, name: str) -> None:
    """Ask for clips like ``segment``'s best frame (run by search_ui on this rerun)."""
    last: SearchResult | None = st.session_state.get("search_result")
    base = last.request if last is not None else SearchRequest("", 12, [])
    st.session_state["pending_search"] = SearchRequest(
        text="", top_k=base.top_k, video_ids=[], min_confidence=base.min_confidence, mode="frames",
        like=f"{segment.video_id}@{segment.thumbnail_s:g}",
        like_label=f"{name} at {format_time(segment.thumbnail_s)}")


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
    request = search_form_ui(videos, names) or st.session_state.pop("pending_search", None)
    if request is not None:
        st.session_state["search_result"] = run_search(client, request)
        st.session_state["playing"] = None
    result: SearchResult | None = st.session_state.get("search_result")
    if result is not None:
        results_ui(result, names, address, settings)
