"""Values of request documents: the types refuse what cannot travel, clipseek.validation what makes no sense."""

import math

import pytest
from docarray import DocList
from pydantic import ValidationError

from clipseek.docs import WIRE_INT_MAX, Query, Thumbnail, VideoDoc
from clipseek.validation import document_problem, time_range_problem, top_k_problem


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


def test_top_k_and_time_ranges_must_make_sense():
    assert top_k_problem(10, 100) == "" and top_k_problem(100, 100) == ""
    assert top_k_problem(0, 100) == "top_k must be between 1 and 100, got 0"
    assert "got 2147483647" in top_k_problem(WIRE_INT_MAX, 100)
    assert time_range_problem(None, None) == "" and time_range_problem(2.0, 4.0, 10.0) == ""
    assert time_range_problem(-1.0, None) == "start_s must be 0 or more, got -1.0"
    assert time_range_problem(4.0, 4.0) == "empty time range 4.000-4.000 s"
    assert time_range_problem(12.0, None, 10.0) == "start_s 12.000 s is past the end of the video (10.000 s)"
