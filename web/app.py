"""clipseek's web page: find the moment in your videos that matches a sentence, play it, download it,
and manage the library.

    streamlit run web/app.py --server.maxUploadSize 2048 --browser.gatherUsageStats false

The page is a client of a running Flow (``clipseek serve``) through :mod:`clipseek.api.client`; it holds no
search logic of its own. Settings come from the environment (``CLIPSEEK_ADDRESS``, ...): see
``web/README.md``. Playing and downloading clips read the video files, so those two need the page to
run where the videos are (the Flow's media folders); search, thumbnails and the library do not.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import streamlit as st

from clipseek.api.cli import format_time
from clipseek.api.client import DEFAULT_ADDRESS, ClipseekClient, IndexOutcome
from clipseek.demo import MODEL_NAME as DEMO_MODEL_NAME
from clipseek.demo.vocab import COLOURS, SHAPES
from clipseek.docs import Segment, VideoDoc
from clipseek.errors import ClipseekError, FlowUnavailableError, MediaPathError, QueryError
from clipseek.media.roots import DEFAULT_WORKSPACE, VIDEO_EXTENSIONS
from clipseek.settings import load_settings

PAGE_DIR = str(Path(__file__).resolve().parent)
if PAGE_DIR not in sys.path:  # `streamlit run` puts the page's folder on sys.path; AppTest does not
    sys.path.insert(0, PAGE_DIR)

import clips  # noqa: E402  (web/clips.py)
import uploads  # noqa: E402  (web/uploads.py)

CARDS_PER_ROW = 4
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

@st.cache_resource(show_spinner=False)
def get_client(address: str, api_key: str) -> ClipseekClient:
    return ClipseekClient(address, api_key=api_key)


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


def segment_key(segment: Segment) -> str:
    return f"{segment.video_id}@{segment.start_s:.3f}-{segment.end_s:.3f}"


# -- page parts -------------------------------------------------------------------------------------

def sidebar_ui(settings: WebSettings) -> str:
    """The Flow's address, editable; returns the one to use."""
    with st.sidebar:
        st.title(":material/movie: clipseek")
        st.caption("Find the moment in your videos that matches a sentence.")
        address = st.text_input("Flow address", value=settings.address, key="address",
                                help="The clipseek gateway: http://host:port (HTTP, 51001 by default) or "
                                     "grpc://host:port. Default: $CLIPSEEK_ADDRESS.")
    return address.strip() or settings.address


def connect_ui(client: ClipseekClient) -> list[VideoDoc] | None:
    """The indexed videos, or None (with the reason on the page) when the Flow cannot be asked."""
    try:
        return client.videos()
    except FlowUnavailableError:
        st.error(f"The clipseek Flow is not reachable at `{client.address}`.", icon=":material/power_off:")
        st.markdown("Start it with `clipseek serve` (HTTP on port 51001, gRPC on 51000 by default), "
                    "or put the right address in the sidebar.")
    except ClipseekError as exc:
        st.error(f"The clipseek Flow at {client.address} answered with an error: {exc}")
    st.button("Try again", key="retry")
    return None


def status_ui(videos: list[VideoDoc]) -> None:
    models = sorted({v.model for v in videos if v.model})
    with st.sidebar:
        plural = "s" if len(videos) != 1 else ""
        st.success(f"Connected · {len(videos)} video{plural} indexed", icon=":material/check_circle:")
        if models:
            st.caption(f"Model: {', '.join(models)}")


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


def main() -> None:
    # Users do not need Streamlit's developer toolbar (the "Deploy" button, rerun, clear cache); also set in
    # .streamlit/config.toml, which takes effect before the first page is drawn.
    st.set_option("client.toolbarMode", "viewer")
    st.set_page_config(page_title="clipseek", page_icon=":material/movie:", layout="wide")
    try:
        settings = load_settings(WebSettings)
    except ValueError as exc:
        st.error(f"A setting of the page is wrong: {exc}", icon=":material/error:")
        return
    address = sidebar_ui(settings)
    client = get_client(address, settings.api_key)
    videos = connect_ui(client)
    if videos is None:
        return
    flash_ui()
    search_tab, library_tab, add_tab = st.tabs(["Search", "Library", "Add videos"])
    # The "Add videos" tab is drawn first: when it indexes something, the other tabs and the sidebar
    # show the library as it is afterwards.
    with add_tab:
        if add_videos_ui(client, settings):
            videos = connect_ui(client) or []
    status_ui(videos)
    with search_tab:
        search_ui(client, videos, address, settings)
    with library_tab:
        library_ui(client, videos)


if __name__ == "__main__":
    main()
