"""Metadata and topics in the index, on every backend: manifests (CSV with the 560k-clip set's columns,
JSON lines, bad rows), precedence of sources, full-text search in English and Chinese, filters, hybrid
ranking that beats frames and text alone, zero-shot topics and time per topic. No Flow, no model."""

from __future__ import annotations

import numpy as np
import pytest
from index_helpers import SynthVideo, unit
from test_index_library import BACKENDS, Disk, backend_options

from clipseek.index import Library, open_backend
from clipseek.index.metadata import (
    MetadataError,
    container_fields,
    parse_where,
    query_terms,
    read_manifest,
    tokens,
)
from clipseek.index.topics import DEFAULT_VOCABULARY, Label, Vocabulary


@pytest.fixture(params=list(BACKENDS))
def make_library(request, tmp_path):
    opened: list[Library] = []

    def make() -> Library:
        options = backend_options(request.param, tmp_path)
        library = Library(open_backend(options.pop("name"), tmp_path / "ws", **options), exists=Disk())
        opened.append(library)
        return library

    yield make
    for library in opened:
        try:
            library.close()
        except Exception:  # closed by the test already
            pass


SET_CSV = """mp4_id,video_label,mp4_time,mp4_txt_brief,mp4_background_image_url
80328682,Beach,12.5,夕阳下的海滩，一对情侣在散步,https://example.org/80328682.jpg
80328683,Wedding,30,婚礼现场，新娘走进教堂,https://example.org/80328683.jpg
,News,10,no id on this row,
80328684,City,not-a-number,城市的夜景,
"""


def test_the_short_video_sets_columns_work_without_a_mapping_and_bad_rows_are_reported():
    rows, errors = read_manifest(SET_CSV, "csv")
    assert [r.match for r in rows] == ["stem:80328682", "stem:80328683"]
    assert rows[0].fields == {"source_id": "80328682", "category": "Beach", "declared_duration_s": 12.5,
                              "description": "夕阳下的海滩，一对情侣在散步",
                              "cover": "https://example.org/80328682.jpg"}
    assert len(errors) == 2
    assert errors[0].startswith("line 4: ") and "neither a path nor an id" in errors[0]
    assert errors[1].startswith("line 5: ") and "declared_duration_s must be a number" in errors[1]


def test_json_lines_with_paths_a_column_mapping_and_broken_lines(tmp_path):
    text = "\n".join([
        '{"file": "clips/a.mp4", "headline": "A day at the beach", "tags": "sea, sand"}',
        "{not json",
        '["a list"]',
        '{"path": "/media/b.mp4", "headline": "Snow", "mood": "calm"}',
    ])
    rows, errors = read_manifest(text, "jsonl", mapping={"headline": "title"}, base=tmp_path)
    assert [r.match for r in rows] == [f"path:{tmp_path / 'clips' / 'a.mp4'}", "path:/media/b.mp4"]
    assert rows[0].fields == {"title": "A day at the beach", "tags": ["sea", "sand"]}
    assert rows[1].fields == {"title": "Snow", "mood": "calm"}
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3"]
    with pytest.raises(MetadataError, match="unknown manifest format"):
        read_manifest("", "xml")


def test_words_are_tokenised_for_english_and_chinese():
    assert tokens("海滩婚礼 at Sunset") == ["海滩", "滩婚", "婚礼", "at", "Sunset"]
    assert query_terms("一只狗跳进泳池") == ["只狗", "狗跳", "跳进", "进泳", "泳池"]  # 一只 is a stop word
    assert query_terms("a dog jumps into a pool") == ["dog", "jumps", "pool"]
    assert container_fields({"TITLE": "Holiday", "comment": "Us at the lake", "encoder": "x264"}) == {
        "title": "Holiday", "description": "Us at the lake"}
    assert parse_where(["category=Beach", "video_label=Wedding"]) == {"category": "Wedding"}
    with pytest.raises(MetadataError, match="FIELD=VALUE"):
        parse_where(["category"])


def index(library, name, path=None, seed=0, **extra):
    video = SynthVideo(name, shots=2, seed=seed)
    assert library.index_range(video.upload(path=path or f"/media/{name}.mp4", **extra)).status == "indexed"
    return video


def test_metadata_waits_for_its_video_attaches_when_it_is_indexed_and_survives_a_restart(make_library):
    library = make_library()
    rows, _ = read_manifest(SET_CSV, "csv")
    report = library.import_metadata(rows)
    assert (report.rows, report.videos, report.waiting) == (2, 0, 2)
    video = index(library, "v1", path="/media/set/80328682.mp4")
    assert library.metadata([video.video_id])[video.video_id]["category"] == "Beach"
    library.close()
    library = make_library()
    assert library.metadata([video.video_id])[video.video_id]["description"].startswith("夕阳下的海滩")
    again = library.import_metadata(read_manifest("mp4_id,video_label\n80328682,Sunset\n", "csv")[0])
    assert again.videos == 1 and library.metadata([video.video_id])[video.video_id]["category"] == "Sunset"


def test_a_manifest_beats_a_sidecar_which_beats_the_files_own_tags(make_library):
    library = make_library()
    video = index(library, "layered", path="/media/layered.mp4",
                  container_meta={"title": "from the file", "description": "tagged by the camera"},
                  sidecar_meta={"title": "from the sidecar", "category": "Nature"})
    meta = library.metadata([video.video_id])[video.video_id]
    assert meta == {"title": "from the sidecar", "description": "tagged by the camera", "category": "Nature"}
    library.import_metadata(read_manifest('{"path": "/media/layered.mp4", "title": "from the manifest"}', "jsonl")[0])
    assert library.metadata([video.video_id])[video.video_id]["title"] == "from the manifest"


