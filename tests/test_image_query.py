"""A picture as the query, "more like this" and confidence through the real Flow (demo model, HTTP and
gRPC): a frame of a shot finds that shot first; a stored frame finds its own clip first; a concept in no
video is never more than "low"; bad pictures are refused by name and the service keeps serving."""

import base64
import io
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import REPO, indexed_demo_engine
from PIL import Image

from clipseek.api.client import ClipseekClient
from clipseek.demo import vocab
from clipseek.errors import QueryError
from clipseek.media.query_image import ImageLimits, decode_base64, query_pixels, read_query_file

pytestmark = pytest.mark.slow

sys.path.insert(0, str(REPO / "tools"))
from make_demo_videos import main as make_demo_videos  # noqa: E402


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


# -- the picture's checks (clipseek.media.query_image), no Flow --------------------------------------------
def test_pictures_of_every_common_kind_are_letterboxed_like_video_frames():
    for mode, fmt in (("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"), ("1", "PNG"), ("P", "GIF"),
                      ("L", "WEBP"), ("RGB", "BMP"), ("RGB", "TIFF")):
        pixels = query_pixels(encoded(Image.new(mode, (40, 30)), fmt), 64)
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8, (mode, fmt)
    wide = query_pixels(encoded(Image.new("RGB", (80, 40), (255, 0, 0))), 64)
    assert wide[32, 32].tolist() == [255, 0, 0] and wide[2, 32].tolist() == [0, 0, 0]  # black bars above/below


def test_a_phone_photo_is_turned_the_way_up_its_exif_says():
    tall = Image.new("RGB", (30, 60), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: rotate 90 degrees clockwise to show it
    sideways = encoded(tall.rotate(90, expand=True), "JPEG", exif=exif.tobytes())
    pixels = query_pixels(sideways, 60)
    assert pixels[30, 30, 2] > 200 and pixels[30, 2].tolist() == [0, 0, 0]  # tall again: bars left and right


def test_bad_pictures_are_refused_with_what_is_wrong(tmp_path):
    with pytest.raises(QueryError, match="empty \\(0 bytes\\)"):
        query_pixels(b"", 64)
    with pytest.raises(QueryError, match="not an image"):
        query_pixels(b"GIF89a but not really", 64)
    with pytest.raises(QueryError, match="broken or truncated"):
        query_pixels(encoded(Image.new("RGB", (400, 300)), "JPEG")[:300], 64)
    with pytest.raises(QueryError, match="over the limit of 1000 bytes"):
        query_pixels(b"x" * 1001, 64, ImageLimits(max_bytes=1000))
    with pytest.raises(QueryError, match="not valid base64"):
        decode_base64("not base64!")
    assert decode_base64("data:image/png;base64," + base64.b64encode(b"abc").decode()) == b"abc"
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "a.png").write_bytes(encoded(Image.new("RGB", (4, 4))))
    (tmp_path / "roots" / "out").symlink_to(tmp_path)
    (tmp_path / "secret.png").write_bytes(b"")
    assert read_query_file("a.png", [str(tmp_path / "roots")])[:4] == b"\x89PNG"
    with pytest.raises(QueryError, match="outside the media folders"):
        read_query_file(str(tmp_path / "roots" / "out" / "secret.png"), [str(tmp_path / "roots")])
    with pytest.raises(QueryError, match="not a file"):
        read_query_file(str(tmp_path / "roots"), [str(tmp_path / "roots")])


# -- through the Flow ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    videos = tmp_path_factory.mktemp("demo-videos")
    truth = make_demo_videos([str(videos), "--videos", "6", "--quiet"])
    with indexed_demo_engine(videos, tmp_path_factory.mktemp("demo-ws")) as running:
        yield running, ClipseekClient(running.http), ClipseekClient(running.grpc), videos, truth


def unique_shots(truth: dict) -> list[tuple[str, dict]]:
    """(file, shot) of the shots whose concept is in no other shot of the library, 1 s or longer."""
    count = Counter((s["shape"], s["colour"]) for v in truth["videos"] for s in v["shots"])
    return [(v["file"], s) for v in truth["videos"] for s in v["shots"]
            if count[(s["shape"], s["colour"])] == 1 and s["end_s"] - s["start_s"] >= 1.0]


def test_a_frame_of_a_shot_finds_that_shot_first(flow):
    _, http, grpc, videos, truth = flow
    shots = unique_shots(truth)
    assert len(shots) >= 10
    for i, (file, shot) in enumerate(shots):
        middle = (shot["start_s"] + shot["end_s"]) / 2
        picture = http.thumbnail(str(videos / file), middle, width_px=320)
        best = (grpc if i % 2 else http).search(image=picture, top_k=3)[0]
        assert best.video.endswith(file) and best.start_s <= middle <= best.end_s, (file, shot, best)
        assert best.level == "high", (file, shot, best.score, best.confidence)


