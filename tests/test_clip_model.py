"""Model loading and embedding, with a tiny random-weight model (plumbing, not meaning)."""

import os

import numpy as np
import pytest
from conftest import REPO, TINY_MODEL

from clipseek.errors import ModelLoadError
from clipseek.model.clip import ClipModel, load_clip
from clipseek.model.spec import image_size_for, resolve_model


@pytest.fixture(scope="module")
def tiny():
    return load_clip(TINY_MODEL, "none", "cpu", "fp32")  # fp32: the exactness checks below are fp32's


def test_the_model_is_loaded_once_per_process(tiny):
    assert load_clip(TINY_MODEL, "none", "cpu", "fp32") is tiny


def test_auto_precision_is_bf16_only_on_a_cpu_that_has_it(monkeypatch):
    import torch

    from clipseek.model import clip as clip_model

    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(clip_model, "cpu_has_native_bf16", lambda native=native: native)
        model = ClipModel(resolve_model(TINY_MODEL, "none"), "cpu", "auto")
        assert model.dtype == expected and model.precision == ("bf16" if native else "fp32")
        assert model.model.visual.conv1.weight.dtype == expected  # open_clip keeps norms in fp32
        frames = np.zeros((2, 32, 32, 3), dtype=np.uint8)
        assert model.encode_frames(frames).dtype == np.float32  # whatever runs inside, float32 comes out


def test_frame_embeddings_are_unit_length_and_batches_agree(tiny):
    frames = np.random.default_rng(0).integers(0, 255, size=(5, 32, 32, 3), dtype=np.uint8)
    one_batch = tiny.encode_frames(frames, batch_size=8)
    small_batches = tiny.encode_frames(frames, batch_size=2)
    assert one_batch.shape == (5, 64) and one_batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(one_batch, axis=1), 1.0, atol=1e-5)
    assert np.allclose(one_batch, small_batches, atol=1e-5)


def test_frames_of_another_size_are_resized_to_the_model_input(tiny):
    frames = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    assert tiny.encode_frames(frames).shape == (2, 64)
    with pytest.raises(ValueError, match="N x H x W x 3"):
        tiny.encode_frames(np.zeros((64, 64, 3), dtype=np.uint8))


def test_running_only_the_real_tokens_gives_the_full_context_embedding(tiny):
    texts = ["a dog jumps into a swimming pool", "一只狗跳进泳池", "red", "a " * 5000]
    fast = tiny.encode_texts(texts)
    for text in texts:  # one at a time too, so short texts really run short
        assert np.abs(tiny.encode_texts([text])[0] - tiny.encode_texts_full_context([text])[0]).max() < 1e-5
    assert np.abs(fast - tiny.encode_texts_full_context(texts)).max() < 1e-5


def test_a_query_longer_than_the_context_is_truncated_not_refused(tiny):
    tokens = tiny.tokenize(["word " * 10000])
    assert tokens.shape == (1, tiny.context_length)
    assert tiny.encode_texts(["word " * 10000]).shape == (1, 64)


def test_model_settings_resolve_without_torch():
    assert image_size_for("ViT-B-32") == 224
    assert image_size_for(TINY_MODEL) == 32
    spec = resolve_model("demo", None)
    assert spec.name == "clipseek-demo" and spec.pretrained.endswith("clipseek-demo.safetensors")
    assert resolve_model("ViT-B-32", "none").pretrained is None


def test_a_missing_checkpoint_file_fails_at_start_with_a_clear_error():
    with pytest.raises(ModelLoadError, match="checkpoint file not found: /nowhere/model.safetensors"):
        ClipModel(resolve_model(TINY_MODEL, "/nowhere/model.safetensors"))


def test_unreachable_pretrained_weights_say_how_to_use_a_local_checkpoint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # fail at once instead of retrying the network
    with pytest.raises(ModelLoadError, match="CLIPSEEK_PRETRAINED=/path/to"):
        ClipModel(resolve_model("RN50", "openai"))


