"""Tune the demo model's image tower on hard frames; the text tower stays exactly as it is.

The third step of making the demo checkpoint (docs/demo-model.md): after English (tools/train_demo_model.py)
and Chinese (tools/distill_demo_text.py), the image tower learns the frames the first training never showed
it: small objects (down to a tenth of the frame height), objects cut by the frame's edge, frames of any shape,
motion blur, darker and brighter exposure (``train_demo_model.training_frame`` with ``hard``). The text tower,
token table and logit scale are frozen, so every caption, English and Chinese, embeds exactly as before and
the Chinese distillation stays valid; only ``visual.*`` changes.

Targets are the text embeddings themselves: each concept's mean over all its phrasings in both languages
(normalised; ``--per-language``: one target per language), computed once. The loss (averaged over the targets
with ``--per-language``) is: cross-entropy of each frame over
the 64 concepts (image->text), plus a multi-positive cross-entropy of each concept over the batch's frames
(text->image: a query ranks frames of different videos, so a concept's frames must outscore the others'
frames on its caption). A share ``--plain`` of every batch stays plain frames (mid-sized, whole, untouched
exposure), so what the model already knew is rehearsed. Deterministic for a seed and thread count (CPU).

    python tools/tune_demo_image.py --out W.safetensors [--steps 600] [--lr 1e-3] [--plain 0.4]
        [--init clipseek/demo/model/clipseek-demo.safetensors]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from eval_demo_model import encode_texts, heldout_frames, load_demo_model, model_mean_std, retrieval_scores  # noqa: E402
from train_demo_model import Curriculum, TrainingBatches, learning_rate, save_fp16  # noqa: E402

from clipseek.demo import EVAL_SEED, MODEL_CONFIG_PATH, MODEL_WEIGHTS_PATH, TRAIN_SEED, vocab  # noqa: E402

log = logging.getLogger("clipseek.demo.tune")
TUNE_SEED_OFFSET = 7  # batches drawn from (seed + offset, step): not the first training's batches


def concept_targets(model: torch.nn.Module, tokenizer, per_language: bool = False) -> torch.Tensor:
    """[target set, concept, dim]: each concept's mean text embedding over all its phrasings in both languages
    (one set), or over each language's phrasings (one set per language), normalised."""
    groups = [(language,) for language in vocab.LANGUAGES] if per_language else [vocab.LANGUAGES]
    sets = []
    for languages in groups:
        rows = []
        for concept in vocab.CONCEPTS:
            texts = [text for language in languages for text in vocab.captions(concept.shape, concept.colour, language)]
            rows.append(F.normalize(encode_texts(model, tokenizer, texts).mean(dim=0), dim=0))
        sets.append(torch.stack(rows))
    return torch.stack(sets)


def tuning_loss(image_features: torch.Tensor, targets: torch.Tensor, concept_ids: torch.Tensor,
                scale: float, cosine_weight: float = 0.0) -> torch.Tensor:
    """The mean over the target sets of ``targets`` ([set, concept, dim]) of :func:`language_loss`, plus
    ``cosine_weight`` times the mean of one minus each frame's cosine to its own concept's target (the
    cross-entropy alone ranks the concepts but lets every cosine sink together: a present concept's
    best cosine then no longer stands apart from an absent one's, which the confidence levels read)."""
    loss = torch.stack([language_loss(image_features, t, concept_ids, scale) for t in targets]).mean()
    if cosine_weight:
        own = (image_features[None] * targets[:, concept_ids]).sum(dim=-1)  # [set, frame]
        loss = loss + cosine_weight * (1.0 - own).mean()
    return loss


