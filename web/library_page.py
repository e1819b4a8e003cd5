"""The Library screen: what is indexed, browsing it by category or topic (counts, cover, title, brief, time
per topic, each video's topic strip), and deleting a video."""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import streamlit as st
from common import NOTHING_INDEXED, escape_md, flash, video_names
from search_page import SearchResult, get_thumbnail

from clipseek.api.client import ClipseekClient
from clipseek.api.format import format_time, library_topic_seconds, suggested_category, topic_seconds, video_metadata
from clipseek.docs import VideoDoc
from clipseek.errors import ClipseekError


def library_ui(client: ClipseekClient, videos: list[VideoDoc]) -> None:
    """The indexed videos, and deleting one (after a confirmation)."""
    if not videos:
        st.info(NOTHING_INDEXED, icon=":material/inbox:")
        return
    names = video_names(videos)
    st.dataframe([{
        "Video": names[v.video_id],
        "Folder": str(Path(v.path).parent),
        "Duration": format_time(v.duration_s),
        "Shots": v.num_shots,
        "Frames": v.num_frames,
        "Indexed": _local_time(v.indexed_at) + ("" if v.already_indexed else " (partly)"),
        "Model": v.model,
        "Id": v.video_id,
    } for v in videos], hide_index=True, width="stretch")
    browse_ui(client, videos, names)
    delete_ui(client, names)


# -- browse by category or topic ------------------------------------------------------------------------
NO_CATEGORY = "(no category)"
BROWSE_MAX_CARDS = 24  # cards drawn for one group (each asks the Flow for its shots and a thumbnail)
BRIEF_MAX_CHARS = 300
# one colour per topic in the strips (cycled when a vocabulary has more labels)
TOPIC_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac")


def video_groups(videos: list[VideoDoc], by: str) -> dict[str, list[VideoDoc]]:
    """The videos by their category (``by="category"``; those without one under NO_CATEGORY) or by the
    topic they spend most time on (``by="topic"``; a video without tagged shots is left out); the
    largest group first, then by name."""
    groups: dict[str, list[VideoDoc]] = {}
    for video in videos:
        if by == "category":
            key = str(video_metadata(video).get("category") or NO_CATEGORY)
        else:
            seconds = topic_seconds(video)
            key = max(seconds, key=seconds.get) if seconds else ""
        if key:
            groups.setdefault(key, []).append(video)
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0] == NO_CATEGORY, kv[0].lower())))


def topic_colours(names: list[str]) -> dict[str, str]:
    return {name: TOPIC_COLOURS[i % len(TOPIC_COLOURS)] for i, name in enumerate(names)}


def topic_strip_html(duration_s: float, shots: list, colours: dict[str, str]) -> str:
    """One bar across the video's time, a segment per shot coloured by its topic (its name on hover)."""
    total = max(duration_s, max((s.end_s for s in shots), default=0.0), 1e-9)
    parts = []
    for shot in shots:
        width = 100.0 * max(0.0, shot.end_s - shot.start_s) / total
        colour = colours.get(shot.topic, "#dddddd")
        label = html.escape(f"{shot.topic or 'untagged'} {format_time(shot.start_s)}-{format_time(shot.end_s)}")
        parts.append(f'<span title="{label}" style="display:inline-block;height:14px;width:{width:.3f}%;'
                     f'background:{colour}"></span>')
    return f'<div class="topic-strip" style="display:flex;width:100%;line-height:0">{"".join(parts)}</div>'


def browse_ui(client: ClipseekClient, videos: list[VideoDoc], names: dict[str, str]) -> None:
    """Browse by category or topic: the groups with their counts, the library's time per topic, and a card
    per video of the chosen group."""
    st.markdown("#### Browse")
    kind, text = st.session_state.pop("topics_message", ("", ""))
    if kind:
        getattr(st, kind)(text)
    library_seconds = library_topic_seconds(videos)
    if not library_seconds:
        st.caption("No shot is tagged with a topic yet.")
        st.button("Tag every shot with a topic", key="tag_topics", on_click=tag_topics, args=(client,))
    by = st.radio("Browse by", ["category", "topic"], key="browse_by", horizontal=True,
                  format_func=str.capitalize)
    groups = video_groups(videos, by)
    if not groups:
        st.caption("No topics yet: tag the shots first (above), or `clipseek topics` from a shell.")
        return
    group = st.selectbox(by.capitalize(), options=list(groups), key=f"browse_{by}",
                         format_func=lambda g: f"{g} ({len(groups[g])})")
    if library_seconds:
        st.caption("Time per topic, whole library (seconds)")
        st.bar_chart({"seconds": library_seconds}, horizontal=True, height=max(120, 28 * len(library_seconds)))
    colours = topic_colours(list(library_seconds))
    chosen = groups.get(group, [])
    for video in chosen[:BROWSE_MAX_CARDS]:
        video_card_ui(client, video, names.get(video.video_id, Path(video.path).name), colours)
    if len(chosen) > BROWSE_MAX_CARDS:
        st.caption(f"{len(chosen) - BROWSE_MAX_CARDS} more videos in {group} (`clipseek videos` lists them all).")