def test_words_and_a_picture_are_weighed_by_image_weight(flow):
    _, http, grpc, videos, truth = flow
    (file_a, shot_a), (file_b, shot_b) = unique_shots(truth)[0], unique_shots(truth)[-1]
    middle_a, middle_b = ((s["start_s"] + s["end_s"]) / 2 for s in (shot_a, shot_b))
    picture_a = http.thumbnail(str(videos / file_a), middle_a, width_px=320)
    words_b = vocab.caption(shot_b["shape"], shot_b["colour"])
    for weight, (file, middle) in ((0.9, (file_a, middle_a)), (0.1, (file_b, middle_b))):
        for client in (http, grpc):
            best = client.search(words_b, image=picture_a, image_weight=weight, top_k=1)[0]
            assert best.video.endswith(file) and best.start_s <= middle <= best.end_s, (weight, best)
    with pytest.raises(QueryError, match="image_weight must be a number from 0 to 1, got 1.5"):
        http.search(words_b, image=picture_a, image_weight=1.5)


def test_a_picture_under_the_media_roots_is_read_by_path_and_one_outside_is_refused(flow, tmp_path):
    _, http, _, videos, truth = flow
    file, shot = unique_shots(truth)[0]
    middle = (shot["start_s"] + shot["end_s"]) / 2
    picture = http.thumbnail(str(videos / file), middle, width_px=320)
    (videos / "query.jpg").write_bytes(picture)
    best = http.search(image_path=str(videos / "query.jpg"), top_k=1)[0]
    assert best.video.endswith(file) and best.start_s <= middle <= best.end_s
    (tmp_path / "outside.jpg").write_bytes(picture)
    with pytest.raises(QueryError, match="outside the media folders"):
        http.search(image_path=str(tmp_path / "outside.jpg"))


def test_bad_pictures_are_refused_by_name_and_search_goes_on(flow):
    _, http, grpc, videos, truth = flow
    (videos / "empty.jpg").write_bytes(b"")
    huge = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(huge, format="PNG")  # 100 MP, a few KB
    cases = [({"image_path": str(videos / "empty.jpg")}, "empty \\(0 bytes\\)"),
             ({"image": b""}, "empty \\(0 bytes\\)"),
             ({"image": b"this is not a picture" * 10}, "not an image"),
             ({"image": huge.getvalue()}, "10000x10000 \\(100 MP\\), over the limit"),
             ({"image_path": "/etc/passwd"}, "outside the media folders"),
             ({"image_path": str(videos / "missing.png")}, "no such file")]
    for client in (http, grpc):
        for fields, message in cases:
            with pytest.raises(QueryError, match=message):
                client.search(**fields)
    assert http.search("a red circle", top_k=1) and grpc.search("a red circle", top_k=1)


def test_more_like_this_returns_the_clip_itself_first(flow):
    _, http, grpc, videos, truth = flow
    for _, shot in unique_shots(truth)[:8]:
        found = http.search(vocab.caption(shot["shape"], shot["colour"]), top_k=1)[0]
        for client in (http, grpc):
            like = client.more_like(found.video_id, found.thumbnail_s, top_k=3)
            assert (like[0].video_id, like[0].start_s, like[0].end_s) == (found.video_id, found.start_s, found.end_s)
            assert like[0].level == "high"
    with pytest.raises(QueryError, match="no indexed video matches 'nope'"):
        http.more_like("nope", 3.0)


def test_absent_concepts_are_never_more_than_low_and_present_ones_are_high(flow):
    _, http, grpc, _, truth = flow
    present = {(s["shape"], s["colour"]) for v in truth["videos"] for s in v["shots"]}
    absent = [c for c in vocab.CONCEPTS if (c.shape, c.colour) not in present]
    assert len(absent) >= 5
    for concept in absent:
        hits = http.search(concept.caption, top_k=5)
        assert all(h.level == "low" for h in hits), (concept, [(h.score, h.confidence) for h in hits])
        assert grpc.search(concept.caption, top_k=5, min_confidence="medium") == []
    for file, shot in unique_shots(truth):
        best = http.search(vocab.caption(shot["shape"], shot["colour"]), top_k=1)[0]
        assert best.level == "high", (file, shot, best.score, best.confidence)


