"""The web page in a real browser: ``clipseek serve`` and ``streamlit run web/app.py`` run as processes,
headless Debian Chromium (/usr/bin/chromium) is driven by Playwright with explicit waits.

Set CLIPSEEK_SCREENSHOT_OUT=docs/screenshot.png to also write the screenshot there. With the demo model
shipped (clipseek/demo/model/clipseek-demo.safetensors) the Flow runs it and the top result must be a
shot of the asked concept; without it the tiny random model checks the page only.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from synth import Segment, make_video

from clipseek.api.client import ClipseekClient
from clipseek.api.format import format_time
from clipseek.media.video import content_hash, probe

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "web" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DEMO_WEIGHTS = REPO / "clipseek" / "demo" / "model" / "clipseek-demo.safetensors"
TINY_MODEL = REPO / "tests" / "fixtures" / "clipseek-tiny.json"
VIEWPORT = {"width": 1440, "height": 1000}
WAIT_MS = 60_000

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (never `playwright install`)")
if not CHROMIUM.is_file():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A process in a session of its own, so stop() ends it with every child it started."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd or log.parent, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_until(ready, process: subprocess.Popen, log: Path, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.3)
    pytest.fail(f"{what} was not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def streamlit_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok"
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A media root with demo videos (and their truth.json)."""
    root = tmp_path_factory.mktemp("browser_media")
    subprocess.run([sys.executable, str(REPO / "tools" / "make_demo_videos.py"), str(root / "demo"), "--videos", "3",
                    "--quiet"], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser_flow") / "ws"


@pytest.fixture(scope="module")
def flow(media, workspace) -> Iterator[ClipseekClient]:
    """``clipseek serve`` on free ports with the demo videos indexed."""
    folder = workspace.parent
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLIPSEEK_MEDIA_ROOTS": str(media),
           "CLIPSEEK_WORKSPACE": str(workspace),
           "CLIPSEEK_GRPC_PORT": str(grpc_port), "CLIPSEEK_HTTP_PORT": str(http_port),
           "JINA_OPTOUT_TELEMETRY": "1", "JINA_HIDE_SURVEY": "1", "HF_HUB_OFFLINE": "1"}
    if DEMO_WEIGHTS.is_file():
        env["CLIPSEEK_MODEL"] = "demo"
        env.pop("CLIPSEEK_PRETRAINED", None)  # the demo model's own checkpoint
    else:
        env["CLIPSEEK_MODEL"], env["CLIPSEEK_PRETRAINED"] = str(TINY_MODEL), "none"
    log = folder / "flow.log"
    process = start([sys.executable, "-m", "clipseek", "serve"], env, log)
    client = ClipseekClient(f"http://127.0.0.1:{http_port}")
    try:
        wait_until(client.is_ready, process, log, 180, "clipseek serve")
        report = client.index([str(media / "demo")])
        assert not report.failed, report.failed
        yield client
    finally:
        stop(process)


@pytest.fixture(scope="module")
def page_url(flow, workspace, tmp_path_factory) -> Iterator[str]:
    """``streamlit run web/app.py`` on a free port, pointed at the Flow, as a user starts it from the top of
    the checkout: no upload or toolbar settings (the page's defaults and .streamlit/config.toml), the
    Flow's workspace the same (as when both run from the same folder)."""
    folder = tmp_path_factory.mktemp("browser_page")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CLIPSEEK_MEDIA_ROOTS", "CLIPSEEK_UPLOAD_DIR")}
    env.update(CLIPSEEK_ADDRESS=flow.address, CLIPSEEK_WORKSPACE=str(workspace), PYTHONPATH=str(REPO))
    log = folder / "streamlit.log"
    process = start([sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
                     "--server.port", str(port), "--server.address", "127.0.0.1",
                     "--server.fileWatcherType", "none"], env, log, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: streamlit_healthy(url), process, log, 60, "streamlit run web/app.py")
        yield url
    finally:
        stop(process)


@pytest.fixture
def page(page_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            tab.set_default_timeout(WAIT_MS)
            tab.goto(page_url)
            tab.get_by_text("Connected").wait_for()
            yield tab
        finally:
            browser.close()


def query_and_truth(media: Path, serves_demo: bool) -> tuple[str, list[dict]]:
    """A query, and (with the demo model) the shots of the demo videos that show it."""
    truth = json.loads((media / "demo" / "truth.json").read_text())
    shots = [dict(shot, file=video["file"]) for video in truth["videos"] for shot in video["shots"]]
    longest = max(shots, key=lambda s: s["end_s"] - s["start_s"])
    query = longest["caption"] if serves_demo else "a red circle"
    return query, [s for s in shots if s["caption"] == query]


def card(page, rank: int):
    return page.locator(f".st-key-card_{rank}")


def image_of(page, locator) -> np.ndarray:
    src = locator.get_attribute("src")
    response = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + "/" + src.lstrip("/"))
    assert response.ok, src
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"), dtype=np.float32)


