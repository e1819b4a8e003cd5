"""One ``clipseek index`` run: probe the paths, split long videos into time ranges, keep a few ranges in
flight, and report every file exactly once, in order.

The engine's loader decodes one range while the image encoder embeds the one before, so the run keeps
``in_flight`` ranges under way (of one video or of the next ones) and takes the answers in the order
they were sent. After a range of a video fails, no further range of it is sent (the one already under
way may still be indexed: the video is reported failed and is incomplete in the index, so the next run
sends it again). When the engine cannot be reached or refuses the API key, the files not done are
reported failed and the error is raised with the ``report``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clipseek.errors import AuthenticationError, ClipseekError, FlowUnavailableError, QueryError

if TYPE_CHECKING:
    from clipseek.api.client import ClipseekClient
    from clipseek.docs import VideoDoc


@dataclass
class IndexOutcome:
    """What happened to one file of an index run."""

    path: str
    status: str  # "indexed", "unchanged", "failed"
    video_id: str = ""
    error: str = ""
    duration_s: float = 0.0
    num_frames: int = 0
    num_shots: int = 0
    warning: str = ""  # indexed, but something is off (a sidecar file that could not be read)


@dataclass
class IndexReport:
    outcomes: list[IndexOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[IndexOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for o in self.outcomes if o.status == s) for s in ("indexed", "unchanged", "failed")}


def plan_ranges(duration_s: float, chunk_s: float) -> list[tuple[float, float | None]]:
    """Split [0, duration) into time ranges of at most ``chunk_s`` (the last ends at the video's end)."""
    if not (math.isfinite(chunk_s) and chunk_s > 0):
        raise QueryError(f"the range length must be a number of seconds > 0, got {chunk_s}")
    if not math.isfinite(duration_s) or duration_s <= 0 or duration_s <= chunk_s:
        return [(0.0, None)]
    count = math.ceil(duration_s / chunk_s)
    step = duration_s / count
    return [(round(i * step, 3), None if i == count - 1 else round((i + 1) * step, 3)) for i in range(count)]


@dataclass
class _File:
    """One file of the run: what the probe said, its outcome so far, and its ranges not yet answered."""

    planned: VideoDoc
    outcome: IndexOutcome
    ranges_left: int = 0
    ranges: int = 0  # how many it was sent in


@dataclass
class _Sent:
    file: _File
    start_s: float
    end_s: float | None
    answer: Future


class IndexRun:
    def __init__(self, client: ClipseekClient, force: bool, chunk_s: float, in_flight: int,
                 on_progress: Callable[[str, float, float], Any] | None = None,
                 on_file: Callable[[IndexOutcome], Any] | None = None):
        plan_ranges(1.0, chunk_s)  # a bad chunk_s is refused before anything is sent
        self.client, self.force, self.chunk_s, self.in_flight = client, force, chunk_s, max(1, in_flight)
        self.on_progress, self.on_file = on_progress, on_file
        self.report = IndexReport()
        self.files: list[_File] = []
        self._reported = 0
        self._done_s = self._total_s = 0.0

    def run(self, paths: Iterable[str]) -> IndexReport:
        paths = [str(p) for p in paths]
        try:
            planned = self.client.probe(paths, force=self.force)
        except ClipseekError as exc:  # nothing could be planned: every path named fails with the reason
            self.files = [_File(_no_doc(), IndexOutcome(p, "failed", error=f"not indexed: {exc}")) for p in paths]
            self._report_finished()
            if isinstance(exc, (FlowUnavailableError, AuthenticationError)):
                exc.report = self.report
                raise
            return self.report
        jobs: deque[tuple[_File, float, float | None]] = deque()
        for video in planned:
            file = _File(video, self._first_outcome(video))
            if file.outcome.status == "unchanged" and (self.force or not video.already_indexed) and not video.error:
                ranges = plan_ranges(video.duration_s, self.chunk_s)
                file.ranges_left = file.ranges = len(ranges)
                jobs.extend((file, start_s, end_s) for start_s, end_s in ranges)
                self._total_s += video.duration_s
            self.files.append(file)
        self._report_finished()
        under_way: deque[_Sent] = deque()
        while jobs or under_way:
            while jobs and len(under_way) < self.in_flight:
                file, start_s, end_s = jobs.popleft()
                if file.outcome.status == "failed":  # an earlier range of this video failed
                    file.ranges_left -= 1
                    continue
                under_way.append(_Sent(file, start_s, end_s, _in_background(
                    self.client._index_range_or_error, file.planned.path, start_s, end_s, self.force,
                    file.planned.generation)))
            if under_way:
                self._take(under_way.popleft())
            self._report_finished()
        return self.report

    def _first_outcome(self, video: VideoDoc) -> IndexOutcome:
        if video.error:
            return IndexOutcome(video.path or video.uri, "failed", error=video.error)
        if video.already_indexed and not self.force:
            return IndexOutcome(video.path, "unchanged", video.video_id, duration_s=video.duration_s,
                                num_frames=video.num_frames, num_shots=video.num_shots)
        return IndexOutcome(video.path, "unchanged", video.video_id, duration_s=video.duration_s)

    def _take(self, sent: _Sent) -> None:
        """The answer of one range (Ctrl-C leaves at once, without waiting for the requests under way)."""
        try:
            result = sent.answer.result()
        except (FlowUnavailableError, AuthenticationError) as exc:
            self._fail_the_rest(exc)
            exc.report = self.report
            raise
        file, outcome = sent.file, sent.file.outcome
        file.ranges_left -= 1
        if outcome.status == "failed":
            return
        if result.error:
            outcome.status, outcome.error = "failed", result.error
            return
        if result.status == "indexed":
            outcome.status = "indexed"
        if result.warning and result.warning not in outcome.warning:
            outcome.warning = "; ".join(w for w in (outcome.warning, result.warning) if w)
        outcome.num_frames, outcome.num_shots = result.num_frames, result.num_shots
        outcome.duration_s = result.duration_s or outcome.duration_s
        if file.ranges_left == 0 and file.ranges > 1 and outcome.status == "indexed":
            self._final_totals(file)
        end_s = sent.end_s if sent.end_s is not None else file.planned.duration_s
        self._done_s += max(0.0, end_s - sent.start_s)
        if self.on_progress:
            self.on_progress(outcome.path, self._done_s, self._total_s)

    def _final_totals(self, file: _File) -> None:
        """A range's answer gives the video's totals as of that range; ranges in flight together may be
        answered in another order than they were sent (the loader reads them side by side), so the
        totals of the last answer taken may miss a range committed after it: ask the index."""
        video = file.outcome.video_id or file.planned.video_id or file.outcome.path
        try:
            record = self.client.videos([video])[0]
        except (ClipseekError, IndexError):
            return  # the answers' totals stay; the video itself is indexed
        file.outcome.num_frames, file.outcome.num_shots = record.num_frames, record.num_shots

    def _report_finished(self) -> None:
        """Report, in order, the files whose ranges are all answered."""
        while self._reported < len(self.files) and self.files[self._reported].ranges_left == 0:
            outcome = self.files[self._reported].outcome
            self.report.outcomes.append(outcome)
            if self.on_file:
                self.on_file(outcome)
            self._reported += 1

    def _fail_the_rest(self, reason: ClipseekError) -> None:
        for file in self.files[self._reported:]:
            if file.ranges_left:
                file.outcome.status, file.outcome.error = "failed", f"not indexed: {reason}"
                file.ranges_left = 0
        self._report_finished()


def _no_doc():
    from clipseek.docs import VideoDoc

    return VideoDoc()


def _in_background(fn: Callable[..., Any], *args: Any) -> Future:
    """Run ``fn(*args)`` on a daemon thread: a run that stops (Ctrl-C, the Flow went away) does not wait
    for the requests still under way, as a ThreadPoolExecutor would, at its exit and at the program's."""
    future: Future = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="clipseek-index").start()
    return future
