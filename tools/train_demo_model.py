"""Train the demo CLIP on rendered shape/colour frames and write ``clipseek-demo.safetensors`` (fp16).

Deterministic for a given ``--seed`` and thread count (CPU). Every step sees each concept of the
vocabulary equally often, drawn as a fresh scene with a caption in a random phrasing, rendered at a
video-like size (4:3 mostly, some 16:9), roughened (JPEG, blur, noise) and letterboxed exactly as the
engine letterboxes video frames. Several frames of one concept in a batch are all positives of each other
(a multi-positive form of CLIP's contrastive loss), so repeats are never pushed apart.

At the end the checkpoint is reloaded through open_clip, checked against the trained model, and scored on
held-out frames (see ``tools/eval_demo_model.py``).

    python tools/train_demo_model.py [--steps 1200] [--batch-size 128] [--seed 1234]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from eval_demo_model import (  # noqa: E402  (tools/ is on sys.path when this runs as a script)
    encode_frames,
    frames_to_tensor,
    heldout_frames,
    jpeg_roundtrip,
    load_demo_model,
    model_mean_std,
    retrieval_scores,
)

from clipseek.demo import EVAL_SEED, MODEL_CONFIG_PATH, MODEL_WEIGHTS_PATH, TRAIN_SEED, vocab  # noqa: E402

log = logging.getLogger("clipseek.demo.train")

# Frame sizes drawn at random: 4:3 and 16:9 most of the time, a few other shapes of frame for robustness;
# all at least twice the model's input, so that small objects are drawn with enough pixels before the
# frame is shrunk as the engine shrinks video frames.
TRAIN_FRAME_SIZES_PX: tuple[tuple[int, int], ...] = (
    (320, 240), (256, 192), (384, 288), (320, 240),  # 4:3
    (384, 216), (320, 180), (448, 252), (384, 216),  # 16:9
    (360, 240), (256, 256), (420, 180), (256, 144),  # 3:2, 1:1, 2.33:1, 16:9
)
TRAIN_SIZE_RANGE = (0.08, 0.9)  # object height as a fraction of the frame's, log-uniform (hard frames)
PLAIN_SIZE_RANGE = (0.2, 0.68)  # uniform (plain frames)
SMALL_SIZE_RANGE = (0.08, 0.2)  # log-uniform: the small hard frames a tuning run may ask more of
FINAL_HARD_SHARE = 0.9  # share of hard frames at the end of the curriculum (the rest stay plain)
TRAIN_VARIETY = vocab.Variety(log_size=True, overflow=0.15, hue_jitter_deg=8.0, min_saturation=0.6)
# Filters that shrink frames to the model's input: ffmpeg's "area" (the engine's loader), bicubic
# (clipseek.media.imaging.letterbox, image queries) and bilinear (other tools).
SHRINK_FILTERS = (Image.BOX, Image.BOX, Image.BICUBIC, Image.BILINEAR)
LOGIT_SCALE_LR_FACTOR = 10.0


def motion_blur(frame: Image.Image, length_px: int, angle_deg: float) -> Image.Image:
    """``frame`` smeared along a line of ``length_px`` at ``angle_deg`` (an object moving during the exposure)."""
    kernel = np.zeros((length_px, length_px), dtype=np.float32)
    centre = (length_px - 1) / 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    for t in np.linspace(-centre, centre, 2 * length_px):
        kernel[round(centre + t * dy), round(centre + t * dx)] = 1.0
    kernel /= kernel.sum()
    return Image.fromarray(cv2.filter2D(np.asarray(frame), -1, kernel, borderType=cv2.BORDER_REFLECT))


def photometric(frame: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Exposure changes: darker (down to a third, as inside a fade or in dim footage), brighter (clipped),
    less or more contrast, a gamma curve. All are maps of each grey level, applied as one lookup table."""
    levels = np.arange(256, dtype=np.float64)
    roll = rng.random()
    if roll < 0.3:
        levels *= rng.uniform(0.3, 0.95)
    elif roll < 0.4:
        levels *= rng.uniform(1.05, 1.35)
    if rng.random() < 0.2:
        mean = float(np.asarray(frame.convert("L")).mean())
        levels = mean + (levels - mean) * rng.uniform(0.6, 1.3)
    if rng.random() < 0.2:
        levels = 255.0 * (np.clip(levels, 0, 255) / 255.0) ** rng.uniform(0.7, 1.4)
    table = np.clip(levels, 0, 255).round().astype(np.uint8).tolist()
    return frame.point(table * 3)


