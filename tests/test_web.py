"""The web page (web/app.py) driven in-process by Streamlit's AppTest against a real Flow on free ports.

The Flow runs the demo model when its weights are shipped, else the tiny random test model: these tests
check what the page shows (states, cards, times, confirmations), not what the model understands.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import re
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from synth import Segment, make_video

from clipseek.api.client import ClipseekClient
from clipseek.engine.serve import BackgroundFlow, ServeSettings
from clipseek.errors import MediaPathError
from clipseek.media.video import probe
from clipseek.settings import describe

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WEB_DIR = REPO / "web"
DEMO_WEIGHTS = REPO / "clipseek" / "demo" / "model" / "clipseek-demo.safetensors"
TINY_MODEL = REPO / "tests" / "fixtures" / "clipseek-tiny.json"  # random weights: fast plumbing
APP = str(WEB_DIR / "app.py")
SEARCH = "FormSubmitter:search_form-Search"
INDEX = "FormSubmitter:index_path_form-Index"
CLIP_TIME = re.compile(r"`(\d\d:\d\d\.\d)–(\d\d:\d\d\.\d)`")


def load_page() -> types.SimpleNamespace:
    """The page's modules (web/app.py and its screens; ``main()`` only runs under Streamlit), their names
    in one namespace: ``page.escape_md``, ``page.clips``, ``page.WebSettings``, ..."""
    spec = importlib.util.spec_from_file_location("clipseek_web_page", WEB_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)  # puts web/ on sys.path
    names: dict = {}
    for part in ("common", "search_page", "library_page", "add_page"):
        names.update(vars(importlib.import_module(part)))
    names.update(vars(module))
    return types.SimpleNamespace(**{k: v for k, v in names.items() if not k.startswith("__")})


page = load_page()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A media root: two colour videos with known cuts, a broken file, and a folder for uploads."""
    root = tmp_path_factory.mktemp("web_media")
    (root / "clips").mkdir()
    make_video(root / "clips" / "colours.mp4", [Segment("red", 2.0), Segment("blue", 2.0), Segment("green", 2.0)])
    make_video(root / "clips" / "second.mp4", [Segment("white", 1.5), Segment("yellow", 1.5)])
    (root / "broken").mkdir()
    (root / "broken" / "broken.mp4").write_bytes(bytes((i * 7919 + 13) % 251 for i in range(20_000)))
    (root / "uploads").mkdir()
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def flow(media, tmp_path_factory) -> str:
    """A real Flow on free ports (the demo model if shipped, else the tiny random one); its HTTP address."""
    settings = ServeSettings(grpc_port=free_port(), http_port=free_port())
    overrides = {"media_roots": [str(media)], "workspace": str(tmp_path_factory.mktemp("web_ws"))}
    if DEMO_WEIGHTS.is_file():
        overrides.update(model="demo", pretrained=None)  # the demo model's own checkpoint
    else:
        overrides.update(model=str(TINY_MODEL), pretrained="none")
    with BackgroundFlow(settings, overrides) as running:
        yield running.http


@pytest.fixture
def client(flow) -> ClipseekClient:
    return ClipseekClient(flow)


@pytest.fixture
def page_env(flow, media, monkeypatch):
    monkeypatch.setenv("CLIPSEEK_ADDRESS", flow)
    monkeypatch.setenv("CLIPSEEK_MEDIA_ROOTS", str(media))
    monkeypatch.setenv("CLIPSEEK_UPLOAD_DIR", str(media / "uploads"))


def ensure_indexed(client: ClipseekClient, media: Path) -> None:
    report = client.index([str(media / "clips")])
    assert not report.failed, report.failed


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def search(at: AppTest, text: str, top_k: int = 12, videos: list[str] | None = None) -> AppTest:
    at.text_input(key="query").set_value(text)
    at.number_input(key="top_k").set_value(top_k)
    at.multiselect(key="video_filter").set_value(videos or [])
    at.button(key=SEARCH).click().run()
    assert not at.exception, at.exception
    return at


def card_titles(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if re.match(r"\*\*\d+\. ", m.value)]


# -- states -----------------------------------------------------------------------------------------

def test_unreachable_flow_names_the_address_and_how_to_start_it(monkeypatch):
    address = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CLIPSEEK_ADDRESS", address)
    at = open_page()
    assert address in at.error[0].value
    assert any("clipseek serve" in m.value for m in at.markdown)
    assert at.button(key="retry")
    assert not at.tabs  # nothing else is shown
    assert at.sidebar.text_input(key="address").value == address


def test_empty_library_says_how_to_add_videos(client, page_env):
    for video in client.videos():
        client.delete(video.video_id)
    at = open_page()
    infos = [i.value for i in at.info]
    assert any("Nothing is indexed yet" in i and "clipseek index" in i for i in infos), infos
    assert not [t for t in at.text_input if t.key == "query"]  # no search box on an empty library


