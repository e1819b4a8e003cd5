"""Model presets and local model directories: the multilingual preset's resolution, and a model whose
text tower is a Hugging Face XLM-RoBERTa built offline from a directory (a tiny random one, made here:
no weights are downloaded)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipseek.errors import ModelLoadError
from clipseek.model import spec as model_spec
from clipseek.model.spec import (
    DEFAULT_PRETRAINED,
    HF_TEXT_FILES,
    PRESETS,
    expected_identity,
    image_size_for,
    resolve_model,
)


def test_the_multilingual_preset_resolves_to_xlm_roberta_base_vit_b_32():
    spec = resolve_model("multilingual", None)
    assert (spec.name, spec.pretrained, spec.hf_dir) == ("xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k", None)
    assert resolve_model("multilingual", DEFAULT_PRETRAINED).pretrained == "laion5b_s13b_b90k"  # the setting's default
    assert resolve_model("multilingual", "none").pretrained is None
    assert image_size_for("multilingual") == 224


def test_every_preset_names_an_architecture_open_clip_knows_and_a_tag_of_it():
    import open_clip

    for name, preset in PRESETS.items():
        if preset.config_dir is not None:  # the demo model: its own config and checkpoint
            assert (preset.config_dir / f"{preset.model}.json").is_file() and Path(preset.pretrained).is_file()
            continue
        assert preset.model in open_clip.list_models(), name
        assert preset.pretrained in open_clip.list_pretrained_tags_by_model(preset.model), name


def test_a_model_directory_without_a_checkpoint_is_refused_naming_the_files(tmp_path):
    with pytest.raises(ModelLoadError, match="open_clip_model.safetensors"):
        resolve_model("multilingual", str(tmp_path))


# -- a tiny XLM-RoBERTa text tower, offline ---------------------------------------------------------------
TINY_HF_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base",
                 "hf_pooler_type": "mean_pooler", "hf_proj_type": "linear"},
}
WORDS = ["a", "red", "blue", "circle", "square", "红色", "蓝色", "圆形", "正方形"]


def write_tiny_xlm_roberta(folder: Path) -> None:
    """config.json and tokenizer.json of a tiny XLM-RoBERTa (the two files a model directory needs
    beside the checkpoint), as transformers and tokenizers save them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    letters = [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = [(t, 0.0) for t in specials] + [("▁" + w, -1.0) for w in WORDS] + letters
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=3))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                             special_tokens=[("<s>", 0), ("</s>", 2)])
    XLMRobertaTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>", cls_token="<s>", sep_token="</s>",
                            mask_token="<unk>").save_pretrained(folder)
    XLMRobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=80, pad_token_id=1, bos_token_id=0,
                     eos_token_id=2).save_pretrained(folder)
    for extra in ("tokenizer_config.json", "special_tokens_map.json"):  # the hub's xlm-roberta-base has neither
        (folder / extra).unlink(missing_ok=True)


