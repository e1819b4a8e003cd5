"""The Library screen's browsing (web/library_page.py) driven headless by Streamlit's AppTest against a real
Flow: groups by category and by topic with their counts, a card per video (cover, title, brief, tags,
time per topic, topic strip), the library's time-per-topic chart, tagging the shots from the page.

What the model makes of the pictures is tests/test_words_flow.py's; here only what the page shows of it.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from synth import Segment, make_video

from clipseek.api.client import ClipseekClient
from clipseek.engine.serve import BackgroundFlow, ServeSettings
from clipseek.index.metadata import read_manifest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "web" / "app.py")
DEMO_WEIGHTS = REPO / "clipseek" / "demo" / "model" / "clipseek-demo.safetensors"
TINY_MODEL = REPO / "tests" / "fixtures" / "clipseek-tiny.json"
MANIFEST = """path,title,brief,category,tags
sea.mp4,Sunset walk,"A couple walks along the beach, then the sun sets",Beach,sunset|couple
dune.mp4,Dunes,Sand and wind,Beach,
party.mp4,The first dance,婚礼上的第一支舞,Wedding,dance
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("library_media")
    make_video(root / "sea.mp4", [Segment("blue", 2.0), Segment("orange", 2.0)])
    make_video(root / "dune.mp4", [Segment("yellow", 2.0)])
    make_video(root / "party.mp4", [Segment("white", 1.5), Segment("red", 1.5), Segment("green", 1.5)])
    make_video(root / "plain.mp4", [Segment("purple", 2.0)])  # no metadata
    return root


@pytest.fixture(scope="module")
def client(media, tmp_path_factory) -> ClipseekClient:
    settings = ServeSettings(grpc_port=free_port(), http_port=free_port())
    overrides = {"media_roots": [str(media)], "workspace": str(tmp_path_factory.mktemp("library_ws"))}
    if DEMO_WEIGHTS.is_file():
        overrides.update(model="demo", pretrained=None)
    else:
        overrides.update(model=str(TINY_MODEL), pretrained="none")
    with BackgroundFlow(settings, overrides) as running:
        client = ClipseekClient(running.http)
        assert not client.index([str(media)]).failed
        rows, errors = read_manifest(MANIFEST, "csv", base=media)
        assert not errors and {a.status for a in client.import_metadata(rows)} == {"attached"}
        yield client


@pytest.fixture
def page(client, media, monkeypatch) -> AppTest:
    monkeypatch.setenv("CLIPSEEK_ADDRESS", client.address)
    monkeypatch.setenv("CLIPSEEK_MEDIA_ROOTS", str(media))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def strips(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if 'class="topic-strip"' in m.value]


def test_browse_by_category_with_counts_cards_and_tagging_from_the_page(client, page):
    assert set(page.dataframe[0].value["Video"]) == {"sea.mp4", "dune.mp4", "party.mp4", "plain.mp4"}
    categories = page.selectbox(key="browse_category")
    assert categories.options == ["Beach (2)", "Wedding (1)", "(no category) (1)"]
    assert categories.value == "Beach"
    text = "\n".join(m.value for m in page.markdown)
    assert "**Sunset walk**" in text and "**Dunes**" in text and "first dance" not in text
    assert "A couple walks along the beach, then the sun sets" in text
    assert any("Beach · tags: sunset, couple" in c.value for c in page.caption)
    assert len(page.get("imgs")) == 2  # a cover per card (the Flow's thumbnail: no cover of their own)
    assert not strips(page)  # no topics yet: a button offers them
    assert any("No shot is tagged with a topic yet" in c.value for c in page.caption)

    page.button(key="tag_topics").click().run()
    assert not page.exception, page.exception
    assert any("Every shot is tagged" in s.value for s in page.success)
    labels = [label.name for label in client.vocabulary()]
    assert labels and not [b for b in page.button if b.key == "tag_topics"]
    assert len(page.get("vega_lite_chart")) == 3  # the library's time per topic and each card's
    drawn = strips(page)
    shots = [len(client.videos([v.video_id])[0].shots) for v in client.videos()
             if Path(v.path).name in ("sea.mp4", "dune.mp4")]
    assert sorted(len(re.findall(r"<span ", s)) for s in drawn) == sorted(shots)
    assert all(re.search(r'title="(\w+) \d\d:\d\d\.\d', s).group(1) in labels for s in drawn)
    assert sum(c.value.startswith("Time per topic: ") for c in page.caption) == 2

    page.selectbox(key="browse_category").set_value("(no category)").run()
    assert any("suggested category: " in c.value for c in page.caption)  # plain.mp4: its main topic
    assert "**plain\\.mp4**" in "\n".join(m.value for m in page.markdown)


def test_browse_by_topic_groups_every_tagged_video_by_its_main_topic(client, page):
    client.ensure_vocabulary()
    page.radio(key="browse_by").set_value("topic").run()
    assert not page.exception, page.exception
    groups = page.selectbox(key="browse_topic").options
    counts = [int(re.search(r"\((\d+)\)$", g).group(1)) for g in groups]
    assert sum(counts) == len(client.videos()) and counts == sorted(counts, reverse=True)
    main_topics = {v.topics[0].name for v in client.videos()}  # most first (a tie: the first listed)
    assert {re.sub(r" \(\d+\)$", "", g) for g in groups} == main_topics


def test_the_search_form_filters_by_category_and_field_and_matches_on_words(client, page):
    """With metadata, the Search screen offers what to match on and a category/topic/field filter; the
    cards then come only from the videos the filter keeps, and a words-only match says so."""
    assert page.selectbox(key="search_category").options == ["(any)", "Beach", "Wedding"]
    page.text_input(key="query").set_value("a blue circle")
    page.selectbox(key="search_category").set_value("Wedding")
    page.button(key="FormSubmitter:search_form-Search").click().run()
    assert not page.exception, page.exception
    cards = [m.value for m in page.markdown if re.match(r"\*\*\d+\. ", m.value)]
    assert cards and all("party\\.mp4" in c for c in cards), cards
    assert any("where category=Wedding" in c.value for c in page.caption)

    page.selectbox(key="search_category").set_value("(any)")
    page.text_input(key="search_where").set_value("tags=sunset")
    page.selectbox(key="search_mode").set_value("text")
    page.text_input(key="query").set_value("couple beach")
    page.button(key="FormSubmitter:search_form-Search").click().run()
    assert not page.exception, page.exception
    cards = [m.value for m in page.markdown if re.match(r"\*\*\d+\. ", m.value)]
    assert cards and all("sea\\.mp4" in c for c in cards), cards
    assert any("Sunset walk" in c.value and "found by text" in c.value for c in page.caption)
    expected = client.search("couple beach", where=["tags=sunset"], mode="text")
    assert len(cards) == len(expected)
