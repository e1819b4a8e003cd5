"""Each executor on its own, without a Flow: config loads, empty and malformed input, bad files."""

import numpy as np
import pytest
from conftest import REPO, TINY_MODEL
from docarray import DocList
from jina import Executor

from clipseek.docs import Frame, Query, Thumbnail, VideoDoc


def load(name: str, **uses_with):
    return Executor.load_config(str(REPO / "services" / name / "config.yml"), uses_with=uses_with)


@pytest.fixture(scope="module")
def loader(media_dir):
    return load("video_loader", media_roots=[str(media_dir)], frame_size_px=32)


@pytest.fixture(scope="module")
def image_encoder():
    return load("image_encoder", model=TINY_MODEL, pretrained="none")


@pytest.fixture(scope="module")
def text_encoder():
    return load("text_encoder", model=TINY_MODEL, pretrained="none")


@pytest.fixture()
def indexer(tmp_path):
    return load("indexer", workspace=str(tmp_path / "ws"))


def test_each_config_loads_with_its_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPSEEK_MEDIA_ROOTS", str(tmp_path))
    loader = load("video_loader")
    assert loader.settings.max_gap_s == 10.0 and loader.media.size_px == 224  # ViT-B-32 input
    assert loader.media.roots == [tmp_path.resolve()]
    assert load("indexer", workspace=str(tmp_path / "w")).settings.max_top_k == 100
    with pytest.raises(ValueError, match="unknown setting|must be"):
        load("indexer", workspace=str(tmp_path / "w"), max_top_k="lots")
    assert loader.settings.hwaccel == "auto"
    monkeypatch.setenv("CLIPSEEK_HWACCEL", "gpu")
    with pytest.raises(ValueError, match=r"CLIPSEEK_HWACCEL.*one of auto, cuda, none, got 'gpu'"):
        load("video_loader")


def test_empty_requests_pass_through_every_executor(loader, image_encoder, text_encoder, indexer):
    assert len(loader.load(DocList[VideoDoc]())) == 0
    assert len(image_encoder.encode(DocList[VideoDoc]())) == 0
    assert len(text_encoder.encode(DocList[Query]())) == 0
    assert len(indexer.index(DocList[VideoDoc]())) == 0
    assert len(indexer.search(DocList[Query]())) == 0
    assert indexer.videos(DocList[VideoDoc]()) == DocList[VideoDoc]()


def test_loader_reports_each_bad_file_and_goes_on(loader, media_dir):
    names = ["bad/empty.mp4", "bad/random_bytes.mp4", "bad/notes.txt", "bad/truncated.mp4", "bad/audio_only.mp4",
             "missing.mp4", "/etc/passwd", "../outside.mp4", "", "cuts.mp4", "one_frame.mp4", "tiny.mp4"]
    docs = loader.load(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / n) if n and not n.startswith(("/", ".."))
                                                   else n) for n in names]))
    errors = {name: doc.error for name, doc in zip(names, docs, strict=True)}
    assert "file is empty" in errors["bad/empty.mp4"]
    assert "not a readable video file" in errors["bad/random_bytes.mp4"]
    assert "not a readable video file" in errors["bad/notes.txt"]
    assert "not a readable video file" in errors["bad/truncated.mp4"]
    assert "no video stream" in errors["bad/audio_only.mp4"]
    assert "no such file" in errors["missing.mp4"]
    assert "outside the media folders" in errors["/etc/passwd"]
    assert "outside the media folders" in errors["../outside.mp4"] or "no such file" in errors["../outside.mp4"]
    assert "empty path" in errors[""]
    for name in names[:9]:
        assert docs[names.index(name)].status == "failed" and not docs[names.index(name)].frames
    for good in ("cuts.mp4", "one_frame.mp4", "tiny.mp4"):
        doc = docs[names.index(good)]
        assert doc.error == "" and doc.status == "decoded" and len(doc.frames) >= 1, (good, doc.error)
        assert doc.frames[0].pixels.shape == (32, 32, 3)
        assert all(s.start_s < s.end_s <= doc.duration_s + 1e-6 for s in doc.shots)


def test_loader_refuses_folders_on_index_and_lists_them_on_probe(loader, media_dir):
    doc = loader.load(DocList[VideoDoc]([VideoDoc(uri=str(media_dir))]))[0]
    assert "is a folder" in doc.error
    probed = loader.probe_videos(DocList[VideoDoc]([VideoDoc(uri=str(media_dir))]))
    found = {d.path.removeprefix(str(media_dir.resolve()) + "/"): d for d in probed}
    assert {"cuts.mp4", "sub/blue.mp4", "one_frame.mp4", "tiny.mp4"} <= set(found)
    assert found["cuts.mp4"].duration_s == pytest.approx(10.0, abs=0.05) and len(found["cuts.mp4"].content_hash) == 64
    assert "file is empty" in found["bad/empty.mp4"].error
    assert "notes.txt" not in " ".join(found)  # not a video extension: not listed