def test_words_the_demo_model_never_learned_find_nothing_confident(flow):
    """Queries of words outside the demo vocabulary and outside the training words of steps 4 and 5
    (tools/tune_demo_unknown.py, tools/tune_demo_chinese.py; the offline demo's "a brown horse" and
    "一匹棕色的马" among them) match nothing in the library: nothing above "low"."""
    _, http, grpc, _, _ = flow
    for text in ("a brown horse", "a black cat", "sunset over the sea", "a wedding", "a spaceship",
                 "一匹棕色的马", "海滩上的日落", "婚礼", "航拍城市"):
        hits = http.search(text, top_k=5)
        assert hits and all(h.level == "low" for h in hits), (text, [(h.score, h.confidence) for h in hits])
        assert grpc.search(text, top_k=5, min_confidence="medium") == []


def test_the_cli_searches_with_a_picture_and_says_when_nothing_is_confident(flow, tmp_path):
    running, http, _, videos, truth = flow
    file, shot = unique_shots(truth)[0]
    picture = tmp_path / "photo.jpg"
    picture.write_bytes(http.thumbnail(str(videos / file), (shot["start_s"] + shot["end_s"]) / 2, width_px=320))
    cli = [sys.executable, "-m", "clipseek", "--address", running.http, "search"]
    out = subprocess.run([*cli, "--image", str(picture), "--top-k", "1"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and file in out.stdout and " high " in out.stdout, out.stdout + out.stderr
    present = {(s["shape"], s["colour"]) for v in truth["videos"] for s in v["shots"]}
    absent = next(c for c in vocab.CONCEPTS if (c.shape, c.colour) not in present)
    out = subprocess.run([*cli, absent.caption, "--min-confidence", "medium"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and "no results at medium confidence or above" in out.stdout, out.stdout
    out = subprocess.run([*cli, absent.caption], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "no result is confident" in out.stdout, out.stdout
    out = subprocess.run([*cli, "--image", str(tmp_path / "nothing.jpg")], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 2 and "nothing.jpg" in out.stderr, out.stderr


# -- the page (web/search_page.py) driven by Streamlit's AppTest against the same Flow ----------------------
SEARCH = "FormSubmitter:search_form-Search"


def open_page(flow, monkeypatch):
    from streamlit.testing.v1 import AppTest

    running, _, _, videos, _ = flow
    monkeypatch.setenv("CLIPSEEK_ADDRESS", running.http)
    monkeypatch.setenv("CLIPSEEK_MEDIA_ROOTS", str(videos))
    at = AppTest.from_file(str(REPO / "web" / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def page_search(at, text: str = "", confidence: str = "low", picture: bytes | None = None):
    at.text_input(key="query").set_value(text)
    at.select_slider(key="min_confidence").set_value(confidence)
    at.file_uploader(key="query_picture").set_value(("shot.jpg", picture, "image/jpeg") if picture else None)
    at.button(key=SEARCH).click().run()
    assert not at.exception, at.exception
    return at


def card_titles(at) -> list[str]:
    return [m.value.replace("\\", "") for m in at.markdown if m.value.startswith("**") and ". " in m.value]


def test_the_page_searches_with_a_picture_shows_badges_and_more_like_this(flow, monkeypatch):
    _, http, _, videos, truth = flow
    file, shot = unique_shots(truth)[0]
    middle = (shot["start_s"] + shot["end_s"]) / 2
    at = page_search(open_page(flow, monkeypatch), picture=http.thumbnail(str(videos / file), middle, width_px=320))
    titles = card_titles(at)
    assert titles and file in titles[0], titles
    assert any("the picture shot.jpg" in c.value.replace("\\", "") for c in at.caption)
    badges = [m.value for m in at.markdown if "confidence (" in m.value]
    assert len(badges) == len(titles) and "high confidence" in badges[0], badges
    like = [b for b in at.button if b.key.startswith("like_")]
    assert len(like) == len(titles)
    like[0].click().run()
    assert not at.exception, at.exception
    assert file in card_titles(at)[0] and any("clips like" in c.value for c in at.caption)


def test_the_page_says_plainly_when_no_result_is_confident(flow, monkeypatch):
    _, _, _, _, truth = flow
    present = {(s["shape"], s["colour"]) for v in truth["videos"] for s in v["shots"]}
    absent = next(c for c in vocab.CONCEPTS if (c.shape, c.colour) not in present)
    at = page_search(open_page(flow, monkeypatch), absent.caption)
    assert card_titles(at) and any("No result is confident" in w.value for w in at.warning)
    at = page_search(at, absent.caption, confidence="medium")
    assert not card_titles(at) and any("with medium confidence or above" in i.value for i in at.info)
    at = page_search(at, picture=b"not a picture")
    assert any("Cannot search for that" in w.value and "not an image" in w.value for w in at.warning)
