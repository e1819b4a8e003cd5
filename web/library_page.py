"""The Library screen: what is indexed, and deleting a video."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st
from common import NOTHING_INDEXED, escape_md, flash, video_names
from search_page import SearchResult

from clipseek.api.client import ClipseekClient
from clipseek.api.format import format_time
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
    delete_ui(client, names)


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