def test_search_shows_cards_with_exact_times_scores_thumbnails_and_actions(client, media, page_env):
    ensure_indexed(client, media)
    at = search(open_page(), "a red screen", top_k=4)
    expected = client.search("a red screen", top_k=4)
    titles = card_titles(at)
    assert len(titles) == len(expected) >= 2
    for rank, (title, segment) in enumerate(zip(titles, expected, strict=True), 1):
        assert title.startswith(f"**{rank}. {page.escape_md(Path(segment.video).name)}**")
        start, end = CLIP_TIME.search(title).groups()
        assert (start, end) == (page.format_time(segment.start_s), page.format_time(segment.end_s))
    captions = [c.value for c in at.caption]
    assert f"{len(expected)} clips for “a red screen”, best first" in captions
    assert any(f"score {expected[0].score:.3f}" in c for c in captions)
    assert len(at.tabs[0].get("imgs")) == len(expected)  # one best-frame thumbnail a card (Search tab)
    assert len(at.get("download_button")) == len(expected)
    assert [b.label for b in at.button if b.key.startswith("play_")] == ["Play"] * len(expected)


def test_top_k_and_the_video_filter_limit_the_cards(client, media, page_env):
    ensure_indexed(client, media)
    second = next(v for v in client.videos() if v.path.endswith("second.mp4"))
    at = search(open_page(), "a yellow screen", top_k=1)
    assert len(card_titles(at)) == 1
    search(at, "a yellow screen", top_k=10, videos=[second.video_id])
    titles = card_titles(at)
    assert titles and all("second\\.mp4" in t for t in titles)
    assert any("in the selected videos" in c.value for c in at.caption)


def test_play_starts_the_original_at_the_whole_second_before_the_clip(client, media, page_env):
    ensure_indexed(client, media)
    at = search(open_page(), "a blue screen", top_k=6)
    segments = client.search("a blue screen", top_k=6)
    rank, segment = next(((i, s) for i, s in enumerate(segments, 1) if s.start_s % 1), (1, segments[0]))
    at.button(key=f"play_{rank}").click().run()
    video = at.get("video")
    assert len(video) == 1 and video[0].proto.autoplay
    assert video[0].proto.start_time == int(segment.start_s)  # st.video drops fractions: start before
    assert video[0].proto.end_time >= segment.end_s
    exact = f"{page.format_time(segment.start_s)}–{page.format_time(segment.end_s)}"
    assert any(f"Plays {page.whole_seconds(int(segment.start_s))}–" in c.value and exact in c.value
               for c in at.caption)
    assert at.button(key=f"play_{rank}").label == "Stop"
    at.button(key=f"play_{rank}").click().run()
    assert not at.get("video")


def test_large_originals_are_played_as_a_frame_accurate_cut(client, media, page_env, monkeypatch):
    monkeypatch.setenv("CLIPSEEK_PLAYER_MAX_MB", "0")
    ensure_indexed(client, media)
    at = search(open_page(), "a blue screen", top_k=1)
    segment = client.search("a blue screen", top_k=1)[0]
    at.button(key="play_1").click().run()
    assert not at.exception, at.exception
    video = at.get("video")
    assert len(video) == 1 and video[0].proto.start_time == 0 and not video[0].proto.end_time
    exact = f"{page.format_time(segment.start_s)}–{page.format_time(segment.end_s)}"
    assert any(f"Plays the cut clip {exact}" in c.value for c in at.caption)
    folder = at.session_state["clip_folder"].path
    assert [p.name for p in folder.iterdir()] == [page.clips.clip_file_name(segment.video, segment.start_s,
                                                                             segment.end_s)]


def test_a_bad_query_and_no_results_are_explained(client, media, page_env):
    ensure_indexed(client, media)
    at = search(open_page(), "   ")
    assert "Cannot search for that" in at.warning[0].value and "empty" in at.warning[0].value
    assert not card_titles(at)

    def no_results(web_dir: str) -> None:
        import sys

        sys.path.insert(0, web_dir)
        import app

        request = app.SearchRequest("a purple elephant", 10, ["some-video"])
        app.results_ui(app.SearchResult(request, []), {}, "http://unused", app.WebSettings())

    at = AppTest.from_function(no_results, args=(str(WEB_DIR),)).run()
    assert "No clips match “a purple elephant” in the selected videos" in at.info[0].value


def test_a_search_that_fails_in_the_flow_is_reported(monkeypatch):
    def search_a_closed_port(web_dir: str, address: str) -> None:
        import sys

        sys.path.insert(0, web_dir)
        import app

        assert app.run_search(app.ClipseekClient(address), app.SearchRequest("a red circle", 5, [])) is None

    address = f"http://127.0.0.1:{free_port()}"
    at = AppTest.from_function(search_a_closed_port, args=(str(WEB_DIR), address)).run()
    assert not at.exception, at.exception
    assert "The search failed: cannot reach the clipseek Flow" in at.error[0].value