def test_text_search_finds_videos_by_their_words_in_english_and_chinese(make_library):
    library = make_library()
    a = index(library, "beach", seed=1)
    b = index(library, "wedding", seed=2)
    index(library, "nothing", seed=3)
    library.import_metadata(read_manifest(
        '{"path": "/media/beach.mp4", "title": "Sunset beach", "description": "夕阳下的海滩"}\n'
        '{"path": "/media/wedding.mp4", "title": "Weddings in June", "description": "婚礼现场"}', "jsonl")[0])
    for text, want in [("wedding", b), ("海滩", a), ("婚礼", b), ("sunset", a)]:
        hits = library.search(a.centres[0], top_k=3, text=text, mode="text")
        assert hits and hits[0].record.video_id == want.video_id, text
        assert hits[0].match == "text" and hits[0].text_score > 0
    assert library.search(a.centres[0], top_k=3, text="volcano", mode="text") == []


def test_filters_on_fields_tags_and_topics(make_library):
    library = make_library()
    a, b = index(library, "a", seed=1), index(library, "b", seed=2)
    library.import_metadata(read_manifest(
        '{"path": "/media/a.mp4", "category": "Beach", "tags": ["sea", "Sunset"]}\n'
        '{"path": "/media/b.mp4", "category": "City", "tags": ["night"]}', "jsonl")[0])
    for where, want in [({"category": "beach"}, {"a"}), ({"tags": "sunset"}, {"a"}), ({"category": "City"}, {"b"}),
                        ({"category": "Beach", "tags": "night"}, set())]:
        hits = library.search(b.centres[0], top_k=5, where=where)
        assert {h.record.video_id for h in hits} == want, where
    # topics: a two-label vocabulary whose "vectors" are the first shot of a and of b
    vocabulary = Vocabulary((Label("first-of-a", "", ("p",)), Label("first-of-b", "", ("q",))))
    assert library.set_vocabulary(vocabulary, np.stack([a.centres[0], b.centres[0]])) == 4
    table = {t.video_id: t for t in library.topic_table()}
    assert table["a"].seconds["first-of-a"] >= 3.0 and table["b"].main in ("first-of-b", "first-of-a")
    hits = library.search(a.centres[0], top_k=5, where={"topic": "first-of-a"})
    assert hits and all(h.topic == "first-of-a" for h in hits)
    c = index(library, "c", seed=1)  # same shots as a: tagged as it arrives
    assert {t.topic for t in library.shot_topics(c.video_id)} <= {"first-of-a", "first-of-b"}
    assert library.shot_topics(c.video_id)


def test_hybrid_search_finds_what_the_words_know_and_what_the_frames_show_and_beats_each(make_library):
    """Six concepts. For each, one video shows it with no words about it, another has words about it
    while its frames show something unrelated (what a model cannot see, e.g. a wedding for the demo
    model). Recall@2 of the two relevant videos: frames alone 0.5, text alone 0.5, hybrid 1.0."""
    library = make_library()
    rng = np.random.default_rng(7)
    concepts = ["harbour", "festival", "glacier", "market", "vineyard", "stadium"]
    directions = unit(rng.normal(size=(len(concepts), 32)))
    rows = []
    for i, concept in enumerate(concepts):
        shown = SynthVideo(f"shows-{concept}", shots=2, seed=100 + i)
        shown.vectors = unit(directions[i] + 0.05 * rng.normal(size=shown.vectors.shape))
        library.index_range(shown.upload())
        told = SynthVideo(f"told-{concept}", shots=2, seed=200 + i)  # its frames: random directions
        library.index_range(told.upload())
        rows.append(f'{{"path": "{told.path}", "title": "The {concept}", "description": "a day at the {concept}"}}')
    library.import_metadata(read_manifest("\n".join(rows), "jsonl")[0])
    recall = {}
    for mode in ("frames", "text", "hybrid"):
        found = 0
        for i, concept in enumerate(concepts):
            hits = library.search(directions[i], top_k=2, text=f"the {concept}", mode=mode)
            found += len({h.record.video_id for h in hits} & {f"shows-{concept}", f"told-{concept}"})
        recall[mode] = found / (2 * len(concepts))
    assert recall["frames"] == pytest.approx(0.5) and recall["text"] == pytest.approx(0.5)
    assert recall["hybrid"] == 1.0
    auto = library.search(directions[0], top_k=2, text="the harbour")  # with metadata present: hybrid
    assert {h.record.video_id for h in auto} == {"shows-harbour", "told-harbour"}
    assert any("text" in h.match for h in auto)
    with pytest.raises(Exception, match="mode must be"):
        library.search(directions[0], top_k=2, mode="fuzzy")


def test_the_default_vocabulary_has_31_labels_in_english_and_chinese():
    assert len(DEFAULT_VOCABULARY.labels) == 31
    assert all(label.zh and label.prompts for label in DEFAULT_VOCABULARY.labels)
    assert DEFAULT_VOCABULARY.label("海滩").name == "Beach"
    assert len({label.name for label in DEFAULT_VOCABULARY.labels}) == 31
