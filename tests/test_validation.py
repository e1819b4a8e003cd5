"""Values of request documents: the types refuse what cannot travel, clipseek.validation what makes no sense."""

import math

import pytest
from docarray import DocList
from pydantic import ValidationError

from clipseek.docs import WIRE_INT_MAX, Query, Thumbnail, VideoDoc
from clipseek.validation import document_problem


@pytest.mark.parametrize("build", [
    lambda: VideoDoc(uri="a.mp4", end_s=math.nan),
    lambda: VideoDoc(uri="a.mp4", start_s=-math.inf),
    lambda: Query(text="x", top_k=WIRE_INT_MAX + 1),
    lambda: Thumbnail(uri="a.mp4", time_s=math.inf),
    lambda: Thumbnail(uri="a.mp4", width_px=-(2**40)),
])
def test_the_types_refuse_numbers_that_are_not_finite_or_do_not_fit_the_wire(build):
    with pytest.raises(ValidationError):
        build()


def test_a_file_over_2_gib_still_travels_between_the_services():
    doc = VideoDoc(uri="big.mp4", size_bytes=3 * 2**30)  # docarray's protobuf integers are 32 bits
    back = DocList[VideoDoc].from_protobuf(DocList[VideoDoc]([doc]).to_protobuf())[0]
    assert back.size_bytes == 3 * 2**30


def test_a_document_built_without_validation_is_caught_before_it_is_used():
    assert document_problem(VideoDoc(uri="a.mp4", end_s=3.0)) == ""
    problem = document_problem(VideoDoc.model_construct(uri="a.mp4", end_s=math.nan, force=True))
    assert problem.startswith("end_s: Input should be a finite number")


def test_the_media_layer_refuses_ranges_that_make_no_sense():
    from clipseek.media.ffmpeg_cmd import VideoInfo
    from clipseek.media.source import plan_range

    info = VideoInfo(0, 320, 240, 25.0, 10.0, 0.0, 0, "h264", 250)
    assert plan_range("a.mp4", info, None, None, 900.0) == (0.0, 10.0)
    assert plan_range("a.mp4", info, 2.0, 40.0, 900.0) == (2.0, 10.0)  # clamped to the video
    cases = [(4.0, 4.0, "empty time range 4.000-4.000"), (12.0, None, "empty time range"),
             (0.0, math.nan, "end_s must be a finite"), (math.inf, None, "start_s must be a finite")]
    for start, end, message in cases:
        with pytest.raises(ValueError, match=message):
            plan_range("a.mp4", info, start, end, 900.0)
    with pytest.raises(ValueError, match="at most 5 s per request"):
        plan_range("a.mp4", info, 0.0, 10.0, 5.0)