def training_frame(rng: np.random.Generator, concept: vocab.Concept, size_px: int, hard: bool = True,
                   size_range: tuple[float, float] = TRAIN_SIZE_RANGE) -> Image.Image:
    """A fresh, roughened frame of ``concept`` at a random video-like size, shrunk to fit ``size_px``.

    A plain frame (``hard`` False) has a mid-sized object wholly inside the frame and its exposure untouched,
    as the first model was trained on; a hard one any size from a tenth of the frame height to nine tenths,
    possibly cut by the frame's edge, smeared by motion, darker or brighter (``size_range``: a hard object's
    height range).
    """
    width, height = TRAIN_FRAME_SIZES_PX[rng.integers(len(TRAIN_FRAME_SIZES_PX))]
    if hard:
        scene = vocab.random_scene(rng, concept.shape, concept.colour, aspect=width / height,
                                   size_range=size_range, variety=TRAIN_VARIETY)
    else:
        scene = vocab.random_scene(rng, concept.shape, concept.colour, aspect=width / height,
                                   size_range=PLAIN_SIZE_RANGE)
    frame = vocab.render_scene(scene, width, height)
    if hard and rng.random() < 0.15:
        frame = motion_blur(frame, int(rng.integers(3, 12)), float(rng.uniform(0, 180)))
    if hard:
        frame = photometric(frame, rng)
    if rng.random() < 0.5:
        frame = jpeg_roundtrip(frame, int(rng.integers(20, 91)))
    scale = min(size_px / width, size_px / height)
    fitted = (max(1, min(size_px, round(width * scale))), max(1, min(size_px, round(height * scale))))
    frame = frame.resize(fitted, SHRINK_FILTERS[rng.integers(len(SHRINK_FILTERS))])
    if rng.random() < 0.25:  # out of focus (blurred at the model's scale: four times cheaper than before shrinking)
        frame = frame.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 0.7))))
    return frame


@dataclass(frozen=True)
class Curriculum:
    """Which share of a batch's frames are hard ones at each step: none for ``plain_steps`` (the shapes are
    learned on plain frames first: with hard frames from the start, a trial run was still at 12% after
    200 steps, knowing the colours but no shape), then rising linearly to ``final_share`` over
    ``ramp_steps``."""

    plain_steps: int = 0
    ramp_steps: int = 0
    final_share: float = FINAL_HARD_SHARE

    def hard_share(self, step: int) -> float:
        if step < self.plain_steps:
            return 0.0
        if self.ramp_steps <= 0:
            return self.final_share
        return self.final_share * min(1.0, (step - self.plain_steps + 1) / self.ramp_steps)