def test_loader_splits_by_time_range_and_caps_the_range(loader, media_dir):
    doc = loader.load(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "cuts.mp4"), start_s=3.0, end_s=6.0)]))[0]
    assert doc.error == "" and doc.shots[0].start_s == 3.0 and not doc.shots[0].starts_at_cut
    assert all(3.0 <= f.time_s < 6.0 for f in doc.frames)
    bad = loader.load(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "cuts.mp4"), start_s=6.0, end_s=3.0)]))[0]
    assert "empty time range" in bad.error
    capped = load("video_loader", media_roots=[str(media_dir)], frame_size_px=32, max_range_s=5.0)
    long = capped.load(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "cuts.mp4"))]))[0]
    assert "at most 5 s per request" in long.error


def test_thumbnail_endpoint_returns_a_jpeg_or_an_error(loader, media_dir):
    docs = loader.thumbnail(DocList[Thumbnail]([Thumbnail(uri=str(media_dir / "cuts.mp4"), time_s=1.0),
                                                Thumbnail(uri="/etc/passwd", time_s=1.0)]))
    import base64
    assert base64.b64decode(docs[0].jpeg_base64)[:2] == b"\xff\xd8"
    assert "outside the media folders" in docs[1].error


def test_image_encoder_embeds_frames_drops_pixels_and_skips_failed_docs(image_encoder):
    ok = VideoDoc(uri="a", frames=DocList[Frame]([Frame(time_s=t, pixels=np.full((32, 32, 3), 40 * t, np.uint8))
                                                 for t in range(3)]))
    failed = VideoDoc(uri="b", error="boom", frames=DocList[Frame]([Frame(time_s=0.0)]))
    no_pixels = VideoDoc(uri="c", frames=DocList[Frame]([Frame(time_s=0.0)]))
    docs = image_encoder.encode(DocList[VideoDoc]([ok, failed, no_pixels]))
    assert all(f.pixels is None and f.embedding.shape == (64,) for f in docs[0].frames)
    assert docs[0].model == "clipseek-tiny [random]" and docs[1].frames[0].embedding is None
    assert docs[2].frames[0].embedding is None


def test_text_encoder_refuses_empty_queries_and_truncates_huge_ones(text_encoder):
    docs = text_encoder.encode(DocList[Query]([Query(text=""), Query(text="   \n"), Query(text="x " * 10000),
                                               Query(text="a red circle")]))
    assert "empty" in docs[0].error and "empty" in docs[1].error and docs[0].embedding is None
    assert docs[2].error == "" and docs[2].embedding.shape == (64,)
    assert docs[3].embedding.shape == (64,)


def test_text_encoder_runs_onnx_runtime_on_onnx_threads_and_refuses_a_negative_count(text_encoder):
    from clipseek.model.onnx_text import OnnxTextModel

    assert isinstance(text_encoder.clip, OnnxTextModel)  # a CPU in fp32: auto picks ONNX Runtime
    options = text_encoder.clip.session.get_session_options()
    assert options.intra_op_num_threads == 2  # the default
    # its threads spin between the operators of a call, and stop when the call returns
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    three = load("text_encoder", model=TINY_MODEL, pretrained="none", onnx_threads=3)
    assert three.clip.session.get_session_options().intra_op_num_threads == 3
    with pytest.raises(ValueError, match="onnx_threads"):
        load("text_encoder", model=TINY_MODEL, pretrained="none", onnx_threads=-1)


def test_indexer_validates_top_k_and_video_filters(indexer, loader, image_encoder, text_encoder, media_dir):
    docs = image_encoder.encode(loader.load(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "cuts.mp4"))])))
    assert indexer.index(docs)[0].status == "indexed"
    queries = [Query(text="x", top_k=0), Query(text="x", top_k=10**6), Query(text="x", video_ids=["nope"]),
               Query(text="x", top_k=3), Query(text="x", video_ids=[str(media_dir / "cuts.mp4")])]
    results = indexer.search(text_encoder.encode(DocList[Query](queries)))
    assert "top_k must be between 1 and 100, got 0" in results[0].error
    assert "got 1000000" in results[1].error
    assert "unknown video(s) in the filter: nope" in results[2].error
    assert results[3].error == "" and 1 <= len(results[3].segments) <= 3
    assert results[4].error == "" and results[4].segments and results[4].embedding is None


