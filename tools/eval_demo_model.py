"""Measure the shipped demo model on fresh, held-out frames of the demo vocabulary.

Loads the checkpoint exactly as the engine does (``open_clip.add_model_config`` + ``create_model`` with the
``.safetensors`` path), draws scenes from a seed the training never used, and prints retrieval top-1 over
the whole vocabulary:

- text->image: for each concept's caption, is the nearest of the frames (one frame per concept) that
  concept's frame;
- image->text: for each frame, is the nearest of all concepts' captions its own.

Both are averaged over ``--trials`` independent sets of frames, once with the English captions and once
with the Chinese ones. ``--jpeg`` re-encodes every frame as a JPEG of that quality first (blocking and
chroma subsampling, like a decoded video frame). ``--conditions`` also scores frame sets under each of
``CONDITIONS`` (small and large objects, 16:9, darker and brighter frames). ``--videos DIR`` also captions
frames decoded from the demo videos in DIR (``tools/make_demo_videos.py``) against their truth: the middle
of every shot, and 30% / 70% into shots of 2 s or more.

    python tools/eval_demo_model.py [--trials 10] [--seed 987654] [--jpeg 50] [--conditions] [--videos DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from clipseek.demo import EVAL_SEED, MODEL_CONFIG_PATH, MODEL_WEIGHTS_PATH, vocab  # noqa: E402
from clipseek.media.imaging import letterbox  # noqa: E402

log = logging.getLogger("clipseek.demo.eval")

EVAL_FRAME_SIZE_PX = (320, 240)  # the demo videos' size
EVAL_SIZE_RANGE = (0.22, 0.65)  # object height as a fraction of the frame's, as in training


def load_demo_model(config_path: Path = MODEL_CONFIG_PATH,
                    weights_path: Path | None = MODEL_WEIGHTS_PATH) -> tuple[torch.nn.Module, object]:
    """The model named after ``config_path``'s file stem, with ``weights_path`` loaded (random if None),
    in eval mode, and its tokenizer."""
    config_path = Path(config_path)
    open_clip.add_model_config(config_path)
    name = config_path.stem
    pretrained = None if weights_path is None else str(weights_path)
    model = open_clip.create_model(name, pretrained=pretrained)
    model.eval()
    return model, open_clip.get_tokenizer(name)


def frames_to_tensor(frames: list[Image.Image | np.ndarray], size_px: int,
                     mean: tuple[float, ...] = open_clip.OPENAI_DATASET_MEAN,
                     std: tuple[float, ...] = open_clip.OPENAI_DATASET_STD) -> torch.Tensor:
    """Frames -> the model's input batch: letterboxed to ``size_px``, scaled to [0, 1], normalised."""
    boxed = np.stack([letterbox(frame, size_px) for frame in frames])
    batch = torch.from_numpy(boxed).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch - mean_t) / std_t


