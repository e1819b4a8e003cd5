"""The workspace records which model its vectors came from (architecture, weights, dimension) and refuses
another: at index time, at query time, and at start-up. On every backend, without a Flow; then once
through the engine."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_MODEL, running_flow
from index_helpers import SynthVideo, unit
from test_index_library import make_library  # noqa: F401  (the fixture: every backend)

from clipseek.errors import ClipseekError, QueryError
from clipseek.index.backend import ModelIdentity
from clipseek.model.spec import expected_identity, model_identity

DEMO = "clipseek-demo [clipseek-demo.safetensors sha256:00112233aabbccdd]"
DEMO_RETRAINED = "clipseek-demo [clipseek-demo.safetensors sha256:99887766ffeeddcc]"
DEMO_COPY = "clipseek-demo [my-copy.safetensors sha256:00112233aabbccdd]"  # the same bytes, renamed


def test_an_identity_parses_back_from_what_the_encoders_stamp():
    identity = ModelIdentity.parse(model_identity("ViT-B-32", "laion2b_s34b_b79k sha256:0123456789abcdef"), 512)
    assert (identity.name, identity.weights, identity.dim) == ("ViT-B-32", "laion2b_s34b_b79k sha256:0123456789abcdef",
                                                                512)
    assert identity.text == "ViT-B-32 [laion2b_s34b_b79k sha256:0123456789abcdef]"
    legacy = ModelIdentity.parse("ViT-B-32", 512)  # workspaces made before the weights were recorded
    assert (legacy.name, legacy.weights, legacy.text) == ("ViT-B-32", "", "ViT-B-32")
    spaced = ModelIdentity.parse("tiny [my weights.safetensors sha256:0123456789abcdef]", 16)
    assert spaced.weights == "my weights.safetensors sha256:0123456789abcdef"


@pytest.mark.parametrize("recorded, given, differs", [
    (DEMO, DEMO, False),
    (DEMO, DEMO_COPY, False),  # same checkpoint bytes under another file name
    (DEMO, DEMO_RETRAINED, True),  # same name, other bytes
    (DEMO, "ViT-B-32 [laion2b_s34b_b79k sha256:00112233aabbccdd]", True),  # another architecture
    (DEMO, "clipseek-demo [random]", True),
    ("clipseek-demo [random]", "clipseek-demo [random]", False),
    ("ViT-B-32 [laion2b_s34b_b79k sha256:0123456789abcdef]", "ViT-B-32 [laion2b_s34b_b79k]", False),  # tag, at start-up
    ("ViT-B-32 [laion2b_s34b_b79k sha256:0123456789abcdef]", "ViT-B-32 [openai]", False),  # a tag vs a file: unknown
    ("ViT-B-32 [laion2b_s34b_b79k]", "ViT-B-32 [openai]", True),  # two tags
    ("ViT-B-32", "ViT-B-32 [openai sha256:0123456789abcdef]", False),  # a legacy workspace: weights unknown
    ("ViT-B-32", "ViT-L-14 [openai sha256:0123456789abcdef]", True),
])
def test_two_identities_differ_only_when_it_is_known(recorded, given, differs):
    assert ModelIdentity.parse(recorded, 64).differs_from(ModelIdentity.parse(given, 64)) is differs
    assert ModelIdentity.parse(given, 64).differs_from(ModelIdentity.parse(recorded, 64)) is differs


def test_the_first_index_records_the_identity_and_it_survives_a_restart(make_library):  # noqa: F811
    library = make_library()
    assert library.model is None
    library.index_range(SynthVideo("a", dim=32).upload(model=DEMO))
    assert library.model == ModelIdentity("clipseek-demo", 32, "clipseek-demo.safetensors sha256:00112233aabbccdd")
    library.close()
    reopened = make_library()
    assert reopened.model == ModelIdentity.parse(DEMO, 32)
    assert reopened.index_range(SynthVideo("b", dim=32, seed=1).upload(model=DEMO_COPY)).status == "indexed"


def test_vectors_and_queries_of_other_weights_are_refused_naming_both_models(make_library):  # noqa: F811
    library = make_library()
    library.index_range(SynthVideo("a", dim=32).upload(model=DEMO))
    with pytest.raises(ClipseekError, match="sha256:00112233aabbccdd.*sha256:99887766ffeeddcc"):
        library.index_range(SynthVideo("b", dim=32, seed=1).upload(model=DEMO_RETRAINED))
    with pytest.raises(QueryError, match="sha256:99887766ffeeddcc.*sha256:00112233aabbccdd"):
        library.search(unit(np.ones(32)), top_k=3, model=DEMO_RETRAINED)
    assert library.search(unit(np.ones(32)), top_k=3, model=DEMO)  # the right model still searches
    assert library.model == ModelIdentity.parse(DEMO, 32) and library.frame_count() == len(SynthVideo("a").times)


def test_start_up_with_another_model_fails_naming_both(make_library):  # noqa: F811
    library = make_library()
    library.index_range(SynthVideo("a", dim=32).upload(model=DEMO))
    library.check_model(DEMO_COPY, 32)  # the same model: nothing to say
    library.check_model("clipseek-demo [clipseek-demo.safetensors]", 0)  # weights not at hand: cannot tell
    with pytest.raises(ClipseekError, match=r"'clipseek-demo \[.*00112233aabbccdd\]'.*'ViT-B-32 \[laion2b_s34b_b79k"):
        library.check_model("ViT-B-32 [laion2b_s34b_b79k]", 512)
    with pytest.raises(ClipseekError, match="99887766ffeeddcc"):
        library.check_model(DEMO_RETRAINED, 32)


def test_the_indexer_refuses_to_start_on_a_workspace_of_another_model(tmp_path):
    from test_executors import load

    identity, dim = expected_identity(TINY_MODEL, "none")
    assert identity == "clipseek-tiny [random]" and dim == 64
    indexer = load("indexer", workspace=str(tmp_path / "ws"), model=TINY_MODEL, pretrained="none")
    indexer.library.index_range(SynthVideo("a", dim=64).upload(model=identity))
    indexer.close()
    same = load("indexer", workspace=str(tmp_path / "ws"), model=TINY_MODEL, pretrained="none")
    assert same.library.model == ModelIdentity("clipseek-tiny", 64, "random")
    same.close()
    with pytest.raises(Exception, match=r"clipseek-tiny \[random\].*clipseek-demo \[clipseek-demo.safetensors sha256:"):
        load("indexer", workspace=str(tmp_path / "ws"), model="demo")


def test_the_indexer_answers_a_query_of_another_model_with_an_error_and_keeps_serving(tmp_path):
    from docarray import DocList
    from test_executors import load

    from clipseek.docs import Query

    indexer = load("indexer", workspace=str(tmp_path / "ws"), model=TINY_MODEL, pretrained="none")
    video = SynthVideo("a", dim=64)
    indexer.library.index_range(video.upload(model="clipseek-tiny [random]"))
    query = video.vectors[0]
    wrong, right = indexer.search(DocList[Query]([Query(text="x", embedding=query, model=DEMO, top_k=3),
                                                  Query(text="x", embedding=query, model="clipseek-tiny [random]",
                                                        top_k=3)]))
    assert "clipseek-demo [" in wrong.error and "clipseek-tiny [random]" in wrong.error and not wrong.segments
    assert not right.error and right.segments[0].video_id == "a" and right.segments[0].start_s == 0.0
    indexer.close()


@pytest.mark.slow
def test_the_engine_does_not_start_on_a_workspace_of_another_model(tmp_path, media_dir):
    from clipseek.index import Library, open_backend

    library = Library(open_backend("embedded", tmp_path / "ws"))
    library.index_range(SynthVideo("a", dim=64).upload(model="clipseek-tiny [random]"))
    library.close()
    with pytest.raises(RuntimeError, match=r"indexer(?s:.*)clipseek-tiny \[random\](?s:.*)clipseek-demo\s+\["):
        with running_flow("demo", None, str(media_dir), tmp_path / "ws"):
            pass
