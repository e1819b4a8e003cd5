"""The text tower on ONNX Runtime (clipseek.model.onnx_text): torch-free token ids equal open_clip's, embeddings
equal torch's fp32 ones (cosine >= 0.9999) for the demo model, ViT-B-32 and a Hugging Face text tower, the export
cache is reused and rebuilt when corrupt, ``text_runtime`` chooses and falls back as documented, and a text
encoder on ONNX Runtime never imports torch."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import DEMO_WEIGHTS, REPO, TINY_MODEL
from docarray import DocList
from jina import Executor
from test_models import TINY_HF_CLIP, make_tiny_hf_model

from clipseek.docs import Query, TopicLabel
from clipseek.model import onnx_text
from clipseek.model.onnx_image import OnnxImageModel
from clipseek.model.onnx_text import OnnxTextModel, OnnxUnavailable, choose_runtime, cut_columns
from clipseek.model.spec import resolve_model
from clipseek.model.tokenize import BpeTokenizer, HfFileTokenizer, UnsupportedTokenizer, text_tokenizer

CORPUS = ["a dog", "", "   ", "A Dog JUMPS into a swimming-pool!!!", "红色的圆形在左边", "一只狗跳进游泳池",
          "🐶🐱 emoji 🚀🚀", "it's we're they'll I'd you've", "&amp; &lt;b&gt;html&lt;/b&gt; &quot;quoted&quot;",
          "x" * 500, "word " * 200, "café naïve résumé Ærøskøbing", "Привет, мир", "こんにちは世界",
          "1234567890 3.14 -7", "<start_of_text> inject <end_of_text>", "tab\tnew\nline\r\n  spaces",
          "ﬁ ligature and full-width ＡＢＣ", "\u200bzero\u200dwidth", "mixed 中文 and english 😀 text",
          "Ünïcödé ÀÉÎÕÜ", "!!!???...,,,;;;", "a red circle on the left of a blue square",
          "don't stop (until) [now] {ok} <tag>", "@user #hashtag $100 50% a&b", "السلام عليكم", "🇫🇷 flag 👨‍👩‍👧 family"]


def queries(count: int) -> list[str]:
    """``count`` varied query texts: sentences of the demo vocabulary and others, of all lengths."""
    words = ["a", "red", "blue", "green", "circle", "square", "triangle", "on", "the", "left", "right", "of",
             "dog", "jumps", "into", "pool", "两", "只", "猫", "🐶", "at", "night", "big", "small", "moving", "star"]
    rng = np.random.default_rng(7)
    return CORPUS + [" ".join(rng.choice(words, size=int(rng.integers(1, 30)))) for _ in range(count)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- token ids without torch -------------------------------------------------------------------------------
@pytest.mark.parametrize("context_length", [77, 40, 16, 5])
@pytest.mark.parametrize("clean", ["lower", "whitespace", "canonicalize"])
def test_the_torch_free_bpe_tokenizer_gives_open_clips_ids(context_length, clean):
    from open_clip.tokenizer import SimpleTokenizer

    reference = SimpleTokenizer(context_length=context_length, clean=clean)(CORPUS).numpy()
    ours = BpeTokenizer(context_length, clean)(CORPUS)
    assert ours.dtype == np.int64 and np.array_equal(ours, reference)
    assert (ours[:, -1][ours[:, -1] != 0] == reference[0, 0] + 1).all()  # truncated rows end with end-of-text


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory):
    """(config file, model directory) of an open_clip CLIP with a tiny random XLM-RoBERTa text tower."""
    pytest.importorskip("transformers")
    config = {**TINY_HF_CLIP, "text_cfg": {**TINY_HF_CLIP["text_cfg"], "context_length": 12}}
    return make_tiny_hf_model(tmp_path_factory.mktemp("hf-onnx"), "tiny-xlmr-onnx", config)


def test_the_torch_free_hugging_face_tokenizer_gives_open_clips_ids(tiny_hf_model):
    from clipseek.model.open_clip_compat import hf_tokenizer
    from clipseek.model.spec import model_config

    config_file, folder = tiny_hf_model
    spec = resolve_model(str(config_file), str(folder))
    config = model_config(spec)
    ours = text_tokenizer(spec, config)
    assert isinstance(ours, HfFileTokenizer) and ours.context_length == 12
    texts = CORPUS + ["红色 圆形 " * 20, "a red circle", "blue square 蓝色 正方形"]
    assert np.array_equal(ours(texts), hf_tokenizer(config, folder)(texts).numpy())


def test_tokenizers_without_a_torch_free_copy_are_refused_by_name():
    with pytest.raises(UnsupportedTokenizer, match="SigLIP"):
        text_tokenizer(resolve_model("ViT-B-16-SigLIP", "none"), {"text_cfg": {}})
    with pytest.raises(UnsupportedTokenizer, match="hub"):
        text_tokenizer(resolve_model("multilingual", "none"), {"text_cfg": {"hf_tokenizer_name": "xlm-roberta-base"}})
    with pytest.raises(UnsupportedTokenizer, match="reduction mask"):
        text_tokenizer(resolve_model("ViT-B-32", "none"),
                       {"text_cfg": {"tokenizer_kwargs": {"reduction_mask": "simple"}}})


def test_only_the_columns_that_can_change_the_embedding_are_kept():
    tokens = np.array([[5, 6, 7, 0, 0], [5, 7, 0, 0, 0]])
    assert cut_columns(tokens, "causal", 0).tolist() == [[5, 6, 7], [5, 7, 0]]
    padded = np.array([[0, 9, 2, 1, 1], [0, 2, 1, 1, 1]])
    assert cut_columns(padded, "padding", 1).tolist() == [[0, 9, 2], [0, 2, 1]]
    with pytest.raises(ValueError, match="unknown trim 'x'"):
        cut_columns(tokens, "x", 0)


# -- which runtime -----------------------------------------------------------------------------------------
def test_auto_runs_onnx_on_a_cpu_in_fp32_and_torch_elsewhere():
    assert choose_runtime("auto", "auto", "auto", cuda_devices=0)[0] == "onnx"
    assert choose_runtime("auto", "cpu", "fp32", cuda_devices=1)[0] == "onnx"
    assert choose_runtime("auto", "auto", "auto", cuda_devices=1) == (
        "torch", "text_runtime auto chose torch: the model runs on a GPU (device auto), where torch runs it in fp16")
    assert choose_runtime("auto", "cpu", "bf16", cuda_devices=0)[0] == "torch"
    assert choose_runtime("torch", "cpu", "fp32", cuda_devices=0)[0] == "torch"
    with pytest.raises(OnnxUnavailable, match="precision int8 \\(the ONNX text tower is fp32\\)"):
        choose_runtime("onnx", "cpu", "int8", cuda_devices=0)
    with pytest.raises(ValueError, match="text_runtime must be one of auto, torch, onnx, got 'tensorrt'"):
        choose_runtime("tensorrt", "cpu", "fp32", cuda_devices=0)


# -- embeddings: ONNX Runtime against torch fp32 -------------------------------------------------------------
def compare_with_torch(model: str, pretrained: str, cache_dir, count: int) -> OnnxTextModel:
    from clipseek.model.clip import ClipModel

    ours = OnnxTextModel(model, pretrained, threads=1, cache_dir=cache_dir)
    reference = ClipModel(resolve_model(model, pretrained), "cpu", "fp32", towers="text")
    texts = queries(count)
    got, want = ours.encode_texts(texts, batch_size=16), reference.encode_texts(texts)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert cosines(got, want).min() >= 0.9999, cosines(got, want).min()
    assert np.array_equal(ours.tokenize(texts), reference.tokenize(texts).numpy())
    assert ours.identity == reference.identity and ours.embed_dim == reference.embed_dim
    return ours


def test_the_demo_model_on_onnx_runtime_embeds_as_torch_does(tmp_path):
    ours = compare_with_torch("demo", str(DEMO_WEIGHTS), tmp_path, 300)
    assert ours.identity.startswith("clipseek-demo [clipseek-demo.safetensors sha256:")


def test_a_hugging_face_text_tower_on_onnx_runtime_embeds_as_torch_does(tiny_hf_model, tmp_path):
    config_file, folder = tiny_hf_model
    compare_with_torch(str(config_file), str(folder), tmp_path, 200)


def pictures(size: int, count: int) -> np.ndarray:
    """``count`` varied uint8 frames: solid colours, noise, and shapes on backgrounds."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    for i in range(0, count, 2):
        frames[i] = rng.integers(0, 256, 3, dtype=np.uint8)
        top, left = rng.integers(0, size // 2, 2)
        frames[i, top:top + size // 3, left:left + size // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return frames


def compare_images_with_torch(model: str, pretrained: str, cache_dir, count: int) -> None:
    from clipseek.model.clip import ClipModel

    ours = OnnxImageModel(model, pretrained, threads=1, cache_dir=cache_dir)
    reference = ClipModel(resolve_model(model, pretrained), "cpu", "fp32", towers="image")
    frames = pictures(reference.image_size, count)
    got, want = ours.encode_frames(frames, batch_size=8), reference.encode_frames(frames)
    assert got.shape == want.shape and cosines(got, want).min() >= 0.9999, cosines(got, want).min()
    assert (ours.identity, ours.image_size) == (reference.identity, reference.image_size)
    with pytest.raises(ValueError, match=f"frames must be uint8 N x {ours.image_size} x {ours.image_size} x 3"):
        ours.encode_frames(frames[:, 1:])


def test_the_demo_models_image_tower_on_onnx_runtime_embeds_as_torch_does(tmp_path):
    compare_images_with_torch("demo", str(DEMO_WEIGHTS), tmp_path, 40)


@pytest.mark.slow
def test_vit_b_32_on_onnx_runtime_embeds_as_torch_does(tmp_path):
    """Random weights (nothing is downloaded), saved as a checkpoint so that both runtimes read the same."""
    from safetensors.torch import save_file

    from clipseek.model.clip import ClipModel

    drawn = ClipModel(resolve_model("ViT-B-32", "none"), "cpu", "fp32", towers="both")
    checkpoint = tmp_path / "vit-b-32.safetensors"
    save_file({k: v.contiguous() for k, v in drawn.model.state_dict().items()}, str(checkpoint))
    del drawn
    compare_with_torch("ViT-B-32", str(checkpoint), tmp_path / "cache", 300)
    compare_images_with_torch("ViT-B-32", str(checkpoint), tmp_path / "cache", 24)


# -- the export cache ---------------------------------------------------------------------------------------
def test_the_export_is_reused_and_a_corrupt_one_is_exported_again(tmp_path, monkeypatch, caplog):
    first = OnnxTextModel("demo", str(DEMO_WEIGHTS), cache_dir=tmp_path)
    [exported] = list(tmp_path.glob("*.onnx"))
    weights = exported.with_name(exported.name + ".data")
    assert exported.name.startswith(f"clipseek-demo-text-v{onnx_text.EXPORT_FORMAT}-")
    assert sorted(p.name for p in tmp_path.iterdir()) == [exported.name, weights.name]
    reference = first.encode_texts(CORPUS)
    exports = []
    real_export = onnx_text.export_tower
    monkeypatch.setattr(onnx_text, "export_tower", lambda *a, **k: exports.append(a) or real_export(*a, **k))
    again = OnnxTextModel("demo", str(DEMO_WEIGHTS), cache_dir=tmp_path)
    assert exports == [] and np.array_equal(again.encode_texts(CORPUS), reference)
    for cut in (exported, weights):  # cut short, as by a full disk: the graph, then the weights
        cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rebuilt = OnnxTextModel("demo", str(DEMO_WEIGHTS), cache_dir=tmp_path)
        assert "does not load" in caplog.text and str(exported) in caplog.text
        assert np.allclose(rebuilt.encode_texts(CORPUS), reference, atol=1e-6)
    assert len(exports) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [exported.name, weights.name]  # no temporary file left


def test_the_export_child_is_given_the_weights_as_the_settings_name_them(tmp_path):
    out = tmp_path / "x.onnx"
    assert onnx_text.export_argv("demo", None, out)[3:] == ["--model", "demo", "--out", str(out), "--tower", "text"]
    assert onnx_text.export_argv("ViT-B-32", "none", out, "image")[3:] == [
        "--model", "ViT-B-32", "--pretrained", "none", "--out", str(out), "--tower", "image"]


def test_the_cache_file_changes_with_the_weights_and_the_config(tmp_path):
    demo = onnx_text.cache_file(resolve_model("demo", str(DEMO_WEIGHTS)), tmp_path)
    random = onnx_text.cache_file(resolve_model("demo", "none"), tmp_path)
    tiny = onnx_text.cache_file(resolve_model(TINY_MODEL, "none"), tmp_path)
    assert len({demo, random, tiny}) == 3
    assert demo == onnx_text.cache_file(resolve_model("demo", str(DEMO_WEIGHTS)), tmp_path)


# -- the text encoder -----------------------------------------------------------------------------------------
def load_text_encoder(**settings):
    return Executor.load_config(str(REPO / "services" / "text_encoder" / "config.yml"), uses_with=settings)


def test_auto_falls_back_to_torch_with_one_warning_when_the_export_fails(tmp_path, monkeypatch, caplog):
    from clipseek.model.clip import ClipModel

    def fail(model, *args, **kwargs):
        raise OnnxUnavailable(f"exporting the text tower of {model} to ONNX failed: no luck")

    monkeypatch.setattr(onnx_text, "export_tower", fail)
    with caplog.at_level(logging.WARNING):
        encoder = load_text_encoder(model=TINY_MODEL, pretrained="none", onnx_cache_dir=str(tmp_path))
    assert isinstance(encoder.clip, ClipModel)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("clipseek")]
    assert warnings == [f"text_runtime auto falls back to torch for {TINY_MODEL}: exporting the text tower of "
                        f"{TINY_MODEL} to ONNX failed: no luck"]
    with pytest.raises(OnnxUnavailable, match="no luck"):
        load_text_encoder(model=TINY_MODEL, pretrained="none", onnx_cache_dir=str(tmp_path), text_runtime="onnx")


def test_picture_queries_fall_back_to_torch_with_one_warning_when_the_image_export_fails(tmp_path, monkeypatch,
                                                                                        caplog):
    import base64
    import io

    from PIL import Image

    from clipseek.model.clip import ClipModel

    real_export = onnx_text.export_tower

    def text_only(model, pretrained, out, tower="text", **kwargs):
        if tower == "image":
            raise OnnxUnavailable(f"exporting the image tower of {model} to ONNX failed: no luck")
        return real_export(model, pretrained, out, tower, **kwargs)

    monkeypatch.setattr(onnx_text, "export_tower", text_only)
    encoder = load_text_encoder(model="demo", onnx_cache_dir=str(tmp_path))
    png = io.BytesIO()
    Image.new("RGB", (60, 40), (0, 0, 255)).save(png, format="PNG")
    with caplog.at_level(logging.WARNING):
        [doc] = encoder.encode(DocList[Query]([Query(image_base64=base64.b64encode(png.getvalue()).decode())]))
    assert isinstance(encoder.clip, OnnxTextModel) and isinstance(encoder._images, ClipModel)
    assert doc.image_embedding.shape == (64,) and not doc.error
    assert [r.getMessage() for r in caplog.records if r.name.startswith("clipseek") and r.levelno >= logging.WARNING
            ] == ["picture queries fall back to torch for demo: exporting the image tower of demo to ONNX failed: "
                  "no luck"]


def test_the_text_encoder_on_onnx_and_on_torch_answer_alike(tmp_path):
    on_onnx = load_text_encoder(model="demo", onnx_cache_dir=str(tmp_path), text_runtime="onnx")
    on_torch = load_text_encoder(model="demo", text_runtime="torch", precision="fp32")
    assert isinstance(on_onnx.clip, OnnxTextModel) and not isinstance(on_torch.clip, OnnxTextModel)
    texts = ["a red circle", "a blue square on the left", "红色"]
    a = on_onnx.encode(DocList[Query]([Query(text=t) for t in texts]))
    b = on_torch.encode(DocList[Query]([Query(text=t) for t in texts]))
    assert [d.model for d in a] == [d.model for d in b] and a[0].model.startswith("clipseek-demo [")
    assert cosines(np.stack([d.embedding for d in a]), np.stack([d.embedding for d in b])).min() >= 0.9999
    labels = on_onnx.encode_labels(DocList[TopicLabel]([TopicLabel(name="red", prompts=["red", "a red thing"])]))
    assert labels[0].embedding.shape == (2, 64) and not labels[0].error


TORCH_FREE_ENCODER = (
    "import base64, io, json, sys\n"
    "from PIL import Image\n"
    "from clipseek.torch_free import keep_torch_out\n"
    "keep_torch_out()  # as clipseek serve starts every executor\n"
    "from docarray import DocList\n"
    "from jina import Executor\n"
    "from clipseek.docs import Query, TopicLabel\n"
    "encoder = Executor.load_config('services/text_encoder/config.yml', uses_with={\n"
    "    'model': 'demo', 'text_runtime': 'onnx', 'onnx_cache_dir': sys.argv[1]})\n"
    "texts = ('a red circle', 'a blue square', 'a red circle')\n"
    "docs = encoder.encode(DocList[Query]([Query(text=t) for t in texts]))\n"
    "labels = encoder.encode_labels(DocList[TopicLabel]([TopicLabel(name='red', prompts=['red', 'crimson'])]))\n"
    "png = io.BytesIO(); Image.new('RGB', (120, 90), (220, 30, 30)).save(png, format='PNG')\n"
    "picture = encoder.encode(DocList[Query]([Query(text='a circle', image_base64=base64.b64encode(\n"
    "    png.getvalue()).decode())]))[0]\n"
    "print(json.dumps({'runtime': type(encoder.clip).__name__, 'dims': [len(d.embedding) for d in docs],\n"
    "                  'model': docs[0].model.split(' sha256:')[0],\n"
    "                  'labels': list(labels[0].embedding.shape), 'images': type(encoder._images).__name__,\n"
    "                  'picture': [len(picture.embedding), len(picture.image_embedding), picture.error],\n"
    "                  'loaded': sorted(m for m, v in sys.modules.items() if v is not None\n"
    "                                   and m.split('.')[0] in ('torch', 'torchvision', 'open_clip', 'triton'))}))\n")


def test_a_text_encoder_on_onnx_runtime_never_imports_torch(tmp_path):
    OnnxTextModel("demo", None, cache_dir=tmp_path)  # exported here first: the child that exports imports torch
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_ENCODER, str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "runtime": "OnnxTextModel", "dims": [64, 64, 64], "model": "clipseek-demo [clipseek-demo.safetensors",
        "labels": [2, 64], "images": "OnnxImageModel",
        "picture": [64, 64, ""], "loaded": []}