def model_mean_std(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation the model was trained with (open_clip keeps it in ``visual.preprocess_cfg``)."""
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    return (tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
            tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)))


@torch.inference_mode()
def encode_frames(model: torch.nn.Module, frames: list[Image.Image | np.ndarray],
                  batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings of RGB frames of any size."""
    size_px = model.visual.image_size
    size_px = size_px[0] if isinstance(size_px, (tuple, list)) else int(size_px)
    mean, std = model_mean_std(model)
    chunks = []
    for start in range(0, len(frames), batch_size):
        batch = frames_to_tensor(frames[start:start + batch_size], size_px, mean, std)
        chunks.append(model.encode_image(batch, normalize=True))
    return torch.cat(chunks)


@torch.inference_mode()
def encode_texts(model: torch.nn.Module, tokenizer, texts: list[str]) -> torch.Tensor:
    """L2-normalised text embeddings."""
    return model.encode_text(tokenizer(texts), normalize=True)


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """``image`` encoded as a JPEG of ``quality`` and decoded again."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def heldout_frames(seed: int, trials: int, jpeg_quality: int | None = None,
                   frame_size_px: tuple[int, int] = EVAL_FRAME_SIZE_PX,
                   size_range: tuple[float, float] = EVAL_SIZE_RANGE,
                   brightness: float = 1.0) -> list[list[Image.Image]]:
    """``trials`` lists of frames, each with one fresh scene of every concept in ``vocab.CONCEPTS`` order;
    ``brightness`` scales every pixel (below 1: a darker frame, as inside a fade)."""
    rng = np.random.default_rng(seed)
    width, height = frame_size_px
    sets = []
    for _ in range(trials):
        frames = []
        for concept in vocab.CONCEPTS:
            scene = vocab.random_scene(rng, concept.shape, concept.colour, aspect=width / height,
                                       size_range=size_range)
            frame = vocab.render_scene(scene, width, height)
            if brightness != 1.0:
                frame = frame.point(lambda level: min(255, round(level * brightness)))
            frames.append(jpeg_roundtrip(frame, jpeg_quality) if jpeg_quality else frame)
        sets.append(frames)
    return sets


@dataclass(frozen=True)
class Condition:
    """A kind of frame the plain held-out set does not cover."""

    name: str
    frame_size_px: tuple[int, int] = EVAL_FRAME_SIZE_PX
    size_range: tuple[float, float] = EVAL_SIZE_RANGE
    brightness: float = 1.0


# Each is scored by ``--conditions``; the figures are in docs/demo-model.md.
CONDITIONS: tuple[Condition, ...] = (
    Condition("small (0.10-0.15 of the height), 4:3", (640, 480), (0.10, 0.15)),
    Condition("small (0.10-0.15 of the height), 16:9", (640, 360), (0.10, 0.15)),
    Condition("medium (0.15-0.25), 16:9", (640, 360), (0.15, 0.25)),
    Condition("large (0.65-0.90), 4:3", (640, 480), (0.65, 0.90)),
    Condition("large (0.65-0.90), 16:9", (640, 360), (0.65, 0.90)),
    Condition("darker (x0.6)", brightness=0.6),
    Condition("dark (x0.35)", brightness=0.35),
    Condition("brighter (x1.3, clipped)", brightness=1.3),
)


def condition_frames(seed: int, condition: Condition, trials: int) -> list[list[Image.Image]]:
    """Held-out frame sets (as :func:`heldout_frames`) drawn under ``condition``."""
    return heldout_frames(seed, trials, frame_size_px=condition.frame_size_px, size_range=condition.size_range,
                          brightness=condition.brightness)


@dataclass
class RetrievalScores:
    """Top-1 accuracies over the vocabulary (fractions), and the concepts most often missed."""

    text_to_image: float
    image_to_text: float
    image_to_text_all_phrasings: float
    missed: dict[str, int]

    def __str__(self) -> str:
        worst = ", ".join(f"{name} x{count}" for name, count in sorted(self.missed.items(), key=lambda kv: -kv[1])[:8])
        return (f"text->image top-1 {self.text_to_image:.2%}, image->text top-1 {self.image_to_text:.2%} "
                f"(all phrasings {self.image_to_text_all_phrasings:.2%}); most missed: {worst or 'none'}")


def retrieval_scores(model: torch.nn.Module, tokenizer, frame_sets: list[list[Image.Image]],
                     language: str = "en") -> RetrievalScores:
    """Text->image and image->text top-1 of ``model`` on frame sets made by :func:`heldout_frames`, with the
    captions of ``language``."""
    n = len(vocab.CONCEPTS)
    truth = torch.arange(n)
    canonical = encode_texts(model, tokenizer, [vocab.caption(c.shape, c.colour, 0, language) for c in vocab.CONCEPTS])
    phrasings = [encode_texts(model, tokenizer, [vocab.caption(c.shape, c.colour, t, language)
                                                 for c in vocab.CONCEPTS])
                 for t in range(len(vocab.TEMPLATES[language]))]
    t2i = i2t = i2t_all = 0.0
    missed: dict[str, int] = {}
    for frames in frame_sets:
        if len(frames) != n:
            raise ValueError(f"a frame set must hold one frame per concept ({n}), got {len(frames)}")
        images = encode_frames(model, frames)
        similarity = canonical @ images.T  # [caption, image]
        t2i += (similarity.argmax(dim=1) == truth).float().mean().item()
        image_hits = similarity.argmax(dim=0) == truth
        i2t += image_hits.float().mean().item()
        for index in torch.nonzero(~image_hits).flatten().tolist():
            name = vocab.CONCEPTS[index].caption  # named in English whatever the language
            missed[name] = missed.get(name, 0) + 1
        i2t_all += np.mean([((texts @ images.T).argmax(dim=0) == truth).float().mean().item()
                            for texts in phrasings])
    trials = len(frame_sets)
    return RetrievalScores(t2i / trials, i2t / trials, float(i2t_all / trials), missed)


def decoded_video_frames(path: Path, width_px: int, height_px: int, ffmpeg: str = "ffmpeg"):
    """Every frame of a video, decoded by ffmpeg, as RGB uint8 HxWx3 arrays."""
    argv = [ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    size = width_px * height_px * 3
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        while chunk := process.stdout.read(size):
            yield np.frombuffer(chunk, dtype=np.uint8).reshape(height_px, width_px, 3)
        _, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"ffmpeg could not decode {path} (exit {process.returncode}): {stderr.decode()[-2000:]}")


def video_caption_accuracy(model: torch.nn.Module, tokenizer, videos_dir: Path,
                           language: str = "en") -> tuple[float, int]:
    """Image->text top-1 on frames decoded from the demo videos in ``videos_dir``, and how many frames."""
    truth = json.loads((videos_dir / "truth.json").read_text(encoding="utf-8"))
    fps = truth["fps"]
    frames, labels = [], []
    for video in truth["videos"]:
        wanted: dict[int, int] = {}  # frame index -> concept index
        for shot in video["shots"]:
            start, end = round(shot["start_s"] * fps), round(shot["end_s"] * fps)
            points = (0.5,) if shot["end_s"] - shot["start_s"] < 2.0 else (0.3, 0.5, 0.7)
            for point in points:
                wanted[start + int((end - start) * point)] = vocab.CONCEPTS.index(
                    vocab.Concept(shot["shape"], shot["colour"]))
        for index, frame in enumerate(decoded_video_frames(videos_dir / video["file"], video["width"],
                                                           video["height"])):
            if index in wanted:
                frames.append(frame)
                labels.append(wanted[index])
    if not frames:
        raise ValueError(f"no shots in {videos_dir / 'truth.json'}")
    captions = encode_texts(model, tokenizer, [vocab.caption(c.shape, c.colour, 0, language)
                                               for c in vocab.CONCEPTS])
    predicted = (encode_frames(model, frames) @ captions.T).argmax(dim=1)
    return (predicted == torch.tensor(labels)).float().mean().item(), len(frames)


def main(argv: list[str] | None = None) -> dict[str, RetrievalScores]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH, help="open_clip model config JSON")
    parser.add_argument("--weights", type=Path, default=MODEL_WEIGHTS_PATH, help="checkpoint (.safetensors)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="seed of the held-out scenes")
    parser.add_argument("--trials", type=int, default=10, help="frame sets of one frame per concept")
    parser.add_argument("--jpeg", type=int, default=None, help="re-encode frames as JPEG of this quality")
    parser.add_argument("--videos", type=Path, default=None, help="folder of demo videos with truth.json")
    parser.add_argument("--conditions", action="store_true",
                        help="also score small, large, darker and brighter frames (CONDITIONS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    started = time.perf_counter()
    model, tokenizer = load_demo_model(args.config, args.weights)
    frames = heldout_frames(args.seed, args.trials, args.jpeg)
    results = {}
    for language in vocab.LANGUAGES:
        results[language] = scores = retrieval_scores(model, tokenizer, frames, language)
        print(f"{args.weights.name}, seed {args.seed}, {args.trials} x {len(vocab.CONCEPTS)} frames"
              f"{f', JPEG q{args.jpeg}' if args.jpeg else ''}, captions {language}: {scores} "
              f"[{time.perf_counter() - started:.1f} s]", flush=True)
    if args.conditions:
        for number, condition in enumerate(CONDITIONS, start=1):
            frames = condition_frames(args.seed + number, condition, args.trials)
            for language in vocab.LANGUAGES:
                scores = retrieval_scores(model, tokenizer, frames, language)
                print(f"  {condition.name}, captions {language}: text->image {scores.text_to_image:.1%}, "
                      f"image->text {scores.image_to_text:.1%}", flush=True)
    if args.videos is not None:
        for language in vocab.LANGUAGES:
            accuracy, count = video_caption_accuracy(model, tokenizer, args.videos, language)
            print(f"demo videos in {args.videos}, captions {language}: image->text top-1 {accuracy:.2%} "
                  f"on {count} decoded frames")
    return results


if __name__ == "__main__":
    main()