def test_a_wrong_setting_is_reported(monkeypatch):
    monkeypatch.setenv("CLIPSEEK_UPLOAD_MAX_MB", "lots")
    at = open_page()
    assert "A setting of the page is wrong: CLIPSEEK_UPLOAD_MAX_MB must be int, got 'lots'" in at.error[0].value


def test_the_clip_folder_goes_away_with_the_session(client, media, page_env):
    ensure_indexed(client, media)
    at = search(open_page(), "a green screen", top_k=2)
    folder = at.session_state["clip_folder"].path
    assert folder.is_dir()
    del at  # Streamlit drops a session's state when the session ends
    gc.collect()
    assert not folder.exists()


def test_demo_model_notice_follows_the_model_of_the_index(client, media, page_env):
    ensure_indexed(client, media)
    serves_demo = any(v.model == page.DEMO_MODEL_NAME for v in client.videos())
    at = open_page()
    assert any("Demo model in use" in i.value for i in at.info) == serves_demo

    def demo_notice(web_dir: str) -> None:
        import sys

        sys.path.insert(0, web_dir)
        import app

        from clipseek.docs import VideoDoc

        app.demo_notice_ui([VideoDoc(model="clipseek-demo")])

    at = AppTest.from_function(demo_notice, args=(str(WEB_DIR),)).run()
    assert "only its synthetic vocabulary of coloured shapes" in at.info[0].value
    assert "a red circle" in at.info[0].value


def test_delete_asks_first_and_then_removes_the_video(client, media, page_env):
    ensure_indexed(client, media)
    second = next(v for v in client.videos() if v.path.endswith("second.mp4"))
    at = open_page()
    at.selectbox(key="delete_choice").set_value(second.video_id)
    at.button(key="delete_ask").click().run()
    assert "Remove **second\\.mp4** from the index?" in at.warning[0].value
    assert second.video_id in {v.video_id for v in client.videos()}  # nothing happened yet
    at.button(key="delete_no").click().run()
    assert not at.warning
    at.button(key="delete_ask").click().run()
    at.button(key="delete_yes").click().run()
    assert not at.exception, at.exception
    assert any("Removed second.mp4 from the index" in s.value for s in at.success)
    assert second.video_id not in {v.video_id for v in client.videos()}
    library = at.dataframe[0].value
    assert "second.mp4" not in set(library["Video"])


def test_library_lists_duration_shots_frames_and_when_indexed(client, media, page_env):
    ensure_indexed(client, media)
    library = open_page().dataframe[0].value
    videos = {Path(v.path).name: v for v in client.videos()}
    assert set(library["Video"]) == set(videos)
    row = library[library["Video"] == "colours.mp4"].iloc[0]
    assert row["Duration"] == "00:06.0"
    assert row["Shots"] == videos["colours.mp4"].num_shots == 3
    assert row["Frames"] == videos["colours.mp4"].num_frames > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row["Indexed"])


def test_indexing_a_folder_shows_each_file_and_why_one_failed(client, media, page_env):
    at = open_page()
    at.text_input(key="index_path").set_value(str(media))
    at.button(key=INDEX).click().run()
    assert not at.exception, at.exception
    assert "1 failed" in at.error[0].value
    table = at.dataframe[-1].value
    broken = table[table["File"] == "broken.mp4"].iloc[0]
    assert broken["Result"] == "failed" and "not a readable video" in broken["Reason"]
    assert set(table[table["Result"] != "failed"]["File"]) == {"colours.mp4", "second.mp4"}


def test_uploads_are_off_when_the_upload_folder_is_outside_the_media_folders(page_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPSEEK_UPLOAD_DIR", str(tmp_path))
    at = open_page()
    assert any("Uploads are off" in i.value and "not under a media folder" in i.value for i in at.info)


# -- the page's helpers, without a Flow ---------------------------------------------------------------

def mean_rgb(video: Path, time_s: float) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{time_s:.3f}", "-i", str(video),
                          "-frames:v", "1", "-s", "8x8", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).mean(axis=0)


def test_download_clip_is_cut_frame_accurately_and_replaced_then_removed(media):
    folder = page.clips.ClipFolder()
    source = media / "clips" / "colours.mp4"  # red 0-2 s, blue 2-4 s, green 4-6 s, no keyframe after 0
    first = folder.clip(source, 1.5, 2.5)
    info = probe(first)
    assert info.num_frames == 25 and abs(info.duration_s - 1.0) < 0.05
    assert mean_rgb(first, 0.0).argmax() == 0  # starts red: not snapped back to a keyframe
    assert mean_rgb(first, 0.9).argmax() == 2  # ends blue
    assert folder.clip_bytes(source, 1.5, 2.5) == first.read_bytes()
    second = folder.clip(source, 4.0, 5.0)
    assert list(folder.path.iterdir()) == [second]  # a new clip replaces the last one
    assert second.name == "colours_00m04.0s-00m05.0s.mp4"
    folder.cleanup()
    assert not folder.path.exists() and folder.removed


