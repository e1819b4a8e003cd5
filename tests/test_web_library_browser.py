"""The Library screen's browsing in a real browser (headless Chromium, the Flow and the page as processes:
the fixtures of tests/test_web_browser.py): the topic strips render as coloured segments along each
video's timeline, the time-per-topic charts draw, and the groups carry their counts."""

from __future__ import annotations

import re

import pytest
from test_web_browser import flow, media, page, page_url, workspace  # noqa: F401 (fixtures)

from clipseek.index.metadata import MetadataRow

pytestmark = pytest.mark.slow


def test_library_browse_draws_topic_strips_and_charts(page, flow, media):  # noqa: F811
    videos = sorted(flow.videos(), key=lambda v: v.path)
    first = videos[0]
    rows = [MetadataRow(f"path:{first.path}", {"title": "Lanterns at the harbour", "category": "Festival",
                                                 "description": "灯笼和船"})]
    rows += [MetadataRow(f"path:{v.path}", {"category": f"Travel {i}"}) for i, v in enumerate(videos[1:])]
    assert {a.status for a in flow.import_metadata(rows)} == {"attached"}
    page.reload()
    page.get_by_text("Connected").wait_for()
    page.get_by_role("tab", name="Library").click()
    page.get_by_role("button", name="Tag every shot with a topic").click()
    page.get_by_text("Every shot is tagged").wait_for()  # in the Library tab, which stays open

    page.get_by_text("Lanterns at the harbour").wait_for()  # Festival (1): the first of groups of one
    page.get_by_text("灯笼和船").wait_for()  # drawn after the title as the page streams in (is_visible raced it)
    strip = page.locator(".topic-strip").first
    strip.wait_for()
    segments = strip.locator("span")
    shots = flow.videos([first.video_id])[0].shots
    assert segments.count() == len(shots)
    widths = [segments.nth(i).bounding_box()["width"] for i in range(segments.count())]
    total = strip.bounding_box()["width"]
    durations = [s.end_s - s.start_s for s in shots]
    for width, duration in zip(widths, durations, strict=True):  # each segment as long as its shot
        assert width == pytest.approx(total * duration / first.duration_s, abs=2.0)
    colours = {segments.nth(i).evaluate("e => getComputedStyle(e).backgroundColor") for i in range(len(shots))}
    assert len(colours) == len({s.topic for s in shots})  # a colour per topic
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    charts.first.wait_for()
    assert charts.count() == 2  # the library's time per topic and the card's

    page.get_by_text("Topic", exact=True).click()  # browse by topic: the groups are the videos' main topics
    chosen = page.locator('[data-testid="stSelectbox"]').filter(has_text=re.compile(r"^Topic(?! of the shot)"))
    chosen.wait_for()
    main_topics = {v.topics[0].name for v in flow.videos() if v.topics}
    assert re.search(r"(\w+) \((\d+)\)", chosen.inner_text()).group(1) in main_topics
    page.locator(".topic-strip").first.wait_for()
