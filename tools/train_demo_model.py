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
from pathlib import Path

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

# Frame sizes drawn at random: the videos' 4:3 most of the time, 16:9 for robustness. Smaller sizes are
# cheaper to draw and, once letterboxed to the model's input, look much the same.
TRAIN_FRAME_SIZES_PX: tuple[tuple[int, int], ...] = (
    (320, 240), (320, 240), (256, 192), (160, 120), (160, 120), (320, 180), (256, 144), (192, 108),
)
TRAIN_SIZE_RANGE = (0.2, 0.68)  # object height as a fraction of the frame's
LOGIT_SCALE_LR_FACTOR = 10.0


def training_frame(rng: np.random.Generator, concept: vocab.Concept) -> Image.Image:
    """A fresh, roughened frame of ``concept`` at a random video-like size."""
    width, height = TRAIN_FRAME_SIZES_PX[rng.integers(len(TRAIN_FRAME_SIZES_PX))]
    scene = vocab.random_scene(rng, concept.shape, concept.colour, aspect=width / height,
                               size_range=TRAIN_SIZE_RANGE)
    frame = vocab.render_scene(scene, width, height)
    if rng.random() < 0.25:
        frame = frame.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    if rng.random() < 0.5:
        frame = jpeg_roundtrip(frame, int(rng.integers(20, 91)))
    return frame


def training_batch(rng: np.random.Generator, batch_size: int, size_px: int, mean, std,
                   caption_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, caption tokens and concept ids of one batch; concepts are spread evenly over the batch."""
    n = len(vocab.CONCEPTS)
    concept_ids = np.concatenate([rng.permutation(n) for _ in range(math.ceil(batch_size / n))])[:batch_size]
    frames = [training_frame(rng, vocab.CONCEPTS[i]) for i in concept_ids]
    images = frames_to_tensor(frames, size_px, mean, std)
    noisy = torch.from_numpy(rng.random(batch_size) < 0.5)
    sigma = torch.from_numpy(rng.uniform(0.0, 0.03, batch_size).astype(np.float32))
    noise = torch.from_numpy(rng.standard_normal(images.shape, dtype=np.float32))
    images += noise * (sigma * noisy).view(-1, 1, 1, 1) / torch.tensor(std).view(1, 3, 1, 1)
    templates = rng.integers(len(vocab.CAPTION_TEMPLATES), size=batch_size)
    ids = torch.from_numpy(concept_ids)
    return images, caption_tokens[ids, torch.from_numpy(templates)], ids


class TrainingBatches(torch.utils.data.Dataset):
    """Batch ``step`` of a run, drawn from its own seed ``(seed, step)``: the batches are the same however
    many loader processes draw them, and drawing overlaps training when there is a loader process."""

    def __init__(self, steps: int, seed: int, batch_size: int, size_px: int, mean, std,
                 caption_tokens: torch.Tensor) -> None:
        self.steps, self.seed, self.batch_size, self.size_px = steps, seed, batch_size, size_px
        self.mean, self.std, self.caption_tokens = mean, std, caption_tokens

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        return training_batch(rng, self.batch_size, self.size_px, self.mean, self.std, self.caption_tokens)


def multi_positive_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                             logit_scale: torch.Tensor, concept_ids: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric contrastive loss where every pair of the same concept counts as a match."""
    logits = logit_scale * image_features @ text_features.T
    same = (concept_ids[:, None] == concept_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


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
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing batches (0: draw in-process)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--eval-trials", type=int, default=10, help="held-out frame sets scored at the end")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 2:
        raise ValueError(f"need steps >= 1 and batch size >= 2, got {args.steps} and {args.batch_size}")
    if args.seed == EVAL_SEED:
        raise ValueError(f"the training seed must differ from the evaluation seed {EVAL_SEED}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    model, tokenizer = load_demo_model(args.config, weights_path=None)
    model.train()
    size_px = int(model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0])
    mean, std = model_mean_std(model)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.config.stem}: {params / 1e6:.2f} M parameters "
          f"(vision {sum(p.numel() for p in model.visual.parameters()) / 1e6:.2f} M), input {size_px} px, "
          f"{len(vocab.CONCEPTS)} concepts x {len(vocab.CAPTION_TEMPLATES)} phrasings", flush=True)

    caption_tokens = torch.stack([tokenizer([vocab.caption(c.shape, c.colour, t)
                                             for t in range(len(vocab.CAPTION_TEMPLATES))])
                                  for c in vocab.CONCEPTS])  # [concept, phrasing, context]
    batches = torch.utils.data.DataLoader(
        TrainingBatches(args.steps, args.seed, args.batch_size, size_px, mean, std, caption_tokens),
        batch_size=None, shuffle=False, num_workers=args.workers, prefetch_factor=2 if args.workers else None)
    optimizer = optimizer_for(model, args.lr, args.weight_decay)
    started = time.perf_counter()
    running_loss = running_acc = 0.0
    for step, (images, tokens, concept_ids) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup) * group["lr_factor"]
        image_features, text_features, logit_scale = model(images, tokens)
        loss = multi_positive_clip_loss(image_features, text_features, logit_scale, concept_ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
            hits = concept_ids[(image_features @ text_features.T).argmax(dim=1)] == concept_ids
        running_loss += loss.item()
        running_acc += hits.float().mean().item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            count = (step % args.log_every) + 1
            print(f"step {step + 1}/{args.steps}  loss {running_loss / count:.3f}  "
                  f"in-batch image->text {running_acc / count:.1%}  logit scale {logit_scale.item():.1f}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            running_loss = running_acc = 0.0
    train_s = time.perf_counter() - started
    model.eval()

    metadata = {"model": args.config.stem, "config": json.dumps(json.loads(args.config.read_text())),
                "steps": str(args.steps), "batch_size": str(args.batch_size), "lr": str(args.lr),
                "seed": str(args.seed),
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
