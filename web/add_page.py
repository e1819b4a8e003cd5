"""The Add videos screen: uploads (stored under a media folder) and folders, indexed with progress."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import uploads  # web/uploads.py
from common import WebSettings

from clipseek.api.client import ClipseekClient, IndexOutcome
from clipseek.api.format import format_time
from clipseek.errors import ClipseekError, MediaPathError
from clipseek.media.roots import VIDEO_EXTENSIONS

OUTCOME_LABELS = {"indexed": "indexed", "unchanged": "already indexed", "failed": "failed"}


def outcome_row(outcome: IndexOutcome) -> dict[str, str]:
    return {
        "File": Path(outcome.path).name or outcome.path,
        "Result": OUTCOME_LABELS.get(outcome.status, outcome.status),
        "Duration": format_time(outcome.duration_s) if outcome.duration_s else "",
        "Shots": str(outcome.num_shots or ""),
        "Frames": str(outcome.num_frames or ""),
        "Reason": outcome.error.removeprefix(outcome.path + ": "),
    }


def add_videos_ui(client: ClipseekClient, settings: WebSettings) -> bool:
    """Upload files or name a folder; index them with a progress bar; show what happened to each file.
    Returns whether anything was indexed (the library then has to be read again)."""
    upload_col, folder_col = st.columns(2, gap="large")
    with upload_col:
        files = upload_form_ui(settings)
    with folder_col:
        folder = folder_form_ui()
    indexed = False
    if files:
        stored, failed = store_uploads(files, settings)
        indexed = index_ui(client, [str(s.path) for s in stored], force=False, failed=failed)
    elif folder is not None:
        indexed = index_ui(client, [folder[0]], force=folder[1], failed=[])
    last_index_ui()
    return indexed


def upload_limit_mb(settings: WebSettings) -> int:
    # Streamlit's server refuses bodies over server.maxUploadSize whatever the widget allows.
    return max(1, min(settings.upload_max_mb, int(st.get_option("server.maxUploadSize"))))


def upload_form_ui(settings: WebSettings) -> list:
    """Returns the uploaded files once, when the form is submitted (the form then clears them)."""
    st.markdown("#### Upload videos")
    try:
        folder = uploads.upload_folder(settings.upload_dir, settings.media_roots, settings.workspace)
    except MediaPathError as exc:
        st.info(f"Uploads are off: {exc}. Leave CLIPSEEK_UPLOAD_DIR unset (uploads then go to the Flow's "
                f"<workspace>/uploads), or set it to a folder inside CLIPSEEK_MEDIA_ROOTS.",
                icon=":material/folder_off:")
        return []
    limit_mb = upload_limit_mb(settings)
    note = ""
    if limit_mb < settings.upload_max_mb:
        note = (f" (CLIPSEEK_UPLOAD_MAX_MB is {settings.upload_max_mb} MB, but Streamlit's server takes "
                f"{limit_mb} MB: start it with `--server.maxUploadSize {settings.upload_max_mb}`)")
    st.caption(f"Stored in `{folder}`, once per content, then indexed. Up to {limit_mb} MB a file{note}.")
    with st.form("upload", border=False, clear_on_submit=True):
        files = st.file_uploader("Video files", type=[e.lstrip(".") for e in VIDEO_EXTENSIONS],
                                 accept_multiple_files=True, max_upload_size=limit_mb, key="upload_files")
        submitted = st.form_submit_button("Upload and index", type="primary")
    return list(files or []) if submitted else []


def folder_form_ui() -> tuple[str, bool] | None:
    """Returns (path, force) when the form is submitted with a path."""
    st.markdown("#### Index a folder or file")
    st.caption("A path on the Flow's machine, inside its media folders (or relative to one). Folders are "
               "indexed recursively; videos already indexed are skipped.")
    with st.form("index_path_form", border=False):
        path = st.text_input("Folder or file", key="index_path", placeholder="/videos/holiday")
        force = st.checkbox("Index again even if already indexed", key="index_force")
        submitted = st.form_submit_button("Index")
    if not submitted:
        return None
    if not path.strip():
        st.warning("Type a folder or a file to index.")
        return None
    return path.strip(), force


def store_uploads(files: list, settings: WebSettings) -> tuple[list[uploads.StoredUpload], list[IndexOutcome]]:
    folder = uploads.upload_folder(settings.upload_dir, settings.media_roots, settings.workspace)
    stored: list[uploads.StoredUpload] = []
    failed: list[IndexOutcome] = []
    with st.spinner(f"Storing {len(files)} upload{'s' if len(files) != 1 else ''}…"):
        for file in files:
            try:
                stored.append(uploads.store_upload(file.name, file, file.size, folder,
                                                   upload_limit_mb(settings) * 2**20))
            except (ClipseekError, OSError) as exc:
                failed.append(IndexOutcome(file.name, "failed", error=str(exc).removeprefix(file.name + ": ")))
    return stored, failed


def index_ui(client: ClipseekClient, paths: list[str], force: bool, failed: list[IndexOutcome]) -> bool:
    """Index ``paths`` with a progress bar and a live table; keep the outcomes for last_index_ui.
    Returns whether any video was indexed."""
    rows = [outcome_row(o) for o in failed]
    bar = st.progress(0.0, text="Looking at the files…")
    table = st.empty()

    def on_progress(path: str, done_s: float, total_s: float) -> None:
        bar.progress(min(1.0, done_s / total_s) if total_s else 1.0,
                     text=f"Indexing {Path(path).name}: {done_s:.0f} of {total_s:.0f} s of video")

    def on_file(outcome: IndexOutcome) -> None:
        rows.append(outcome_row(outcome))
        table.dataframe(rows, hide_index=True, width="stretch")

    outcomes = list(failed)
    try:
        if paths:
            outcomes += client.index(paths, force=force, on_progress=on_progress, on_file=on_file).outcomes
    except ClipseekError as exc:
        st.error(f"Indexing stopped: {exc}")
    bar.empty()
    table.empty()
    st.session_state["index_outcomes"] = outcomes
    return any(o.status == "indexed" for o in outcomes)


def last_index_ui() -> None:
    outcomes: list[IndexOutcome] | None = st.session_state.get("index_outcomes")
    if not outcomes:
        return
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("indexed", "unchanged", "failed")}
    st.markdown("#### Last indexing")
    summary = f"{counts['indexed']} indexed, {counts['unchanged']} already indexed, {counts['failed']} failed"
    if counts["failed"]:
        st.error(f"{summary}: the reasons are in the table.", icon=":material/error:")
    else:
        st.success(summary, icon=":material/check_circle:")
    st.dataframe([outcome_row(o) for o in outcomes], hide_index=True, width="stretch")