def test_indexer_skips_the_same_content_unless_forced_and_deletes(indexer, loader, image_encoder, media_dir):
    def index(**kw):
        docs = loader.load(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "sub" / "blue.mp4"), **kw)]))
        return indexer.index(image_encoder.encode(docs))[0]

    first = index()
    assert first.status == "indexed" and first.num_frames >= 1 and first.already_indexed
    assert index().status == "unchanged"
    assert index(force=True).status == "indexed"
    assert len(indexer.videos(DocList[VideoDoc]([VideoDoc()]))) == 1
    gone = indexer.delete(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "sub" / "blue.mp4")),
                                             VideoDoc(video_id="0123456789abcdef")]))
    assert gone[0].status == "deleted" and "no indexed video matches" in gone[1].error
    assert len(indexer.videos(DocList[VideoDoc]([VideoDoc()]))) == 0


def test_loader_probes_and_hashes_a_file_once_for_all_its_ranges(media_dir, tmp_path, monkeypatch):
    import shutil

    video = tmp_path / "cuts.mp4"
    shutil.copy(media_dir / "cuts.mp4", video)
    from clipseek.media import source

    loader = load("video_loader", media_roots=[str(tmp_path)], frame_size_px=32)
    calls = []
    real_hash = source.content_hash
    monkeypatch.setattr(source, "content_hash", lambda path: calls.append(path) or real_hash(path))
    first = loader.load(DocList[VideoDoc]([VideoDoc(uri=str(video), start_s=0.0, end_s=1.0),
                                           VideoDoc(uri=str(video), start_s=1.0, end_s=2.0)]))
    assert [d.error for d in first] == ["", ""] and len(calls) == 1
    assert first[0].content_hash == first[1].content_hash == real_hash(video)
    shutil.copy(media_dir / "sub" / "blue.mp4", video)  # new content under the same name
    again = loader.load(DocList[VideoDoc]([VideoDoc(uri=str(video))]))[0]
    assert len(calls) == 2 and again.content_hash == real_hash(video) != first[0].content_hash


def test_every_indexer_answer_is_durable_and_a_delete_cancels_ranges_planned_before_it(
        loader, image_encoder, media_dir, tmp_path):
    """No batching of commits: what /index answers is on disk (a second process sees it), and the
    ranges of an index run planned before a delete are refused instead of bringing the video back."""
    import subprocess
    import sys

    def send(indexer, start_s, end_s, generation=0.0):
        docs = loader.load(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "cuts.mp4"), start_s=start_s,
                                                       end_s=end_s, generation=generation)]))
        return indexer.index(image_encoder.encode(docs))[0]

    def on_disk() -> list[str]:  # read by another process, as after a crash
        code = ("import sys; from clipseek.index import open_library; lib = open_library('embedded', sys.argv[1]);"
                "print(sorted((r.video_id, r.complete) for r in lib.videos())); lib.close()")
        return subprocess.run([sys.executable, "-c", code, str(tmp_path / "ws")], capture_output=True, text=True,
                              check=True, cwd=REPO).stdout.strip()

    indexer = load("indexer", workspace=str(tmp_path / "ws"), model=TINY_MODEL, pretrained="none")
    planned = indexer.probe(loader.probe_videos(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "cuts.mp4"))])))[0]
    assert planned.generation > 0 and not planned.already_indexed
    first = send(indexer, 0.0, 2.0, planned.generation)
    assert first.status == "indexed" and not first.already_indexed
    indexer.close()
    assert on_disk() == f"[('{first.video_id}', False)]"
    indexer = load("indexer", workspace=str(tmp_path / "ws"), model=TINY_MODEL, pretrained="none")
    indexer.delete(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "cuts.mp4"))]))
    late = send(indexer, 2.0, None, planned.generation)
    assert late.status == "deleted" and "deleted while it was being indexed" in late.error
    assert indexer.videos(DocList[VideoDoc]([VideoDoc()])) == DocList[VideoDoc]()
    again = indexer.probe(loader.probe_videos(DocList[VideoDoc]([VideoDoc(uri=str(media_dir / "cuts.mp4"))])))[0]
    assert send(indexer, 0.0, None, again.generation).already_indexed
    indexer.close()
    assert on_disk() == f"[('{first.video_id}', True)]"


def test_the_pass_through_is_async_so_it_never_waits_behind_the_executors_own_work():
    """jina runs a synchronous handler under a lock of the executor (one at a time) and an async one
    outside it: a request passing through the video loader under a plain jina gateway does not wait
    for the range the loader is decoding. (clipseek's gateway does not even send it there.)"""
    import inspect

    from clipseek.engine.executor import ClipseekExecutor

    assert inspect.iscoroutinefunction(ClipseekExecutor.pass_through)
    assert "/default" in ClipseekExecutor.requests_by_class["ClipseekExecutor"]