def test_player_window_covers_the_clip_in_whole_seconds():
    assert page.clips.player_window(3.5, 8.9) == (3, 9)
    assert page.clips.player_window(0.0, 0.04) == (0, 1)
    assert page.clips.player_window(4.0, 6.0) == (4, 6)
    assert page.clips.clip_label(3.5, 8.9) == "00:03.5–00:08.9"


def test_uploads_are_stored_once_by_content_and_must_be_videos(media, tmp_path):
    uploads = page.uploads
    folder = tmp_path / "uploads"
    data = (media / "clips" / "second.mp4").read_bytes()
    with open(media / "clips" / "second.mp4", "rb") as handle:
        stored = uploads.store_upload("My holiday!.mp4", handle, len(data), folder, 10 * 2**20)
    assert stored.is_new and stored.path.read_bytes() == data
    assert re.fullmatch(r"[0-9a-f]{16}-My_holiday\.mp4", stored.path.name)
    with open(media / "clips" / "second.mp4", "rb") as handle:
        again = uploads.store_upload("copy.MP4", handle, len(data), folder, 10 * 2**20)
    assert not again.is_new and again.path == stored.path
    assert [p.name for p in folder.iterdir()] == [stored.path.name]  # no part files left behind
    cases = [("notes.txt", b"hello", "not a video extension"),
             ("fake.mp4", b"\x00" * 1000, "not a readable video"),
             ("big.mp4", data, "over the upload limit")]
    for name, content, message in cases:
        with open(tmp_path / "content", "wb") as handle:
            handle.write(content)
        with open(tmp_path / "content", "rb") as handle, pytest.raises(uploads.UploadError, match=message):
            uploads.store_upload(name, handle, len(content), folder, 100 if name == "big.mp4" else 2**20)
    assert [p.name for p in folder.iterdir()] == [stored.path.name]


def test_upload_folder_is_in_a_media_folder_or_the_workspace_by_default(tmp_path):
    (tmp_path / "media").mkdir()
    assert page.uploads.upload_folder("", [str(tmp_path / "media")]) == (tmp_path / "media" / "uploads").resolve()
    with pytest.raises(MediaPathError, match="not under a media folder"):
        page.uploads.upload_folder(str(tmp_path / "elsewhere"), [str(tmp_path / "media")])
    # no setting at all: <workspace>/uploads, which clipseek serve makes one of the Flow's media folders
    workspace = str(tmp_path / "ws")
    assert page.uploads.upload_folder("", [], workspace) == (tmp_path / "ws" / "uploads").resolve()
    with pytest.raises(MediaPathError, match="not under a media folder"):
        page.uploads.upload_folder(str(tmp_path / "elsewhere"), [], workspace)


def test_add_videos_is_on_with_no_setting_and_the_developer_toolbar_is_off(flow, monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPSEEK_ADDRESS", flow)
    for name in ("CLIPSEEK_MEDIA_ROOTS", "CLIPSEEK_UPLOAD_DIR", "CLIPSEEK_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    at = open_page()
    assert not [i for i in at.info if "Uploads are off" in i.value]
    expected = (tmp_path / "workspace" / "uploads").resolve()
    assert any(f"Stored in `{expected}`" in c.value for c in at.caption), [c.value for c in at.caption]
    from streamlit import config

    assert config.get_option("client.toolbarMode") == "viewer"  # no "Deploy" button for users


def test_the_page_sends_the_api_key_and_says_when_the_flow_refuses_it(monkeypatch):
    import http.server
    import threading

    seen = []

    class RefusingFlow(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server name)
            seen.append((self.path, self.headers.get("Authorization")))
            body = b'{"detail": "missing or wrong API key"}'
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), RefusingFlow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("CLIPSEEK_ADDRESS", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("CLIPSEEK_API_KEY", "the-page-key")
        at = open_page()
    finally:
        server.shutdown()
    assert seen and seen[0] == ("/videos", "Bearer the-page-key")
    assert any("missing or wrong API key" in e.value for e in at.error), [e.value for e in at.error]


def test_readme_documents_every_page_setting():
    readme = (WEB_DIR / "README.md").read_text()
    for env, _type, default in describe(page.WebSettings):
        assert f"`{env}`" in readme, f"{env} is not documented in web/README.md"
        if default not in ("", []):
            assert f"`{default}`" in readme, f"the default of {env} ({default}) is not in web/README.md"
