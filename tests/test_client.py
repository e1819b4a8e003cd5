"""The client's indexing plan without a Flow: ranges, requests in flight, order and failures."""

import hashlib
import json
import threading
import time

import httpx
import pytest

from clipseek.api.client import MAX_DOCS_PER_REQUEST, ClipseekClient, plan_ranges
from clipseek.docs import VideoDoc
from clipseek.errors import (
    AuthenticationError,
    ClipseekError,
    FlowUnavailableError,
    QueryError,
    ServiceUnavailableError,
)


def video_id_of(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:16]


class FakeFlow(ClipseekClient):
    """A client whose /probe and /index answer from a table; /index takes ``delay_s`` and records
    how many requests were under way at once."""

    def __init__(self, videos: dict[str, float], fail: dict[str, float] | None = None, delay_s: float = 0.05,
                 unavailable_at: tuple[str, float] | None = None, slow: dict | None = None):
        super().__init__("http://127.0.0.1:9")
        self.durations = videos
        self.fail = fail or {}  # path -> start_s of the range that fails
        self.delay_s = delay_s
        self.unavailable_at = unavailable_at
        self.slow = slow or {}  # (path, start_s) -> seconds that request takes instead of delay_s
        self.sent: list[tuple[str, float]] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        self.committed: dict[str, float] = {}  # video_id -> seconds of its ranges committed (see videos)

    def probe(self, paths, force=False):
        return [VideoDoc(uri=p, path=p, video_id=video_id_of(p), duration_s=self.durations[p])
                if p in self.durations else VideoDoc(uri=p, error=f"{p}: no such file", status="failed")
                for p in paths]

    def videos(self, videos=()):
        """The index's record of each video: every range committed so far (FakeFlow counts one frame per
        second of a committed range)."""
        with self.lock:
            return [VideoDoc(uri=v, video_id=v, num_frames=int(self.committed.get(v, 0.0)), num_shots=1)
                    for v in videos]

    def index_range(self, path, start_s, end_s, force=False, generation=0.0):
        with self.lock:
            self.sent.append((path, start_s))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.slow.get((path, start_s), self.delay_s))
            if self.unavailable_at == (path, start_s):
                raise FlowUnavailableError("the Flow went away")
            if self.fail.get(path) == start_s:
                raise ClipseekError(f"{path}: ffmpeg could not decode [{start_s}, {end_s})")
            with self.lock:  # as the indexer: the range is committed, the answer gives the totals as of now
                video_id = video_id_of(path)
                seconds = (end_s if end_s is not None else self.durations[path]) - start_s
                self.committed[video_id] = self.committed.get(video_id, 0.0) + seconds
                total = int(self.committed[video_id])
            return VideoDoc(uri=path, path=path, status="indexed", num_frames=total, num_shots=1,
                            duration_s=self.durations[path])
        finally:
            with self.lock:
                self.in_flight -= 1


def test_ranges_cover_the_video_in_equal_steps():
    assert plan_ranges(0.0, 120.0) == [(0.0, None)]
    assert plan_ranges(100.0, 120.0) == [(0.0, None)]
    assert plan_ranges(600.0, 120.0) == [(0.0, 120.0), (120.0, 240.0), (240.0, 360.0), (360.0, 480.0),
                                         (480.0, None)]
    assert plan_ranges(250.0, 120.0) == [(0.0, 83.333), (83.333, 166.667), (166.667, None)]


def test_three_requests_are_in_flight_and_outcomes_come_back_in_order():
    flow = FakeFlow({"/m/a.mp4": 300.0, "/m/b.mp4": 50.0, "/m/c.mp4": 130.0})
    files, progress = [], []
    report = flow.index(["/m/a.mp4", "/m/missing.mp4", "/m/b.mp4", "/m/c.mp4"], chunk_s=100.0,
                        on_file=lambda o: files.append(o.path), on_progress=lambda p, d, t: progress.append(d))
    assert flow.most_in_flight == 3
    assert [o.path for o in report.outcomes] == files == ["/m/a.mp4", "/m/missing.mp4", "/m/b.mp4", "/m/c.mp4"]
    assert [o.status for o in report.outcomes] == ["indexed", "failed", "indexed", "indexed"]
    assert "no such file" in report.outcomes[1].error
    assert sorted(flow.sent) == sorted([("/m/a.mp4", 0.0), ("/m/a.mp4", 100.0), ("/m/a.mp4", 200.0),
                                        ("/m/b.mp4", 0.0), ("/m/c.mp4", 0.0), ("/m/c.mp4", 65.0)])
    assert report.outcomes[0].num_frames == 300  # the video's totals once every range is in
    assert progress == sorted(progress) and progress[-1] == pytest.approx(480.0)