def test_a_local_checkpoint_loads_through_the_same_path_as_real_weights(tiny, tmp_path):
    import torch

    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    loaded = ClipModel(resolve_model(TINY_MODEL, str(path)), "cpu", "fp32")
    frames = np.random.default_rng(1).integers(0, 255, size=(3, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(loaded.encode_frames(frames), tiny.encode_frames(frames), atol=1e-5)


def test_int8_quantises_the_transformer_mlps_and_keeps_embeddings_close(tiny):
    import torch

    from clipseek.model.open_clip_compat import mlp_linears, quantize_int8

    names = mlp_linears(tiny.model)
    assert names and all(".mlp." in f".{n}." for n in names)  # both towers' c_fc and c_proj
    assert len(names) == 2 * (2 + 2)  # 2 layers per tower here, 2 linears per MLP
    quantised = quantize_int8(tiny.model)
    modules = dict(quantised.named_modules())
    assert all(type(modules[n]) is torch.ao.nn.quantized.dynamic.Linear for n in names)
    assert type(dict(tiny.model.named_modules())[next(iter(names))]) is torch.nn.Linear  # a copy: fp32 kept
    frames = np.random.default_rng(3).integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
    reference = tiny.encode_frames(frames)
    fp32_model = tiny.model
    try:
        tiny.model = quantised
        close = tiny.encode_frames(frames)
        texts = tiny.encode_texts(["a red circle", "a blue square on green"])
    finally:
        tiny.model = fp32_model
    assert (close * reference).sum(axis=1).min() > 0.99
    assert (texts * tiny.encode_texts(["a red circle", "a blue square on green"])).sum(axis=1).min() > 0.99


def test_int8_demo_model_embeds_like_fp32_and_bad_precisions_are_refused():
    fp32 = load_clip("demo", None, "cpu", "fp32")
    int8 = load_clip("demo", None, "cpu", "int8")
    assert int8.precision == "int8" and int8.dtype == fp32.dtype
    frames = np.random.default_rng(4).integers(0, 255, size=(4, fp32.image_size, fp32.image_size, 3), dtype=np.uint8)
    assert (fp32.encode_frames(frames) * int8.encode_frames(frames)).sum(axis=1).min() > 0.999
    texts = ["a red circle", "a yellow star on a dark background"]
    assert (fp32.encode_texts(texts) * int8.encode_texts(texts)).sum(axis=1).min() > 0.999
    with pytest.raises(ModelLoadError, match="unknown precision 'int4'"):
        ClipModel(resolve_model(TINY_MODEL, "none"), "cpu", "int4")
    with pytest.raises(ModelLoadError, match="int8 runs on the CPU only"):
        ClipModel(resolve_model(TINY_MODEL, "none"), "cuda", "int8")


# -- one tower per encoder ------------------------------------------------------------------------
def parameter_names(clip) -> set[str]:
    return {name for name, _ in clip.model.named_parameters()}


def test_each_encoder_allocates_only_its_own_tower(tiny, tmp_path):
    import torch

    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    text = ClipModel(resolve_model(TINY_MODEL, str(path)), "cpu", "fp32", towers="text")
    image = ClipModel(resolve_model(TINY_MODEL, str(path)), "cpu", "fp32", towers="image")
    assert not any(n.startswith("visual.") for n in parameter_names(text)) and text.model.visual is None
    assert all(n.startswith("visual.") or n == "logit_scale" for n in parameter_names(image))
    assert parameter_names(text) | parameter_names(image) == parameter_names(tiny)
    texts = ["a red circle", "一只狗跳进泳池"]
    frames = np.random.default_rng(5).integers(0, 255, size=(3, 32, 32, 3), dtype=np.uint8)
    assert np.array_equal(text.encode_texts(texts), tiny.encode_texts(texts))
    assert np.array_equal(image.encode_frames(frames), tiny.encode_frames(frames))
    with pytest.raises(RuntimeError, match="text tower only: it cannot embed frames"):
        text.encode_frames(frames)
    with pytest.raises(RuntimeError, match="image tower only: it cannot embed texts"):
        image.encode_texts(texts)


def test_vit_b_32_text_encoder_holds_63m_parameters_not_151m():
    import open_clip

    from clipseek.model.towers import build_on_meta

    text = build_on_meta(open_clip, "ViT-B-32", "text", "bf16", None)  # on the meta device: nothing allocated
    image = build_on_meta(open_clip, "ViT-B-32", "image", "bf16", None)
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert 63_000_000 < count(text) < 64_000_000 and 87_000_000 < count(image) < 88_500_000
    assert text.transformer.resblocks[0].mlp.c_fc.weight.dtype == text.token_embedding.weight.dtype
    assert str(text.token_embedding.weight.dtype) == "torch.bfloat16"  # the 25 M-entry table, not fp32
    assert str(text.ln_final.weight.dtype) == "torch.float32"  # open_clip keeps norms in fp32


def test_the_demo_checkpoint_loads_one_tower_as_the_whole_model_does():
    whole = load_clip("demo", None, "cpu", "fp32")
    text = load_clip("demo", None, "cpu", "fp32", towers="text")
    image = load_clip("demo", None, "cpu", "fp32", towers="image")
    assert text is whole and image is whole  # a model with both towers serves both in one process
    text = ClipModel(resolve_model("demo", None), "cpu", "fp32", towers="text")
    image = ClipModel(resolve_model("demo", None), "cpu", "fp32", towers="image")
    frames = np.random.default_rng(6).integers(0, 255, size=(2, 96, 96, 3), dtype=np.uint8)
    assert np.array_equal(image.encode_frames(frames), whole.encode_frames(frames))
    assert np.array_equal(text.encode_texts(["a yellow star"]), whole.encode_texts(["a yellow star"]))


def test_a_bf16_text_tower_embeds_as_open_clips_own_bf16_model():
    import open_clip

    from clipseek.model.spec import DEMO_MODEL_DIR

    ours = ClipModel(resolve_model("demo", None), "cpu", "bf16", towers="text")
    open_clip.add_model_config(DEMO_MODEL_DIR)
    theirs = open_clip.create_model("clipseek-demo", pretrained=str(DEMO_MODEL_DIR / "clipseek-demo.safetensors"),
                                    precision="bf16").eval()
    ours_whole_context = ours.encode_texts_full_context(["a red circle", "a blue square on green"])
    import torch

    with torch.inference_mode():
        tokens = ours.tokenize(["a red circle", "a blue square on green"])
        reference = torch.nn.functional.normalize(theirs.encode_text(tokens).float(), dim=-1).numpy()
    assert np.array_equal(ours_whole_context, reference)  # same weights, same dtypes, same arithmetic


def test_checkpoints_wrapped_or_in_the_old_torch_format_load_tower_only(tiny, tmp_path):
    import torch

    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in tiny.model.state_dict().items()}}, wrapped)
    legacy = tmp_path / "legacy.pt"  # not a zip: cannot be memory-mapped, read whole
    torch.save(tiny.model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    for path in (wrapped, legacy):
        text = ClipModel(resolve_model(TINY_MODEL, str(path)), "cpu", "fp32", towers="text")
        assert np.array_equal(text.encode_texts(["red"]), tiny.encode_texts(["red"])), path


def test_a_checkpoint_open_clip_must_convert_goes_through_its_loader(tiny, tmp_path, caplog):
    import json
    import logging

    import torch

    config = json.loads(open(TINY_MODEL).read())
    config["custom_text"] = True  # text tower under `text.`: the plain CLIP checkpoint needs converting
    (tmp_path / "tiny-custom.json").write_text(json.dumps(config))
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    caplog.set_level(logging.INFO, logger="clipseek.clip")
    text = ClipModel(resolve_model(str(tmp_path / "tiny-custom.json"), str(path)), "cpu", "fp32", towers="text")
    assert "open_clip's own loader" in caplog.text
    assert text.model.visual is None and text.model.text is not None
    assert np.abs(text.encode_texts(["red"]) - tiny.encode_texts(["red"])).max() < 1e-5


def test_a_pretrained_tag_loads_its_file_and_preprocessing_one_tower_only(monkeypatch):
    import open_clip

    from clipseek.model.spec import DEMO_MODEL_DIR

    asked = []
    monkeypatch.setattr(open_clip, "get_pretrained_cfg",
                        lambda name, tag: {"hf_hub": "x/y", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
                        if (name, tag) == ("clipseek-demo", "mytag") else {})
    monkeypatch.setattr(open_clip, "download_pretrained",
                        lambda cfg, **kw: asked.append(cfg) or str(DEMO_MODEL_DIR / "clipseek-demo.safetensors"))
    image = ClipModel(resolve_model("demo", "mytag"), "cpu", "fp32", towers="image")
    assert asked and image.model.transformer is None
    assert image._mean.flatten().tolist() == [0.5] * 3 and image._std.flatten().tolist() == [0.25] * 3
    text = ClipModel(resolve_model("demo", "mytag"), "cpu", "fp32", towers="text")
    whole = load_clip("demo", None, "cpu", "fp32")
    assert np.array_equal(text.encode_texts(["a red circle"]), whole.encode_texts(["a red circle"]))
    with pytest.raises(ModelLoadError, match="neither a checkpoint file nor a pretrained tag"):
        ClipModel(resolve_model("demo", "othertag"), "cpu", "fp32", towers="text")


def test_random_single_towers_are_allocated_in_their_final_precision():
    text = ClipModel(resolve_model(TINY_MODEL, "none"), "cpu", "bf16", towers="text")
    weights = dict(text.model.named_parameters())
    assert str(weights["transformer.resblocks.0.mlp.c_fc.weight"].dtype) == "torch.bfloat16"
    assert str(weights["ln_final.weight"].dtype) == "torch.float32"
    assert float(weights["ln_final.weight"].detach().float().mean()) == 1.0
    vectors = text.encode_texts(["a red circle", "a blue square", "a red circle"])
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert np.array_equal(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1], atol=1e-3)
    with pytest.raises(ModelLoadError, match="towers must be one of both, image, text, got 'audio'"):
        ClipModel(resolve_model(TINY_MODEL, "none"), "cpu", "fp32", towers="audio")


# -- queries: cache and threads -------------------------------------------------------------------
def test_the_query_cache_keeps_the_most_recently_used_embeddings():
    from clipseek.model.query_cache import QueryCache

    cache = QueryCache(2)
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    first = cache.encode(["red", "blue", "red"], encode)
    assert calls == [["red", "blue"]] and [v[0] for v in first] == [3, 4, 3]  # each text embedded once
    assert cache.encode(["blue"], encode)[0][0] == 4 and len(calls) == 1  # a hit: no model call
    cache.encode(["green"], encode)  # evicts "red", the least recently used
    assert calls[-1] == ["green"] and cache.get("red") is None and cache.get("blue") is not None
    with pytest.raises(ValueError, match="read-only"):
        cache.get("blue")[0] = 0.0
    nothing = QueryCache(0)
    nothing.encode(["red"], encode)
    nothing.encode(["red"], encode)
    assert calls[-2:] == [["red"], ["red"]] and len(nothing) == 0
    with pytest.raises(ValueError, match="must be 0 or more, got -1"):
        QueryCache(-1)


def test_text_embedding_runs_on_the_threads_asked_for_and_restores_torch(tiny, monkeypatch):
    import torch

    seen = []
    tokenize = tiny.tokenize
    monkeypatch.setattr(tiny, "tokenize", lambda texts: seen.append(torch.get_num_threads()) or tokenize(texts))
    before = torch.get_num_threads()
    reference = tiny.encode_texts(["a red circle"])
    tiny.text_threads = 1
    try:
        assert np.abs(tiny.encode_texts(["a red circle"]) - reference).max() < 1e-5  # summed in another order
    finally:
        tiny.text_threads = 0
    assert seen == [before, 1] and torch.get_num_threads() == before


def test_the_text_encoder_answers_repeated_queries_from_its_cache(monkeypatch):
    from docarray import DocList
    from jina import Executor

    from clipseek.docs import Query

    encoder = Executor.load_config(str(REPO / "services" / "text_encoder" / "config.yml"),
                                   uses_with={"model": TINY_MODEL, "pretrained": "none", "query_cache_size": 8})
    assert encoder.clip.text_threads == 2 and encoder.cache.size == 8  # on ONNX Runtime: onnx_threads
    calls = []
    encode = encoder.clip.encode_texts
    monkeypatch.setattr(encoder.clip, "encode_texts", lambda texts, *a: calls.append(texts) or encode(texts, *a))
    first = encoder.encode(DocList[Query]([Query(text="a red circle"), Query(text="  a blue square ")]))
    again = encoder.encode(DocList[Query]([Query(text="a blue square"), Query(text="a red circle")]))
    assert calls == [["a red circle", "a blue square"]]  # the second request never reached the model
    assert np.array_equal(again[1].embedding, first[0].embedding) and np.array_equal(again[0].embedding,
                                                                                     first[1].embedding)
    again[0].embedding[:] = 0  # each answer owns its vector: the cache is untouched
    assert np.array_equal(encoder.encode(DocList[Query]([Query(text="a blue square")]))[0].embedding,
                          first[1].embedding)


def test_an_architecture_that_cannot_be_laid_out_on_meta_is_built_by_open_clip(tiny, tmp_path, monkeypatch):
    import torch

    from clipseek.model import towers as clip_towers

    def refuse(*args, **kwargs):
        raise clip_towers._NotMaterializable("a module computes a tensor")

    monkeypatch.setattr(clip_towers, "build_on_meta", refuse)
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    text = ClipModel(resolve_model(TINY_MODEL, str(path)), "cpu", "fp32", towers="text")
    assert text.model.visual is None
    assert np.array_equal(text.encode_texts(["a red circle"]), tiny.encode_texts(["a red circle"]))
    image = ClipModel(resolve_model(TINY_MODEL, "none"), "cpu", "fp32", towers="image")  # open_clip's own init
    assert image.model.transformer is None and image.encode_frames(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 64)


def test_the_encoders_openmp_threads_sleep_unless_the_environment_says_otherwise():
    """A process that first imports torch by loading a model sets OMP_WAIT_POLICY=PASSIVE before the import
    (clipseek.model.clip.sleep_between_parallel_regions); a value the user set is kept."""
    import subprocess
    import sys

    code = ("import os, sys; from clipseek.torch_free import keep_torch_out; keep_torch_out();"
            "from clipseek.model.clip import load_clip; load_clip(sys.argv[1], 'none', 'cpu', 'fp32', towers='image');"
            "import torch; print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    found = subprocess.run([sys.executable, "-c", code, TINY_MODEL], env=env, capture_output=True, text=True,
                           timeout=300)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.split()[-1] == "PASSIVE"
    kept = subprocess.run([sys.executable, "-c", code, TINY_MODEL], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                          capture_output=True, text=True, timeout=300)
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert kept.stdout.split()[-1] == "ACTIVE"