def language_loss(image_features: torch.Tensor, targets: torch.Tensor, concept_ids: torch.Tensor,
                  scale: float) -> torch.Tensor:
    """Image->text cross-entropy over all concepts plus text->image multi-positive cross-entropy over the
    batch's frames (for the concepts present in the batch)."""
    logits = scale * image_features @ targets.T  # [frame, concept]
    image_to_text = F.cross_entropy(logits, concept_ids)
    present = torch.unique(concept_ids)
    per_concept = logits[:, present].T  # [concept present, frame]
    positives = (concept_ids[None, :] == present[:, None]).float()
    text_to_image = F.cross_entropy(per_concept, positives / positives.sum(dim=1, keepdim=True))
    return (image_to_text + text_to_image) / 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH, help="open_clip model config JSON")
    parser.add_argument("--init", type=Path, default=MODEL_WEIGHTS_PATH, help="checkpoint to start from")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (.safetensors, fp16)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--plain", type=float, default=0.4, help="share of plain frames in every batch")
    parser.add_argument("--small", type=float, default=0.0,
                        help="share of the hard frames that hold a small object (0.08-0.2 of the height)")
    parser.add_argument("--scale", type=float, default=None,
                        help="softmax sharpness (default: the model's own logit scale)")
    parser.add_argument("--cosine-weight", type=float, default=0.0,
                        help="weight of the term that keeps each frame's cosine to its own concept high")
    parser.add_argument("--per-language", action="store_true",
                        help="one target per language instead of one over both (did worse: docs/demo-model.md)")
    parser.add_argument("--save-every", type=int, default=0, help="also write OUT.stepN.safetensors every N steps")
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--eval-trials", type=int, default=5, help="held-out frame sets scored at the end (0: none)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.plain < 1.0:
        raise ValueError(f"--plain must be in [0, 1), got {args.plain}")
    if not 0.0 <= args.small <= 1.0:
        raise ValueError(f"--small must be in [0, 1], got {args.small}")
    if not args.init.is_file():
        raise ValueError(f"--init {args.init}: no such checkpoint file")
    if args.out.resolve() == args.init.resolve():
        raise ValueError("--out must differ from --init (compare before you replace the shipped checkpoint)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    model, tokenizer = load_demo_model(args.config, args.init)
    before = {name: t.detach().clone() for name, t in model.state_dict().items() if not name.startswith("visual.")}
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("visual."))
    targets = concept_targets(model, tokenizer, args.per_language)
    scale = float(args.scale if args.scale is not None else model.logit_scale.exp().item())
    size_px = int(model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0])
    mean, std = model_mean_std(model)
    print(f"tuning {args.init.name}: image tower {sum(p.numel() for p in model.visual.parameters()) / 1e6:.2f} M "
          f"parameters, input {size_px} px, softmax scale {scale:.1f}, plain share {args.plain:.0%}", flush=True)

    hard_share = Curriculum(0, 0, 1.0 - args.plain)
    caption_tokens = torch.zeros(len(vocab.CONCEPTS), 1, 1, dtype=torch.long)  # captions are not drawn here
    batches = torch.utils.data.DataLoader(
        TrainingBatches(args.steps, args.seed + TUNE_SEED_OFFSET, args.batch_size, size_px, mean, std,
                        caption_tokens, hard_share, small=args.small),
        batch_size=None, shuffle=False, num_workers=args.workers, prefetch_factor=2 if args.workers else None)
    decay = [p for n, p in model.visual.named_parameters() if p.ndim >= 2 and "bn" not in n]
    no_decay = [p for n, p in model.visual.named_parameters() if not (p.ndim >= 2 and "bn" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    model.train()
    started = time.perf_counter()
    running_loss = running_acc = running_cosine = 0.0
    for step, (images, _, concept_ids) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        features = F.normalize(model.encode_image(images), dim=-1)
        loss = tuning_loss(features, targets, concept_ids, scale, args.cosine_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            running_loss += loss.item()
            running_acc += ((features @ targets[0].T).argmax(dim=1) == concept_ids).float().mean().item()
            running_cosine += (features * targets[0, concept_ids]).sum(dim=-1).mean().item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            count = step % args.log_every + 1
            print(f"step {step + 1}/{args.steps}  loss {running_loss / count:.3f}  image->concept "
                  f"{running_acc / count:.1%}  own cosine {running_cosine / count:.3f}  "
                  f"lr {optimizer.param_groups[0]['lr']:.2e}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            running_loss = running_acc = running_cosine = 0.0
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            model.eval()
            save_fp16(model, args.out.with_suffix(f".step{step + 1}.safetensors"), {"steps": str(step + 1)})
            model.train()
    train_s = time.perf_counter() - started
    model.eval()
    changed = [name for name, t in model.state_dict().items() if name in before and not torch.equal(t, before[name])]
    if changed:
        raise RuntimeError(f"the text side changed while tuning the image tower: {changed[:5]}")
    metadata = {"model": args.config.stem, "config": json.dumps(json.loads(args.config.read_text())),
                "tuned_from": args.init.name, "steps": str(args.steps), "batch_size": str(args.batch_size),
                "lr": str(args.lr), "plain": str(args.plain),
                "per_language": str(args.per_language),
                "cosine_weight": str(args.cosine_weight), "small": str(args.small), "seed": str(args.seed),
                "weight_decay": str(args.weight_decay), "threads": str(args.threads),
                "train_seconds": f"{train_s:.0f}"}
    save_fp16(model, args.out, metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {train_s:.0f} s", flush=True)

    shipped, shipped_tokenizer = load_demo_model(args.config, args.out)
    with torch.inference_mode():
        texts = [caption for c in vocab.CONCEPTS for caption in vocab.captions(c.shape, c.colour)]
        text_gap = (model.encode_text(tokenizer(texts), normalize=True)
                    - shipped.encode_text(shipped_tokenizer(texts), normalize=True)).abs().max().item()
        original, _ = load_demo_model(args.config, args.init)
        text_vs_init = (original.encode_text(tokenizer(texts), normalize=True)
                        - shipped.encode_text(shipped_tokenizer(texts), normalize=True)).abs().max().item()
    print(f"reloaded: max |text embedding difference| vs trained {text_gap:.2e}, vs --init {text_vs_init:.2e}")
    for language in vocab.LANGUAGES if args.eval_trials > 0 else ():
        scores = retrieval_scores(shipped, shipped_tokenizer, heldout_frames(EVAL_SEED, args.eval_trials), language)
        print(f"held-out (seed {EVAL_SEED}, {args.eval_trials} x {len(vocab.CONCEPTS)} frames), {language}: {scores}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