def test_ranges_answered_out_of_order_report_the_videos_final_totals():
    """The loader reads the ranges in flight side by side, so a later range can be committed and answered
    before an earlier one: its answer's totals then miss the earlier range. The run reports the index's
    totals once every range of the video is in."""
    flow = FakeFlow({"/m/a.mp4": 300.0, "/m/b.mp4": 50.0}, slow={("/m/a.mp4", 100.0): 0.5})
    report = flow.index(["/m/a.mp4", "/m/b.mp4"], chunk_s=100.0, in_flight=3)
    a, b = report.outcomes
    assert a.status == "indexed" and a.num_frames == 300  # not the 200 of the last range's answer
    assert b.status == "indexed" and b.num_frames == 50  # one range: its answer is final


def test_in_flight_one_sends_one_request_at_a_time():
    flow = FakeFlow({"/m/a.mp4": 300.0, "/m/b.mp4": 50.0})
    report = flow.index(["/m/a.mp4", "/m/b.mp4"], chunk_s=100.0, in_flight=1)
    assert flow.most_in_flight == 1 and [o.status for o in report.outcomes] == ["indexed", "indexed"]


def test_a_failed_range_stops_that_video_only():
    flow = FakeFlow({"/m/a.mp4": 500.0, "/m/b.mp4": 200.0}, fail={"/m/a.mp4": 100.0})
    report = flow.index(["/m/a.mp4", "/m/b.mp4"], chunk_s=100.0, in_flight=2)
    a, b = report.outcomes
    assert a.status == "failed" and "could not decode [100.0, 200.0)" in a.error
    assert b.status == "indexed"
    sent_a = [start for path, start in flow.sent if path == "/m/a.mp4"]
    assert 100.0 in sent_a and 400.0 not in sent_a  # at most the one range already under way goes after it
    assert len(sent_a) <= 3


def test_a_flow_that_goes_away_stops_the_run_without_waiting_for_requests_under_way():
    flow = FakeFlow({"/m/a.mp4": 300.0, "/m/b.mp4": 300.0}, unavailable_at=("/m/a.mp4", 100.0),
                    slow={("/m/a.mp4", 200.0): 5.0})
    started = time.perf_counter()
    with pytest.raises(FlowUnavailableError):
        flow.index(["/m/a.mp4", "/m/b.mp4"], chunk_s=100.0, in_flight=2)
    assert time.perf_counter() - started < 2.0  # the 5 s request still under way is not waited for
    assert ("/m/a.mp4", 200.0) in flow.sent and ("/m/b.mp4", 0.0) not in flow.sent


def test_a_flow_that_goes_away_still_gets_every_file_of_the_run_reported():
    flow = FakeFlow({"/m/a.mp4": 300.0, "/m/b.mp4": 50.0, "/m/c.mp4": 50.0}, unavailable_at=("/m/a.mp4", 100.0))
    seen = []
    with pytest.raises(FlowUnavailableError) as stopped:
        flow.index(["/m/a.mp4", "/m/b.mp4", "/m/c.mp4", "/m/missing.mp4"], chunk_s=100.0, on_file=seen.append)
    report = stopped.value.report
    assert [o.path for o in report.outcomes] == [o.path for o in seen] == \
           ["/m/a.mp4", "/m/b.mp4", "/m/c.mp4", "/m/missing.mp4"]
    assert report.counts() == {"indexed": 0, "unchanged": 0, "failed": 4}
    assert all("not indexed: the Flow went away" in o.error for o in report.outcomes[:3])


def test_a_service_that_is_down_fails_the_files_that_need_it_and_the_run_goes_on():
    class LoaderDown(FakeFlow):
        def probe(self, paths, force=False):
            raise ServiceUnavailableError("/probe: the video_loader service is down", "video_loader")

    seen = []
    report = LoaderDown({}).index(["/m/a.mp4", "/m/folder"], on_file=seen.append)
    assert [o.path for o in seen] == ["/m/a.mp4", "/m/folder"]
    assert all(o.status == "failed" and "video_loader" in o.error for o in report.outcomes)


def answering(handler) -> ClipseekClient:
    """A client whose HTTP requests are answered by ``handler(request) -> httpx.Response``."""
    client = ClipseekClient("http://clipseek.test:51001", api_key="the-key")
    client._http = httpx.Client(transport=httpx.MockTransport(handler), headers=client._http.headers)
    return client


def test_requests_carry_at_most_100_documents_and_every_answer_comes_back_in_order():
    sizes = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer the-key"
        data = json.loads(request.content)["data"]
        sizes.append(len(data))
        return httpx.Response(200, json={"data": [{**d, "path": d["uri"], "status": "probed"} for d in data]})

    paths = [f"/m/{i:03d}.mp4" for i in range(250)]
    assert [d.path for d in answering(handler).probe(paths)] == paths
    assert sizes == [MAX_DOCS_PER_REQUEST, MAX_DOCS_PER_REQUEST, 50]


def test_an_answer_with_fewer_documents_than_were_sent_is_an_error_not_a_silent_loss():
    def handler(request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)["data"]
        return httpx.Response(200, json={"data": data[:-1]})  # what jina's HTTP gateway did past 100

    with pytest.raises(ClipseekError, match="answered 0 of the 1 documents sent"):
        answering(handler).delete("/m/a.mp4")


