"""The real Flow, started on free ports, indexed and searched over gRPC and HTTP (tiny random model:
plumbing; meaning is tested with the demo model in test_demo_search.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import REPO, TINY_MODEL, running_flow
from docarray import DocList
from procs import alive, descendants

from clipseek.api.client import MAX_DOCS_PER_REQUEST, ClipseekClient, plan_ranges
from clipseek.docs import Query, VideoDoc
from clipseek.errors import FlowUnavailableError, QueryError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow(media_dir, tmp_path_factory):
    with running_flow(TINY_MODEL, "none", str(media_dir), tmp_path_factory.mktemp("ws")) as running:
        processes = descendants(running.process.pid)
        assert len(processes) >= 5  # the supervisor's four executors and the gateway
        yield running
    assert not alive(processes), "BackgroundFlow left processes behind"  # it stops everything it started


@pytest.fixture(scope="module", params=["http", "grpc"])
def client(request, flow):
    return ClipseekClient(flow.http if request.param == "http" else flow.grpc)


def check_segments(segments, videos):
    durations = {v.video_id: v.duration_s for v in videos}
    scores = [s.score for s in segments]
    assert scores == sorted(scores, reverse=True)
    spans = {}
    for s in segments:
        assert 0.0 <= s.start_s < s.end_s <= durations[s.video_id] + 1e-6
        assert s.start_s <= s.thumbnail_s <= s.end_s
        spans.setdefault(s.video_id, []).append((s.start_s, s.end_s))
    for pairs in spans.values():
        pairs.sort()
        assert all(a[1] <= b[0] + 1e-6 for a, b in zip(pairs, pairs[1:], strict=False))


def test_index_a_folder_with_bad_files_then_search_over_both_protocols(flow, client, media_dir):
    report = client.index([str(media_dir)])
    by_name = {os.path.relpath(o.path, media_dir.resolve()): o for o in report.outcomes}
    assert by_name["cuts.mp4"].status in ("indexed", "unchanged")
    assert by_name["sub/blue.mp4"].status in ("indexed", "unchanged")
    assert by_name["one_frame.mp4"].status in ("indexed", "unchanged")
    assert by_name["tiny.mp4"].status in ("indexed", "unchanged")
    for bad, reason in [("bad/empty.mp4", "file is empty"), ("bad/random_bytes.mp4", "not a readable video"),
                        ("bad/truncated.mp4", "not a readable video"), ("bad/audio_only.mp4", "no video stream")]:
        assert by_name[bad].status == "failed" and reason in by_name[bad].error, by_name[bad]
    videos = client.videos()
    assert {os.path.basename(v.path) for v in videos} == {"cuts.mp4", "blue.mp4", "one_frame.mp4", "tiny.mp4"}
    segments = client.search("a red screen", top_k=5)
    assert segments
    check_segments(segments, videos)
    # every clip boundary is a shot boundary of the video (cuts at 2.0, 3.5, 6.0) or its start/end
    cuts = {0.0, 2.0, 3.5, 6.0, 10.04}
    for s in segments:
        if s.video.endswith("cuts.mp4"):
            assert min(abs(s.start_s - c) for c in cuts) <= 0.05 or s.start_s > 6.0  # testsrc2 part is sampled
    # a second run indexes nothing again
    again = client.index([str(media_dir / "cuts.mp4")])
    assert [o.status for o in again.outcomes] == ["unchanged"]


def test_bad_queries_get_clear_errors_and_the_service_keeps_serving(flow, client, media_dir):
    client.index([str(media_dir)])
    for kwargs, message in [({"text": ""}, "empty"), ({"text": "   "}, "empty"),
                            ({"text": "x", "top_k": 0}, "top_k must be between 1 and 100, got 0"),
                            ({"text": "x", "top_k": 10**6}, "got 1000000"),
                            ({"text": "x", "videos": ["no-such-video"]}, "unknown video")]:
        with pytest.raises(QueryError, match=message):
            client.search(**kwargs)
    long = client.search("a red circle " * 800, top_k=3)  # 10,000 characters: truncated, answered
    assert 1 <= len(long) <= 3
    only = client.search("anything", top_k=10, videos=[str(media_dir / "sub" / "blue.mp4")])
    assert only and all(s.video.endswith("blue.mp4") for s in only)
    assert len(client.videos()) == 4  # nothing indexed was lost


def test_http_api_answers_plain_json_requests(flow, media_dir):
    ClipseekClient(flow.http).index([str(media_dir / "cuts.mp4")])
    body = {"data": [{"text": "a red screen", "top_k": 2}]}
    response = httpx.post(f"{flow.http}/search", json=body, timeout=60)
    assert response.status_code == 200
    segments = response.json()["data"][0]["segments"]
    assert segments and {"video", "video_id", "start_s", "end_s", "score", "thumbnail_s"} <= set(segments[0])


def test_long_videos_are_sent_in_time_ranges_and_their_shots_are_joined(flow, media_dir):
    client = ClipseekClient(flow.http)
    path = str(media_dir / "cuts.mp4")
    client.delete(path)
    outcome = client.index([path], chunk_s=3.0).outcomes[0]  # 10 s video in four ranges of 2.51 s
    assert outcome.status == "indexed", outcome.error
    video = next(v for v in client.videos() if v.path.endswith("cuts.mp4"))
    assert video.already_indexed and video.num_shots == 4  # range edges did not add shots
    assert plan_ranges(10.04, 3.0) == [(0.0, 2.51), (2.51, 5.02), (5.02, 7.53), (7.53, None)]


def test_delete_and_reindex_through_the_client(flow, media_dir):
    client = ClipseekClient(flow.http)
    path = str(media_dir / "tiny.mp4")
    client.index([path])
    assert client.delete(path).status == "deleted"
    assert all(not v.path.endswith("tiny.mp4") for v in client.videos())
    assert client.index([path]).outcomes[0].status == "indexed"


def test_thumbnails_come_from_the_loader(flow, media_dir):  # needs no index
    jpeg = ClipseekClient(flow.grpc).thumbnail(str(media_dir / "cuts.mp4"), 1.0, 120)
    assert jpeg[:2] == b"\xff\xd8"


def test_cli_index_search_videos_delete(flow, media_dir):
    env = {**os.environ, "CLIPSEEK_ADDRESS": flow.http}
    cli = [sys.executable, "-m", "clipseek"]

    def run(*args):
        return subprocess.run([*cli, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)

    indexed = run("index", "-q", str(media_dir / "cuts.mp4"), str(media_dir / "bad" / "empty.mp4"))
    assert indexed.returncode == 1  # one file failed; the other was still indexed
    assert "failed    " in indexed.stdout and "file is empty" in indexed.stdout and "cuts.mp4" in indexed.stdout
    found = run("search", "a red screen", "--top-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)
    assert results and {"video", "video_id", "start_s", "end_s", "score", "thumbnail_s"} <= set(results[0])
    listed = json.loads(run("videos", "--json").stdout)
    assert any(v["path"].endswith("cuts.mp4") for v in listed)
    empty = run("search", "  ")
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_an_unreachable_flow_is_reported_with_its_address():
    client = ClipseekClient("http://127.0.0.1:9")
    with pytest.raises(FlowUnavailableError, match="127.0.0.1:9.*clipseek serve"):
        client.search("x")
    assert not client.is_ready()


def test_numbers_that_are_not_finite_or_too_large_are_refused_whole_and_change_nothing(flow, media_dir):
    http = ClipseekClient(flow.http)
    path = str(media_dir / "cuts.mp4")
    http.index([path])

    def frames() -> int:
        return next(v.num_frames for v in http.videos() if v.path.endswith("cuts.mp4"))

    before = frames()
    nan, inf = float("nan"), float("inf")
    for endpoint, doc, field in [("/index", {"uri": path, "end_s": nan, "force": True}, "end_s"),
                                 ("/index", {"uri": path, "start_s": -inf, "force": True}, "start_s"),
                                 ("/delete", {"uri": path, "end_s": nan}, "end_s"),
                                 ("/search", {"text": "x", "top_k": 2**31}, "top_k"),
                                 ("/search", {"text": "x", "top_k": 10**30}, "top_k"),
                                 ("/thumbnail", {"uri": path, "time_s": inf}, "time_s")]:
        answer = httpx.post(f"{flow.http}{endpoint}", content=json.dumps({"data": [doc]}), timeout=60,
                            headers={"content-type": "application/json"})  # json.dumps writes NaN, Infinity
        assert answer.status_code == 422, (endpoint, doc, answer.text[:300])
        assert f"data[0].{field}: Input should be" in answer.json()["detail"], answer.text
    assert frames() == before  # the force re-index with end_s=NaN did not add frames (it used to: 6 -> 12)
    # what a web page open in a browser can send without asking (no CORS preflight): not JSON, refused
    sneaky = httpx.post(f"{flow.http}/delete", content=json.dumps({"data": [{"uri": path}]}), timeout=60,
                        headers={"content-type": "text/plain"})
    assert sneaky.status_code == 422 and frames() == before
    preflight = httpx.options(f"{flow.http}/delete", timeout=60, headers={
        "origin": "https://example.com", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers  # no CORS: browsers refuse to send
    empty = httpx.post(f"{flow.http}/delete", json={"data": []}, timeout=60)
    assert empty.status_code == 422 and "no documents" in empty.json()["detail"]

    grpc = ClipseekClient(flow.grpc)
    for endpoint, doc in [("/index", VideoDoc.model_construct(uri=path, end_s=nan, force=True)),
                          ("/delete", VideoDoc.model_construct(uri=path, start_s=inf))]:
        # built without validation, as another gRPC client could send it: the first executor refuses it
        with pytest.raises(QueryError, match="refused the request.*finite number"):
            grpc._post_grpc(endpoint, DocList[VideoDoc]([doc]), VideoDoc)
    assert frames() == before
    for client in (http, grpc):  # the client refuses them before sending anything
        with pytest.raises(QueryError, match="top_k: Input should be less than or equal to 2147483647"):
            client.search("x", top_k=2**31)
        with pytest.raises(QueryError, match="time_s: Input should be a finite number"):
            client.thumbnail(path, nan)
    cli = subprocess.run([sys.executable, "-m", "clipseek.api.cli", "--address", flow.grpc, "search", "x",
                          "--top-k", str(2**32)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert cli.returncode == 2 and "bad query: top_k" in cli.stderr and "Traceback" not in cli.stderr, cli.stderr


def many_videos(folder: Path, source: Path, count: int) -> list[str]:
    """``count`` different tiny videos: ``source`` with a few different bytes after its end (players
    ignore them; each file has its own content hash)."""
    folder.mkdir()
    data = source.read_bytes()
    paths = []
    for i in range(count):
        path = folder / f"v{i:03d}.mp4"
        path.write_bytes(data + f"clipseek-test-{i}".encode())
        paths.append(str(path))
    return paths


def test_more_than_100_documents_are_each_answered_over_http_and_grpc(flow, media_dir):
    count = MAX_DOCS_PER_REQUEST + 30
    folder = media_dir / "many"
    paths = many_videos(folder, media_dir / "tiny.mp4", count)
    cli = [sys.executable, "-m", "clipseek.api.cli"]
    try:
        indexed = subprocess.run([*cli, "--address", flow.http, "index", "-q", *paths], capture_output=True,
                                 text=True, cwd=REPO, timeout=900)
        lines = indexed.stdout.splitlines()
        assert indexed.returncode == 0, indexed.stdout[-2000:] + indexed.stderr[-2000:]
        assert lines[-1] == f"{count} indexed, 0 unchanged, 0 failed"  # it said 100 indexed, and 30 were lost
        assert sum(line.startswith("indexed ") for line in lines) == count
        again = subprocess.run([*cli, "--address", flow.grpc, "index", "-q", str(folder)], capture_output=True,
                               text=True, cwd=REPO, timeout=900)
        assert again.stdout.splitlines()[-1] == f"0 indexed, {count} unchanged, 0 failed", again.stdout[-2000:]
        listed = {v.path for v in ClipseekClient(flow.grpc).videos()}
        assert {str(Path(p).resolve()) for p in paths} <= listed

        # One request of more than 100 documents, past the client's batching: every one is answered, in order.
        probed = httpx.post(f"{flow.http}/probe", json={"data": [{"uri": p} for p in paths]}, timeout=300).json()
        assert [d["uri"] for d in probed["data"]] == paths
        one_request = ClipseekClient(flow.grpc)._post_grpc(
            "/probe", DocList[VideoDoc]([VideoDoc(uri=p) for p in paths]), VideoDoc)
        assert [d.uri for d in one_request] == paths and all(d.already_indexed for d in one_request)
        queries = [{"text": f"query {i}", "top_k": 1} for i in range(1000)]
        searched = httpx.post(f"{flow.http}/search", json={"data": queries}, timeout=300).json()["data"]
        assert [q["text"] for q in searched] == [q["text"] for q in queries]
        many = ClipseekClient(flow.grpc)._post_grpc(
            "/search", DocList[Query]([Query(text=q["text"], top_k=1) for q in queries]), Query)
        assert len(many) == 1000 and all(q.segments for q in many)
        deleted = httpx.post(f"{flow.http}/delete", json={"data": [{"uri": p} for p in paths]}, timeout=300)
        assert [d["status"] for d in deleted.json()["data"]] == ["deleted"] * count  # said 100, deleted 130
        assert not {str(Path(p).resolve()) for p in paths} & {v.path for v in ClipseekClient(flow.http).videos()}
    finally:
        shutil.rmtree(folder)
