"""The shipped demo model and the demo video generator.

The model is loaded the way the engine loads it (open_clip config + local .safetensors, offline) and scored
on frames drawn from a seed that neither training nor ``tools/eval_demo_model.py`` uses. The videos are
decoded again and compared frame by frame with what the generator drew, so their truth is exact.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from safetensors import safe_open

from clipseek.demo import EVAL_SEED, MODEL_CONFIG_PATH, MODEL_NAME, MODEL_WEIGHTS_PATH, TRAIN_SEED, vocab
from clipseek.index.confidence import calibration_for
from clipseek.media.imaging import mean_luma

TOOLS_DIR = Path(__file__).resolve().parents[1] / "tools"
TEST_SEED = 31_337  # neither the training seed nor the evaluation seed

# Measured on frames from TEST_SEED with the shipped checkpoint: text->image 100%, image->text 100%, with
# English and with Chinese captions (3 x 64 frames; on 10 x 64 frames from EVAL_SEED: 100% / 100% in English
# and in Chinese; the checkpoint of the seventh session, image tower tuned). The bars sit a little below (3 misses
# in 192 frames); raise them with a better checkpoint, never lower them to pass.
MIN_TEXT_TO_IMAGE_TOP1 = 0.98
MIN_IMAGE_TO_TEXT_TOP1 = 0.98


def load_tool(name: str):
    """Import ``tools/<name>.py`` (the tools are scripts, not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TOOLS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the module is executing
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def evaluation():
    return load_tool("eval_demo_model")


@pytest.fixture(scope="module")
def demo_model(evaluation):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # a wrong name must fail at once, not after retries
        open_clip.add_model_config(MODEL_CONFIG_PATH)
        model = open_clip.create_model(MODEL_NAME, pretrained=str(MODEL_WEIGHTS_PATH))
        model.eval()
        tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    return model, tokenizer


def scene_frame(shape: str, colour: str, seed: int = TEST_SEED):
    rng = np.random.default_rng([seed, vocab.SHAPES.index(shape), list(vocab.COLOURS).index(colour)])
    return vocab.render_scene(vocab.random_scene(rng, shape, colour, size_range=(0.35, 0.55)), 320, 240)


def test_shipped_checkpoint_is_small_fp16_and_keyed_like_open_clip(demo_model):
    model, _ = demo_model
    assert MODEL_WEIGHTS_PATH.stat().st_size < 10_000_000
    with safe_open(str(MODEL_WEIGHTS_PATH), framework="pt") as weights:
        keys = set(weights.keys())
        dtypes = {weights.get_tensor(key).dtype for key in keys}
    assert keys == set(model.state_dict())
    assert torch.float16 in dtypes and torch.float32 not in dtypes


def test_config_context_fits_every_caption_phrasing(demo_model):
    _, tokenizer = demo_model
    config = json.loads(MODEL_CONFIG_PATH.read_text())
    longest = max(len(tokenizer.encode(text)) for concept in vocab.CONCEPTS
                  for text in vocab.captions(concept.shape, concept.colour))
    assert longest + 2 <= config["text_cfg"]["context_length"]  # + start and end of text


@pytest.mark.parametrize("language", vocab.LANGUAGES)
def test_heldout_frames_are_retrieved_by_caption_and_captioned_correctly(demo_model, evaluation, language):
    assert TEST_SEED not in (TRAIN_SEED, EVAL_SEED)
    model, tokenizer = demo_model
    scores = evaluation.retrieval_scores(model, tokenizer, evaluation.heldout_frames(TEST_SEED, trials=3), language)
    assert scores.text_to_image >= MIN_TEXT_TO_IMAGE_TOP1, str(scores)
    assert scores.image_to_text >= MIN_IMAGE_TO_TEXT_TOP1, str(scores)


def test_captions_exist_in_english_and_chinese():
    assert vocab.caption("circle", "red") == "a red circle" == vocab.Concept("circle", "red").caption
    assert vocab.caption("circle", "red", language="zh") == "一个红色的圆形"
    assert vocab.Concept("circle", "red").caption_zh == "一个红色的圆形"
    assert "红色圆形" in vocab.captions("circle", "red", "zh")
    assert vocab.caption("star", "orange") == "an orange star"
    both = vocab.captions("ring", "white")
    assert len(both) == len(vocab.CAPTION_TEMPLATES) + len(vocab.CAPTION_TEMPLATES_ZH) == len(set(both))
    assert set(vocab.COLOURS_ZH) == set(vocab.COLOURS) and set(vocab.SHAPES_ZH) == set(vocab.SHAPES)
    with pytest.raises(ValueError, match="language must be one of"):
        vocab.caption("circle", "red", language="fr")


@pytest.mark.parametrize(("query", "match", "other"), [
    ("a red circle", ("circle", "red"), ("square", "blue")),
    ("a yellow star", ("star", "yellow"), ("circle", "yellow")),
    ("a blue heart", ("heart", "blue"), ("heart", "purple")),
    ("a photo of a white ring", ("ring", "white"), ("circle", "white")),
    ("an orange triangle", ("triangle", "orange"), ("triangle", "red")),
    ("green cross", ("cross", "green"), ("star", "green")),
    ("a cyan diamond", ("diamond", "cyan"), ("square", "cyan")),
    ("一个红色的圆形", ("circle", "red"), ("square", "blue")),
    ("黄色星形", ("star", "yellow"), ("circle", "yellow")),
    ("蓝色的心形", ("heart", "blue"), ("heart", "purple")),
    ("一张白色圆环的照片", ("ring", "white"), ("circle", "white")),
    ("这个三角形是橙色的", ("triangle", "orange"), ("triangle", "red")),
    ("绿色十字", ("cross", "green"), ("star", "green")),
    ("画面中有一个青色的菱形", ("diamond", "cyan"), ("square", "cyan")),
])
def test_caption_is_nearer_its_own_frame_than_another(demo_model, evaluation, query, match, other):
    model, tokenizer = demo_model
    text = evaluation.encode_texts(model, tokenizer, [query])
    images = evaluation.encode_frames(model, [scene_frame(*match), scene_frame(*other)])
    similarity = (text @ images.T)[0]
    assert similarity[0] > similarity[1], f"{query!r}: {match} {similarity[0]:.3f} vs {other} {similarity[1]:.3f}"


def test_english_words_outside_the_vocabulary_stay_below_medium_confidence_on_every_concept(demo_model, evaluation):
    """Step 4 (tools/tune_demo_unknown.py): a query of English words the model never learned (and that step
    never trained on) scores under the demo calibration's "medium" cosine on a frame of every concept, so
    the confidence levels can say that nothing matches (before step 4: up to ~0.95)."""
    model, tokenizer = demo_model
    queries = ["a brown horse", "a black cat", "sunset over the sea", "a wedding", "a spaceship", "a horse"]
    texts = evaluation.encode_texts(model, tokenizer, queries)
    frames = evaluation.encode_frames(model, [scene_frame(c.shape, c.colour) for c in vocab.CONCEPTS])
    highest = (texts @ frames.T).max(dim=1).values
    bar = calibration_for("clipseek-demo").text.medium_cosine
    assert (highest < bar).all(), {q: round(float(v), 3) for q, v in zip(queries, highest, strict=True)}
    captions = evaluation.encode_texts(model, tokenizer, [c.caption for c in vocab.CONCEPTS])
    assert ((captions @ frames.T).diagonal() > bar).all()  # and a caption on its own frame clears it


def test_encode_argv_pipes_raw_rgb_into_h264():
    videos = load_tool("make_demo_videos")
    argv = videos.encode_argv(Path("out/demo.mp4"), 320, 240, 25)
    assert argv[0] == "ffmpeg" and argv[-1] == str(Path("out/demo.mp4"))
    joined = " ".join(argv)
    for part in ("-f rawvideo", "-pix_fmt rgb24", "-s 320x240", "-r 25", "-i pipe:", "-c:v libx264",
                 "-pix_fmt yuv420p", "-g 50"):
        assert part in joined


def probe_duration_s(path: Path) -> float:
    argv = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
    return float(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def block_means(frame: np.ndarray, block_px: int = 4) -> np.ndarray:
    height, width, _ = frame.shape
    blocks = frame.reshape(height // block_px, block_px, width // block_px, block_px, 3)
    return blocks.astype(np.float32).mean(axis=(1, 3))


def test_demo_videos_match_their_truth_to_the_frame(tmp_path, evaluation):
    videos = load_tool("make_demo_videos")
    truth = videos.main([str(tmp_path), "--videos", "2", "--seed", "5", "--quiet"])
    assert json.loads((tmp_path / "truth.json").read_text(encoding="utf-8")) == truth
    plans = videos.plan_library(2, seed=5)
    frame_s = 1 / truth["fps"]
    for plan, entry in zip(plans, truth["videos"], strict=True):
        path = tmp_path / entry["file"]
        assert abs(probe_duration_s(path) - entry["duration_s"]) <= frame_s
        shots = entry["shots"]
        assert shots[0]["start_s"] == 0 and shots[-1]["end_s"] == entry["duration_s"]
        for before, after in zip(shots, shots[1:], strict=False):
            assert before["end_s"] == after["start_s"]
            assert (before["shape"], before["colour"]) != (after["shape"], after["colour"])
        for shot in shots:
            assert shot["caption"] == vocab.caption(shot["shape"], shot["colour"])
            assert shot["end_s"] - shot["start_s"] >= 0.5
            frame_index = shot["start_s"] / frame_s
            assert abs(frame_index - round(frame_index)) < 1e-6

        # Every decoded frame is the frame drawn for it: shots start and end where the truth says. Frames
        # are compared as means of 4x4 blocks, so H.264 smoothing a noisy background does not count.
        drawn_frames = videos.video_frames(plan)
        decoded = evaluation.decoded_video_frames(path, entry["width"], entry["height"])
        count = 0
        for count, (drawn, decoded_frame) in enumerate(zip(drawn_frames, decoded, strict=True), start=1):
            error = np.abs(block_means(drawn) - block_means(decoded_frame)).mean()
            assert error < 4.0, f"{entry['file']} frame {count - 1}: mean error {error:.1f}"
        assert count == entry["frames"]


def test_first_video_has_long_and_short_shots_a_fade_and_an_equal_brightness_cut():
    videos = load_tool("make_demo_videos")
    plan = videos.plan_library(1, seed=videos.DEFAULT_SEED)[0]
    entry = videos.truth_of(plan)
    lengths_s = [shot["end_s"] - shot["start_s"] for shot in entry["shots"]]
    assert entry["file"] == "demo_01.mp4" and len(lengths_s) >= 8
    assert min(lengths_s) < 1.0 and max(lengths_s) >= 20.0

    frames = list(videos.video_frames(plan))
    fade = next(t for t in entry["transitions"] if t["kind"] == "fade")
    black = frames[round(fade["black_start_s"] * 25):round(fade["black_end_s"] * 25)]
    assert black and all(frame.max() == 0 for frame in black)
    assert fade["black_start_s"] < fade["time_s"] < fade["black_end_s"]

    cut = next(t for t in entry["transitions"] if t["equal_brightness"])
    last, first = frames[round(cut["time_s"] * 25) - 1], frames[round(cut["time_s"] * 25)]
    assert abs(mean_luma(last) - mean_luma(first)) < 0.5
    assert np.abs(last.astype(np.int16) - first).max() > 100  # yet the picture changes


def test_training_batches_are_seeded_and_caption_in_both_languages(demo_model, evaluation):
    train = load_tool("train_demo_model")
    model, tokenizer = demo_model
    tokens = torch.stack([tokenizer(vocab.captions(c.shape, c.colour)) for c in vocab.CONCEPTS])
    size_px = int(model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0])
    mean, std = evaluation.model_mean_std(model)
    batches = train.TrainingBatches(2, 5, 32, size_px, mean, std, tokens)
    images, captions, concept_ids = batches[1]
    again = batches[1]
    assert images.shape == (32, 3, size_px, size_px) and captions.shape == (32, tokens.shape[-1])
    assert torch.equal(images, again[0]) and torch.equal(captions, again[1]) and torch.equal(concept_ids, again[2])
    assert not torch.equal(images, batches[0][0])
    chinese = {tuple(t.tolist()) for t in tokens[:, len(vocab.CAPTION_TEMPLATES):].reshape(-1, tokens.shape[-1])}
    assert any(tuple(t.tolist()) in chinese for t in captions)  # a Chinese caption among 32 (each is one in two)


def test_a_resumed_run_draws_the_batches_and_rates_of_the_steps_it_resumes_at(demo_model, evaluation):
    train = load_tool("train_demo_model")
    model, tokenizer = demo_model
    tokens = torch.stack([tokenizer(vocab.captions(c.shape, c.colour)) for c in vocab.CONCEPTS])
    size_px = int(model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0])
    mean, std = evaluation.model_mean_std(model)
    whole = train.TrainingBatches(4, 5, 8, size_px, mean, std, tokens)
    resumed = train.TrainingBatches(4, 5, 8, size_px, mean, std, tokens, start_step=2)
    assert len(resumed) == 2
    assert all(torch.equal(a, b) for a, b in zip(resumed[0], whole[2], strict=True))
    # The schedule resumes where it was, warmed up again over `warmup` steps (the optimizer restarts).
    scheduled = train.learning_rate(500, 1000, 3e-3, 10)
    assert train.learning_rate(500, 1000, 3e-3, 10, start_step=500) == pytest.approx(scheduled / 10)
    assert train.learning_rate(509, 1000, 3e-3, 10, start_step=500) == train.learning_rate(509, 1000, 3e-3, 10)


def test_chinese_captions_share_no_token_with_english_ones(demo_model):
    """What tools/distill_demo_text.py relies on: training the Chinese captions' token rows leaves every
    English caption's embedding as it was."""
    _, tokenizer = demo_model
    english = {token for concept in vocab.CONCEPTS for text in vocab.captions(concept.shape, concept.colour, "en")
               for token in tokenizer.encode(text)}
    chinese = {token for concept in vocab.CONCEPTS for text in vocab.captions(concept.shape, concept.colour, "zh")
               for token in tokenizer.encode(text)}
    assert chinese and english and not english & chinese


def test_tuning_the_image_tower_leaves_every_caption_embedding_as_it_was(demo_model, evaluation, tmp_path):
    """tools/tune_demo_image.py: two tiny steps change the image tower and nothing else, and the loss ranks a
    frame's own concept first once its features sit on that concept's target."""
    load_tool("train_demo_model")  # imported by name by the tool (tools/ is on sys.path when it runs as a script)
    tune = load_tool("tune_demo_image")
    out = tmp_path / "tuned.safetensors"
    tune.main(["--out", str(out), "--steps", "2", "--batch-size", "16", "--workers", "0", "--warmup", "1",
               "--lr", "1e-2", "--eval-trials", "0"])
    tuned, tokenizer = evaluation.load_demo_model(MODEL_CONFIG_PATH, out)
    model, _ = demo_model
    texts = [text for concept in vocab.CONCEPTS[:8] for text in vocab.captions(concept.shape, concept.colour)]
    with torch.inference_mode():
        assert torch.equal(model.encode_text(tokenizer(texts)), tuned.encode_text(tokenizer(texts)))
    frames = [scene_frame(concept.shape, concept.colour) for concept in vocab.CONCEPTS[:4]]
    assert not torch.equal(evaluation.encode_frames(model, frames), evaluation.encode_frames(tuned, frames))
    with safe_open(str(out), "pt") as handle:
        assert handle.metadata()["tuned_from"] == MODEL_WEIGHTS_PATH.name
    assert tune.concept_targets(model, tokenizer, per_language=True).shape[:2] == (len(vocab.LANGUAGES),
                                                                                   len(vocab.CONCEPTS))
    targets = tune.concept_targets(model, tokenizer)
    assert targets.shape[:2] == (1, len(vocab.CONCEPTS))
    ids = torch.tensor([0, 1, 2, 3])
    on_target = tune.tuning_loss(targets[0, ids], targets, ids, 50.0)
    off_target = tune.tuning_loss(targets[0, torch.tensor([1, 2, 3, 0])], targets, ids, 50.0)
    assert on_target < off_target


def test_the_unknown_word_step_leaves_every_caption_embedding_as_it_was(demo_model, evaluation, tmp_path):
    """tools/tune_demo_unknown.py (step 4 of the demo checkpoint: docs/demo-model.md) moves only the token
    rows no caption uses: every caption embeds bit for bit as before."""
    tune = load_tool("tune_demo_unknown")
    model, tokenizer = demo_model
    out = tmp_path / "unknown.safetensors"
    tune.main(["--out", str(out), "--steps", "5", "--anchor", "5"])
    again, _ = evaluation.load_demo_model(MODEL_CONFIG_PATH, out)
    texts = [text for concept in vocab.CONCEPTS for text in vocab.captions(concept.shape, concept.colour)]
    with torch.inference_mode():
        assert torch.equal(model.encode_text(tokenizer(texts)), again.encode_text(tokenizer(texts)))
        unknown = tokenizer(["a black cat"])
        assert not torch.equal(model.encode_text(unknown), again.encode_text(unknown))
    known = tune.vocabulary_token_ids(tokenizer)
    assert len(known) < 200  # the rows the captions use; the tool moves the other ~49,300
    assert torch.equal(model.token_embedding.weight[known], again.token_embedding.weight[known])


def test_the_chinese_step_trains_on_words_the_chinese_hybrid_evaluation_never_asks():
    """tools/tune_demo_chinese.py (step 5) must not see the demo settings' Chinese words that
    tools/eval_hybrid.py --language zh measures it on, nor words made of the captions' characters, nor
    words of its own held-out queries."""
    tune = load_tool("tune_demo_chinese")
    words = tune.training_words()
    assert len(words) >= 80
    hybrid_queries = {where for _, _, _, where in load_tool("demo_metadata").SETTINGS}
    assert not [(w, q) for w in words for q in hybrid_queries if set(w) & set(q) - {"上", "里", "中"}]
    assert not [w for w in words if set(w) & tune.caption_characters()]
    held_out = list(tune.HELD_OUT_UNKNOWN_ZH) + [text for text, _ in tune.HELD_OUT_MIXED_ZH]
    assert not [(w, q) for w in words for q in held_out if w in q]
    rng = np.random.default_rng(1)
    phrases, concepts = tune.mixed_phrases(rng, words, 20)
    for phrase, index in zip(phrases, concepts, strict=True):
        assert any(caption in phrase for caption in vocab.captions(vocab.CONCEPTS[index].shape,
                                                                    vocab.CONCEPTS[index].colour, "zh"))


def test_the_chinese_step_keeps_english_bit_for_bit_unless_asked_to_train_the_transformer(demo_model, evaluation,
                                                                                          tmp_path):
    tune = load_tool("tune_demo_chinese")
    model, tokenizer = demo_model
    english = [text for concept in vocab.CONCEPTS for text in vocab.captions(concept.shape, concept.colour, "en")]
    chinese = ["婚礼上的一个红色的圆形"]
    rows_only, whole = tmp_path / "rows.safetensors", tmp_path / "whole.safetensors"
    tune.main(["--out", str(rows_only), "--steps", "3", "--transformer", "0"])
    tune.main(["--out", str(whole), "--steps", "3", "--transformer", "100"])
    with torch.inference_mode():
        before_en, before_zh = model.encode_text(tokenizer(english)), model.encode_text(tokenizer(chinese))
        again, _ = evaluation.load_demo_model(MODEL_CONFIG_PATH, rows_only)
        assert torch.equal(again.encode_text(tokenizer(english)), before_en)
        assert not torch.equal(again.encode_text(tokenizer(chinese)), before_zh)
        moved, _ = evaluation.load_demo_model(MODEL_CONFIG_PATH, whole)
        assert not torch.equal(moved.encode_text(tokenizer(english)), before_en)
    kept = model.state_dict()
    for name, tensor in moved.state_dict().items():
        if name.startswith("visual.") or name == "positional_embedding":
            assert torch.equal(tensor, kept[name]), name
    with safe_open(str(whole), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["chinese_transformer"] == "100.0" and metadata["chinese_steps"] == "3"
    assert len(metadata["chinese_from_sha256"]) == 64
    with pytest.raises(ValueError, match="--anchor must not be negative"):
        tune.main(["--out", str(tmp_path / "x.safetensors"), "--anchor", "-1"])