def video_card_ui(client: ClipseekClient, video: VideoDoc, name: str, colours: dict[str, str]) -> None:
    """Cover, title, duration, brief, category, tags, topic strip and time per topic of one video."""
    meta = video_metadata(video)
    try:
        shots = list(client.videos([video.video_id])[0].shots)  # with each shot's topic
    except ClipseekError as exc:
        shots = []
        st.caption(f"Could not read the shots of {name}: {exc}")
    with st.container(border=True):
        cover_col, text_col = st.columns([1, 3])
        with cover_col:
            cover_ui(client, video, meta, shots)
        with text_col:
            st.markdown(f"**{escape_md(str(meta.get('title') or name))}** · {format_time(video.duration_s)}")
            about = [str(meta["category"])] if meta.get("category") else []
            if not meta.get("category") and suggested_category(video):
                about.append(f"suggested category: {suggested_category(video)}")
            tags = meta.get("tags") or []
            if tags:
                about.append("tags: " + ", ".join(str(t) for t in (tags if isinstance(tags, list) else [tags])))
            if about:
                st.caption(escape_md(" · ".join(about)))
            brief = str(meta.get("description") or "")
            if brief:
                st.markdown(escape_md(brief if len(brief) <= BRIEF_MAX_CHARS else brief[:BRIEF_MAX_CHARS] + "…"))
            seconds = topic_seconds(video)
            if seconds:
                st.markdown(topic_strip_html(video.duration_s, shots, colours), unsafe_allow_html=True)
                st.caption("Time per topic: " + " · ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
                st.bar_chart({"seconds": seconds}, horizontal=True, height=max(80, 26 * len(seconds)))


def cover_ui(client: ClipseekClient, video: VideoDoc, meta: dict, shots: list) -> None:
    """The metadata's cover when it is an image file here, else the frame in the middle of the first shot
    (a cover on the web is linked, not fetched: the page makes no requests of its own to other sites)."""
    cover = str(meta.get("cover") or "")
    if cover and not cover.startswith(("http://", "https://")) and Path(cover).expanduser().is_file():
        st.image(str(Path(cover).expanduser()), width="stretch")
        return
    first = shots[0] if shots else None
    time_s = (first.start_s + first.end_s) / 2 if first else 0.0
    try:
        jpeg = get_thumbnail(client.address, client.api_key, video.path, round(time_s, 3), 320)
    except ClipseekError as exc:
        st.caption(f"No cover: {exc}")
        return
    st.image(jpeg, width="stretch")
    if cover:
        st.caption(f"[cover image]({cover})")


def tag_topics(client: ClipseekClient) -> None:
    """The button's callback. Its message is shown in this tab, not by ``flash``: a message above the tabs
    would move them, and Streamlit would show the first tab again."""
    try:
        labels = client.ensure_vocabulary()
    except ClipseekError as exc:
        st.session_state["topics_message"] = ("error", f"Could not tag the shots: {exc}")
        return
    st.session_state["topics_message"] = ("success", f"Every shot is tagged with one of {len(labels)} topics.")


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def delete_ui(client: ClipseekClient, names: dict[str, str]) -> None:
    """Pick a video, ask, confirm. The buttons act in callbacks, before the page is drawn again, so the
    library shown next already lacks the deleted video."""
    st.markdown("#### Remove a video from the index")
    choice_col, ask_col = st.columns([4, 1], vertical_alignment="bottom")
    choice_col.selectbox("Video", options=list(names), format_func=names.get, key="delete_choice")
    ask_col.button("Delete…", key="delete_ask", width="stretch", on_click=_ask_delete)
    pending = st.session_state.get("confirm_delete")
    if pending not in names:
        return
    st.warning(f"Remove **{escape_md(names[pending])}** from the index? The file stays on disk; "
               f"index it again to bring it back.")
    yes_col, no_col, _ = st.columns([1, 1, 4])
    yes_col.button("Yes, delete", type="primary", key="delete_yes", on_click=delete_video,
                   args=(client, pending, names[pending]))
    no_col.button("Cancel", key="delete_no", on_click=_cancel_delete)


def _ask_delete() -> None:
    st.session_state["confirm_delete"] = st.session_state.get("delete_choice")


def _cancel_delete() -> None:
    st.session_state["confirm_delete"] = None


def delete_video(client: ClipseekClient, video_id: str, name: str) -> None:
    st.session_state["confirm_delete"] = None
    try:
        client.delete(video_id)
    except ClipseekError as exc:
        flash("error", f"Could not delete {name}: {exc}")
        return
    flash("success", f"Removed {name} from the index.")
    result: SearchResult | None = st.session_state.get("search_result")
    if result is not None:
        result.segments = [s for s in result.segments if s.video_id != video_id]