@pytest.mark.parametrize("status, body, headers, error, message", [
    (401, {"detail": "missing or wrong API key"}, {}, AuthenticationError, "refused /videos: missing or wrong"),
    (422, {"detail": "data[0].top_k: Input should be ..."}, {}, QueryError, "refused the request: data"),
    (503, {"detail": "the indexer service is down"}, {"x-clipseek-service": "indexer"}, ServiceUnavailableError,
     "the indexer service is down"),
    (500, {"detail": "/videos failed in Indexer: boom"}, {}, ClipseekError, "HTTP 500 /videos failed in Indexer"),
])
def test_http_errors_become_errors_that_say_what_failed(status, body, headers, error, message):
    client = answering(lambda request: httpx.Response(status, json=body, headers=headers))
    with pytest.raises(error, match=message) as raised:
        client.videos()
    if status == 503:
        assert raised.value.service == "indexer"


def test_bad_values_are_refused_before_anything_is_sent(monkeypatch):
    monkeypatch.setenv("CLIPSEEK_API_KEY", "from-the-environment")
    client = answering(lambda request: pytest.fail("nothing should be sent"))
    assert ClipseekClient("http://127.0.0.1:9").api_key == "from-the-environment"
    for call, message in [(lambda: client.search("x", top_k=2**31), "top_k: Input should be less than"),
                          (lambda: client.thumbnail("/m/a.mp4", float("nan")), "time_s: Input should be a finite"),
                          (lambda: client.index_range("/m/a.mp4", float("inf"), None), "start_s: Input should be"),
                          (lambda: client.index(["/m/a.mp4"], chunk_s=float("nan")), "range length")]:
        with pytest.raises(QueryError, match=message):
            call()


def test_fast_document_ids_reads_ids_as_docarray_does():
    """The gateway, the executors and the gRPC client read document ids with one validator built once
    (clipseek.engine.jina_compat.fast_document_ids): the same ids, of docarray's ID type, nested ones too."""
    from docarray import DocList
    from docarray.typing import ID
    from pydantic import TypeAdapter

    from clipseek.docs import Query, Segment
    from clipseek.engine.jina_compat import fast_document_ids

    fast_document_ids()
    for given in ("abc", "0" * 32, "中文", 123):
        assert ID.from_protobuf(given) == TypeAdapter(ID).validate_python(given)
        assert type(ID.from_protobuf(given)) is ID
    segments = DocList[Segment]([Segment(video_id="v", video="/m/v.mp4", start_s=1.0, end_s=2.0, score=0.5,
                                         thumbnail_s=1.5) for _ in range(3)])
    docs = DocList[Query]([Query(text="a dog", segments=segments), Query(text="一只狗")])
    again = DocList[Query].from_protobuf(docs.to_protobuf())
    assert [d.id for d in again] == [d.id for d in docs]
    assert [s.id for s in again[0].segments] == [s.id for s in segments]
    assert again[1].text == "一只狗" and again[0].segments[2].end_s == 2.0


def test_cheap_request_graphs_copy_per_request_state_and_share_the_rest():
    """The gateway copies jina's topology graph once per request (clipseek.engine.jina_compat.
    cheap_request_graphs): each copy has its own nodes, chained as in the template, and its own
    per-request state; what is set once at start-up is shared, not copied."""
    import copy

    from jina.serve.runtimes.gateway.graph.topology_graph import TopologyGraph

    from clipseek.engine.jina_compat import cheap_request_graphs

    cheap_request_graphs()
    cheap_request_graphs()  # patching twice is patching once
    graph = TopologyGraph({"start-gateway": ["text_encoder"], "text_encoder": ["indexer"],
                           "indexer": ["end-gateway"]})
    for node in graph.all_nodes:
        node.endpoints = ["/search", "/index"]
    graph._origin_nodes[0].start_time = "set before the copy"
    one, two = copy.deepcopy(graph), copy.deepcopy(graph)
    originals = {node.name: node for node in graph.all_nodes}
    for copied in (one, two):
        assert copied is not graph and copied._origin_nodes[0] is not graph._origin_nodes[0]
        chain, node = [], copied._origin_nodes[0]
        while node.outgoing_nodes:
            chain.append((node.name, type(node).__name__))
            node = node.outgoing_nodes[0]
        chain.append((node.name, type(node).__name__))
        assert chain == [("text_encoder", "_ReqReplyNode"), ("indexer", "_ReqReplyNode"),
                         ("__end_gateway__", "_EndGatewayNode")]
        for node in copied.all_nodes:
            assert node is not originals[node.name]
            assert node.endpoints is originals[node.name].endpoints  # shared, set once
            assert node.logger is originals[node.name].logger
            assert node.parts_to_send == [] and node.parts_to_send is not originals[node.name].parts_to_send
        assert copied._origin_nodes[0].start_time == "set before the copy"
    one._origin_nodes[0].parts_to_send.append("a request")
    one._origin_nodes[0].status = "failed"
    assert two._origin_nodes[0].parts_to_send == [] and graph._origin_nodes[0].parts_to_send == []
    assert two._origin_nodes[0].status is None and graph._origin_nodes[0].status is None