def test_search_play_and_download_a_moment_in_the_browser(page, flow, media, tmp_path):
    serves_demo = any(v.model == "clipseek-demo" for v in flow.videos())
    query, truth_shots = query_and_truth(media, serves_demo)
    expected = flow.search(query, top_k=12)

    box = page.get_by_label("Describe the moment")
    box.click()
    box.press_sequentially(query)
    box.press("Enter")  # the search is a form: Enter submits it
    page.get_by_text(f"{len(expected)} clips for “{query}”, best first").wait_for()
    page.wait_for_function("""n => { const imgs = [...document.querySelectorAll('[class*="st-key-card_"] img')];
        return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }""", arg=len(expected))

    # Each card: rank and file name, the exact times, the score, a best-frame thumbnail.
    for rank, segment in enumerate(expected, 1):
        text = card(page, rank).inner_text()
        assert f"{rank}. {Path(segment.video).name}" in text
        assert f"{format_time(segment.start_s)}–{format_time(segment.end_s)}" in text
        assert f"score {segment.score:.3f}" in text
    best = expected[0]
    shown = image_of(page, card(page, 1).locator("img"))
    frame = np.asarray(Image.open(io.BytesIO(flow.thumbnail(best.video, best.thumbnail_s))).convert("RGB"),
                       dtype=np.float32)
    assert shown.shape == frame.shape and np.abs(shown - frame).mean() < 8  # the frame at thumbnail_s
    assert shown.mean() > 20  # not a black frame
    if serves_demo:  # the demo model finds the asked shape: the top clip overlaps a shot of it
        assert any(Path(best.video).name == s["file"] and best.start_s < s["end_s"] and s["start_s"] < best.end_s
                   for s in truth_shots), (best, truth_shots)

    # Play: the player replaces the thumbnail and starts at the whole second before the clip.
    rank, segment = next(((i, s) for i, s in enumerate(expected, 1) if s.start_s % 1), (1, best))
    card(page, rank).get_by_role("button", name="Play").click()
    video = card(page, rank).locator("video")
    video.wait_for()
    page.wait_for_function("""() => { const v = document.querySelector('video');
        return v && v.readyState >= 1 && !v.error; }""")
    start_whole, end_whole = math.floor(segment.start_s), math.ceil(segment.end_s)
    current_s = video.evaluate("v => { v.pause(); return v.currentTime; }")
    assert start_whole - 0.01 <= current_s <= end_whole + 0.5, (current_s, segment)
    assert current_s < segment.start_s + 1.5  # it did not start from the beginning of a later part
    caption = card(page, rank).inner_text()
    assert f"Plays {start_whole // 60:02d}:{start_whole % 60:02d}–" in caption
    assert f"the clip is {format_time(segment.start_s)}–{format_time(segment.end_s)}" in caption

    # For the screenshot, show the clip's best frame in the player (the whole second before a clip can
    # be the end of the previous shot, or black in a fade).
    video.evaluate("""(v, t) => new Promise(done => { v.addEventListener('seeked', done, {once: true});
        v.currentTime = t; })""", segment.thumbnail_s)
    screenshot = tmp_path / "web.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 20_000
    if os.environ.get("CLIPSEEK_SCREENSHOT_OUT"):
        shutil.copyfile(screenshot, os.environ["CLIPSEEK_SCREENSHOT_OUT"])

    # Download: a frame-accurate cut of exactly the clip's times.
    with page.expect_download() as download_info:
        card(page, rank).get_by_role("button", name="Clip").click()
    download = download_info.value
    clip = tmp_path / download.suggested_filename
    download.save_as(clip)
    info = probe(clip)
    assert clip.name.endswith(".mp4") and Path(segment.video).stem in clip.name
    assert abs(info.duration_s - (segment.end_s - segment.start_s)) <= 0.05, (info.duration_s, segment)


def test_an_upload_is_stored_and_indexed_once_with_the_default_settings(page, flow, workspace, tmp_path):
    upload = tmp_path / "my holiday.mp4"
    make_video(upload, [Segment("purple", 1.5), Segment("orange", 1.5)])
    same_content = tmp_path / "holiday again.mp4"
    shutil.copyfile(upload, same_content)
    digest = content_hash(upload)
    page.get_by_role("tab", name="Add videos").click()
    page.get_by_text("Up to 2048 MB a file").wait_for()  # .streamlit/config.toml raised Streamlit's 200 MB
    for file, summary in [(upload, "1 indexed, 0 already indexed, 0 failed"),
                          (same_content, "0 indexed, 1 already indexed, 0 failed")]:
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(file))
        page.locator('[data-testid="stFileUploaderDropzone"]').get_by_text(file.name).wait_for()
        page.get_by_role("button", name="Upload and index").click()
        page.get_by_text(summary).wait_for()
        stored = [p.name for p in (workspace / "uploads").iterdir()]
        assert stored == [f"{digest[:16]}-my_holiday.mp4"], (file.name, stored)  # stored once
    assert sum(v.content_hash == digest for v in flow.videos()) == 1  # indexed once


def test_the_page_shows_no_developer_toolbar(page):
    page.get_by_role("tab", name="Search").wait_for()
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0
