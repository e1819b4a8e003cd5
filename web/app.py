"""clipseek's web page: find the moment in your videos that matches a sentence, play it, download it,
and manage the library.

    streamlit run web/app.py --server.maxUploadSize 2048 --browser.gatherUsageStats false

The page is a client of a running Flow (``clipseek serve``) through :mod:`clipseek.api.client`; it holds no
search logic of its own. Settings come from the environment (``CLIPSEEK_ADDRESS``, ...): see
``web/README.md``. Playing and downloading clips read the video files, so those two need the page to
run where the videos are (the Flow's media folders); search, thumbnails and the library do not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from clipseek.api.client import ClipseekClient
from clipseek.docs import VideoDoc
from clipseek.errors import ClipseekError, FlowUnavailableError
from clipseek.settings import load_settings

PAGE_DIR = str(Path(__file__).resolve().parent)
if PAGE_DIR not in sys.path:  # `streamlit run` puts the page's folder on sys.path; AppTest does not
    sys.path.insert(0, PAGE_DIR)

# the screens (tests/test_web.py reaches some of their parts as app.*)
from add_page import add_videos_ui  # noqa: E402, F401
from common import WebSettings, demo_notice_ui, flash_ui, get_client  # noqa: E402, F401
from library_page import library_ui  # noqa: E402, F401
from search_page import SearchRequest, SearchResult, results_ui, run_search, search_ui  # noqa: E402, F401


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