def training_batch(rng: np.random.Generator, batch_size: int, size_px: int, mean, std,
                   caption_tokens: torch.Tensor, hard: float = 1.0,
                   small: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, caption tokens and concept ids of one batch; concepts are spread evenly over the batch, a
    share ``hard`` of the frames are hard ones (see :func:`training_frame`), and a share ``small`` of those
    hold a small object (:data:`SMALL_SIZE_RANGE`). With ``small`` 0 the batch is drawn exactly as before."""
    n = len(vocab.CONCEPTS)
    concept_ids = np.concatenate([rng.permutation(n) for _ in range(math.ceil(batch_size / n))])[:batch_size]
    hard_frames = rng.random(batch_size) < hard
    ranges = [TRAIN_SIZE_RANGE] * batch_size
    if small > 0:
        ranges = [SMALL_SIZE_RANGE if s else TRAIN_SIZE_RANGE for s in rng.random(batch_size) < small]
    frames = [training_frame(rng, vocab.CONCEPTS[i], size_px, bool(h), r)
              for i, h, r in zip(concept_ids, hard_frames, ranges, strict=True)]
    images = frames_to_tensor(frames, size_px, mean, std)
    noisy = np.flatnonzero(rng.random(batch_size) < 0.5)  # sensor noise on half the frames
    sigma = torch.from_numpy(rng.uniform(0.0, 0.03, len(noisy)).astype(np.float32)).view(-1, 1, 1, 1)
    noise = torch.from_numpy(rng.standard_normal((len(noisy), *images.shape[1:]), dtype=np.float32))
    images[torch.from_numpy(noisy)] += noise * sigma / torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    templates = rng.integers(caption_tokens.shape[1], size=batch_size)
    ids = torch.from_numpy(concept_ids)
    return images, caption_tokens[ids, torch.from_numpy(templates)], ids


class TrainingBatches(torch.utils.data.Dataset):
    """Batch ``step`` of a run, drawn from its own seed ``(seed, step)``: the batches are the same however
    many loader processes draw them, and drawing overlaps training when there is a loader process."""

    def __init__(self, steps: int, seed: int, batch_size: int, size_px: int, mean, std,
                 caption_tokens: torch.Tensor, curriculum: Curriculum | None = None, start_step: int = 0,
                 small: float = 0.0) -> None:
        self.steps, self.seed, self.batch_size, self.size_px = steps, seed, batch_size, size_px
        self.small = small  # share of the hard frames with a small object (training_batch)
        self.mean, self.std, self.caption_tokens = mean, std, caption_tokens
        self.curriculum = curriculum or Curriculum()
        self.start_step = start_step  # item i is the batch of step start_step + i

    def __len__(self) -> int:
        return self.steps - self.start_step

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        step = self.start_step + index
        rng = np.random.default_rng([self.seed, step])
        return training_batch(rng, self.batch_size, self.size_px, self.mean, self.std, self.caption_tokens,
                              self.curriculum.hard_share(step), self.small)


def multi_positive_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                             logit_scale: torch.Tensor, concept_ids: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric contrastive loss where every pair of the same concept counts as a match."""
    logits = logit_scale * image_features @ text_features.T
    same = (concept_ids[:, None] == concept_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def learning_rate(step: int, steps: int, peak: float, warmup: int, start_step: int = 0) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak. A run resumed at ``start_step`` follows the same
    curve, warmed up again over ``warmup`` steps (its optimizer's moments start from zero)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    rate = peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
    if start_step and step - start_step < warmup:
        rate *= (step - start_step + 1) / warmup
    return rate


def optimizer_for(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on gains, biases and embeddings (as open_clip's trainer). The logit scale
    learns ``LOGIT_SCALE_LR_FACTOR`` times faster: at the base rate it barely leaves its 1/0.07 start in
    a short run, and a sharper softmax separates 64 concepts faster."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if name == "logit_scale":
            continue
        exempt = param.ndim < 2 or "bn" in name or "ln" in name or "embedding" in name
        (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr_factor": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_factor": 1.0},
              {"params": [model.logit_scale], "weight_decay": 0.0, "lr_factor": LOGIT_SCALE_LR_FACTOR}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def save_fp16(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write the state dict, floating-point tensors as fp16, keys exactly as open_clip names them."""
    state = {name: (t.detach().half() if t.is_floating_point() else t.detach()).contiguous()
             for name, t in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH, help="open_clip model config JSON")
    parser.add_argument("--out", type=Path, default=MODEL_WEIGHTS_PATH, help="checkpoint to write")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=int, default=60, help="warm-up steps")
    parser.add_argument("--plain-steps", type=int, default=None,
                        help="curriculum: steps of plain frames only (default: 25%% of the steps)")
    parser.add_argument("--ramp", type=int, default=None,
                        help="curriculum: steps from there until the hard frames reach their final share "
                             "(default: 25%% of the steps)")
    parser.add_argument("--save-every", type=int, default=0,
                        help="also write a checkpoint OUT.stepN.safetensors every N steps (0: only at the end)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint (e.g. a OUT.stepN.safetensors) instead of random weights")
    parser.add_argument("--start-step", type=int, default=0,
                        help="with --init: the step it was saved at; training, the LR schedule and the curriculum "
                             "resume there (the optimizer's state is not saved: it restarts, warmed up again)")
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing batches (0: draw in-process)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--eval-trials", type=int, default=10, help="held-out frame sets scored at the end")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 2:
        raise ValueError(f"need steps >= 1 and batch size >= 2, got {args.steps} and {args.batch_size}")
    if not 0 <= args.start_step < args.steps:
        raise ValueError(f"--start-step must be in [0, --steps {args.steps}), got {args.start_step}")
    if args.start_step and args.init is None:
        raise ValueError(f"--start-step {args.start_step} needs --init CHECKPOINT (the weights of that step)")
    if args.init is not None and not args.init.is_file():
        raise ValueError(f"--init {args.init}: no such checkpoint file")
    if args.seed == EVAL_SEED:
        raise ValueError(f"the training seed must differ from the evaluation seed {EVAL_SEED}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    model, tokenizer = load_demo_model(args.config, weights_path=args.init)
    model.train()
    size_px = int(model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0])
    mean, std = model_mean_std(model)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.config.stem}: {params / 1e6:.2f} M parameters "
          f"(vision {sum(p.numel() for p in model.visual.parameters()) / 1e6:.2f} M), input {size_px} px, "
          f"{len(vocab.CONCEPTS)} concepts x {len(vocab.captions(*vocab.CONCEPTS[0]))} phrasings "
          f"({', '.join(vocab.LANGUAGES)})", flush=True)

    # [concept, phrasing (every English one, then every Chinese one), context]
    curriculum = Curriculum(round(0.25 * args.steps) if args.plain_steps is None else args.plain_steps,
                            round(0.25 * args.steps) if args.ramp is None else args.ramp)
    caption_tokens = torch.stack([tokenizer(vocab.captions(c.shape, c.colour)) for c in vocab.CONCEPTS])
    batches = torch.utils.data.DataLoader(
        TrainingBatches(args.steps, args.seed, args.batch_size, size_px, mean, std, caption_tokens, curriculum,
                         args.start_step),
        batch_size=None, shuffle=False, num_workers=args.workers, prefetch_factor=2 if args.workers else None)
    optimizer = optimizer_for(model, args.lr, args.weight_decay)
    started = time.perf_counter()
    running_loss = running_acc = running_shape = running_colour = 0.0
    for step, (images, tokens, concept_ids) in enumerate(batches, start=args.start_step):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup, args.start_step) * group["lr_factor"]
        image_features, text_features, logit_scale = model(images, tokens)
        loss = multi_positive_clip_loss(image_features, text_features, logit_scale, concept_ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
            predicted = concept_ids[(image_features @ text_features.T).argmax(dim=1)]
        running_loss += loss.item()
        running_acc += (predicted == concept_ids).float().mean().item()
        # CONCEPTS run shape by shape: id // colours is the shape, id % colours the colour.
        running_shape += (predicted // len(vocab.COLOURS) == concept_ids // len(vocab.COLOURS)).float().mean().item()
        running_colour += (predicted % len(vocab.COLOURS) == concept_ids % len(vocab.COLOURS)).float().mean().item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            count = min(step % args.log_every, step - args.start_step) + 1
            print(f"step {step + 1}/{args.steps}  loss {running_loss / count:.3f}  "
                  f"in-batch image->text {running_acc / count:.1%} (shape {running_shape / count:.1%}, "
                  f"colour {running_colour / count:.1%})  hard frames {curriculum.hard_share(step):.0%}  "
                  f"logit scale {logit_scale.item():.1f}  {time.perf_counter() - started:.0f} s", flush=True)
            running_loss = running_acc = running_shape = running_colour = 0.0
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            save_fp16(model, args.out.with_suffix(f".step{step + 1}.safetensors"), {"steps": str(step + 1)})
    train_s = time.perf_counter() - started
    model.eval()

    metadata = {"model": args.config.stem, "config": json.dumps(json.loads(args.config.read_text())),
                "steps": str(args.steps), "batch_size": str(args.batch_size), "lr": str(args.lr),
                "seed": str(args.seed), "warmup": str(args.warmup), "plain_steps": str(curriculum.plain_steps),
                "ramp": str(curriculum.ramp_steps), "final_hard_share": str(curriculum.final_share),
                "weight_decay": str(args.weight_decay), "threads": str(args.threads),
                "init": "" if args.init is None else args.init.name, "start_step": str(args.start_step),
                "train_seconds": f"{train_s:.0f}"}
    save_fp16(model, args.out, metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {train_s:.0f} s of training", flush=True)

    # The shipped file, loaded the way the engine loads it, must embed like the model just trained.
    shipped, shipped_tokenizer = load_demo_model(args.config, args.out)
    check_frames = heldout_frames(EVAL_SEED + 1, trials=1)[0]
    image_gap = (encode_frames(model, check_frames) - encode_frames(shipped, check_frames)).abs().max().item()
    with torch.inference_mode():
        texts = [c.caption for c in vocab.CONCEPTS]
        text_gap = (model.encode_text(tokenizer(texts), normalize=True)
                    - shipped.encode_text(shipped_tokenizer(texts), normalize=True)).abs().max().item()
    print(f"reloaded through open_clip: max |embedding difference| image {image_gap:.2e}, text {text_gap:.2e}")
    scores = retrieval_scores(shipped, shipped_tokenizer, heldout_frames(EVAL_SEED, args.eval_trials))
    print(f"held-out (seed {EVAL_SEED}, {args.eval_trials} x {len(vocab.CONCEPTS)} frames): {scores}")


if __name__ == "__main__":
    main()
