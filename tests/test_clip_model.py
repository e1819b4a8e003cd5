"""Model loading and embedding, with a tiny random-weight model (plumbing, not meaning)."""

import numpy as np
import pytest
from conftest import TINY_MODEL

from clipseek.clip_model import ClipModel, image_size_for, load_clip, resolve_model
from clipseek.errors import ModelLoadError


@pytest.fixture(scope="module")
def tiny():
    return load_clip(TINY_MODEL, "none", "cpu", "fp32")  # fp32: the exactness checks below are fp32's


def test_the_model_is_loaded_once_per_process(tiny):
    assert load_clip(TINY_MODEL, "none", "cpu", "fp32") is tiny


def test_auto_precision_is_bf16_only_on_a_cpu_that_has_it(monkeypatch):
    import torch

    from clipseek import clip_model

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

    from clipseek.clip_model import mlp_linears, quantize_int8

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