def make_tiny_hf_model(root: Path, name: str, config: dict) -> tuple[Path, Path]:
    """(config file, model directory): an open_clip CLIP with a tiny XLM-RoBERTa text tower built from
    ``config``, its random weights (seed 0) saved as open_clip saves a checkpoint, in a directory laid
    out as docs/models.md says."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from clipseek.model.open_clip_compat import hf_text_overrides

    config_file = root / f"{name}.json"
    config_file.write_text(json.dumps(config))
    folder = root / f"{name}-weights"
    folder.mkdir()
    write_tiny_xlm_roberta(folder)
    open_clip.add_model_config(config_file)
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None, pretrained_text=False,
                                   **hf_text_overrides(config, folder, "both"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return config_file, folder


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory):
    pytest.importorskip("transformers")
    return make_tiny_hf_model(tmp_path_factory.mktemp("hf-model"), "tiny-xlmr-clip", TINY_HF_CLIP)


def test_a_model_directory_resolves_to_its_checkpoint_and_text_files(tiny_hf_model):
    config_file, folder = tiny_hf_model
    spec = resolve_model(str(config_file), str(folder))
    assert spec.hf_dir == folder.resolve() and spec.pretrained == str(folder.resolve() / "open_clip_model.safetensors")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*HF_TEXT_FILES, "open_clip_model.safetensors"])


def test_a_hugging_face_text_tower_loads_offline_from_its_directory_and_agrees_with_open_clip(tiny_hf_model):
    import open_clip
    import torch

    from clipseek.model.clip import ClipModel
    from clipseek.model.open_clip_compat import hf_text_overrides

    config_file, folder = tiny_hf_model
    text = ClipModel(resolve_model(str(config_file), str(folder)), "cpu", "fp32", towers="text")
    image = ClipModel(resolve_model(str(config_file), str(folder)), "cpu", "fp32", towers="image")
    assert text.has_text_tower and not text.has_image_tower and image.has_image_tower and not image.has_text_tower
    texts = ["a red circle", "红色圆形", "a blue square", "蓝色正方形"]
    ours = text.encode_texts(texts)
    assert ours.shape == (4, 16) and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # open_clip's own model, built from the same directory and checkpoint, on the same tokens
    reference = open_clip.create_model("tiny-xlmr-clip", pretrained=str(folder / "open_clip_model.safetensors"),
                                       pretrained_text=False, **hf_text_overrides(TINY_HF_CLIP, folder, "both")).eval()
    tokens = text.tokenize(texts)
    assert tokens.shape == (4, 77) and int(tokens[1, 0]) == 0  # <s> first, padded with <pad> to the context
    with torch.inference_mode():
        theirs = torch.nn.functional.normalize(reference.encode_text(tokens), dim=-1).numpy()
        frames = np.random.default_rng(0).integers(0, 255, size=(2, 32, 32, 3), dtype=np.uint8)
        assert image.encode_frames(frames).shape == (2, 16)
    assert np.abs(ours - theirs).max() < 1e-5
    # one at a time too, so that short texts really run on fewer tokens than the context
    for row, caption in zip(theirs, texts, strict=True):
        assert np.abs(text.encode_texts([caption])[0] - row).max() < 1e-5
    assert text.identity == image.identity
    assert text.identity.startswith("tiny-xlmr-clip [tiny-xlmr-clip-weights sha256:")


def test_a_model_directory_missing_its_tokenizer_says_which_file(tiny_hf_model, tmp_path):
    from clipseek.model.clip import ClipModel

    config_file, folder = tiny_hf_model
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    (partial / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="lacks tokenizer.json"):
        ClipModel(resolve_model(str(config_file), str(partial)), "cpu", "fp32", towers="text")
    image = ClipModel(resolve_model(str(config_file), str(partial)), "cpu", "fp32", towers="image")  # needs none
    assert image.has_image_tower


def test_without_transformers_the_error_names_the_extra(monkeypatch):
    real = model_spec.importlib_util.find_spec
    monkeypatch.setattr(model_spec.importlib_util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    spec = resolve_model("multilingual", "none")
    with pytest.raises(ModelLoadError, match=r"pip install 'clipseek\[multilingual\]'"):
        model_spec.check_hf_text_files(spec, model_spec.model_config(spec))
    plain = resolve_model("ViT-B-32", "none")
    model_spec.check_hf_text_files(plain, model_spec.model_config(plain))  # open_clip's own text tower: no need


def test_expected_identity_names_the_weights_and_hashes_local_files(tiny_hf_model):
    config_file, folder = tiny_hf_model
    assert expected_identity("multilingual", None) == ("xlm-roberta-base-ViT-B-32 [laion5b_s13b_b90k]", 512)
    assert expected_identity("ViT-B-32", "none") == ("ViT-B-32 [random]", 512)
    identity, dim = expected_identity(str(config_file), str(folder))
    digest = model_spec.file_sha256(folder / "open_clip_model.safetensors")[:16]
    assert (identity, dim) == (f"tiny-xlmr-clip [tiny-xlmr-clip-weights sha256:{digest}]", 16)
    demo, _ = expected_identity("demo", None)
    assert demo.startswith("clipseek-demo [clipseek-demo.safetensors sha256:")


def test_the_multilingual_tag_offline_says_to_use_a_model_directory(monkeypatch):
    pytest.importorskip("transformers")
    from clipseek.model.clip import ClipModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as conftest: no download may start (the error comes at once)
    with pytest.raises(ModelLoadError, match="config.json and tokenizer.json"):
        ClipModel(resolve_model("multilingual", None), "cpu", "fp32", towers="text")


def test_a_hugging_face_text_tower_runs_in_bf16_too(tiny_hf_model):
    """open_clip's bf16 leaves the Hugging Face LayerNorms in fp32 and fails; the tower is cast whole."""
    from clipseek.model.clip import ClipModel

    config_file, folder = tiny_hf_model
    texts = ["a red circle", "红色圆形"]
    fp32 = ClipModel(resolve_model(str(config_file), str(folder)), "cpu", "fp32", towers="text").encode_texts(texts)
    bf16 = ClipModel(resolve_model(str(config_file), str(folder)), "cpu", "bf16", towers="text").encode_texts(texts)
    assert bf16.dtype == np.float32 and (fp32 * bf16).sum(axis=1).min() > 0.99
