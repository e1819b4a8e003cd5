"""Teach a trained demo model Chinese by distillation: English and the image tower stay exactly as they are.

The published multilingual CLIPs were made this way: a student text tower learns to put a caption in another
language where the teacher puts the English one, and the image tower is frozen. Here teacher and student are
the same model. Chinese captions tokenize to tokens no English caption uses (CLIP's byte-level BPE: only the
start, end and padding tokens are shared, which the script checks), so the student trains only those rows of
the token table and the positions past the longest English caption. Every English caption then embeds as
before, bit for bit up to fp16, and the image tower is untouched: the model is no worse in English by
construction. The context grows to fit the longest Chinese caption (its new positions start as open_clip
initialises them).

Loss, over every Chinese phrasing of every concept: cross-entropy against the 64 concepts' English embeddings
(the teacher's mean over its English phrasings) plus ``--cosine-weight`` times one minus the cosine to the
caption's own concept.
Seconds per step; deterministic for a seed.

    python tools/distill_demo_text.py --out-dir DIR [--teacher-config C.json] [--teacher W.safetensors]
        [--context-length 40] [--steps 300] [--lr 0.01]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from eval_demo_model import encode_texts, load_demo_model  # noqa: E402  (tools/ is on sys.path as a script)
from train_demo_model import save_fp16  # noqa: E402

from clipseek.demo import MODEL_CONFIG_PATH, MODEL_NAME, MODEL_WEIGHTS_PATH, TRAIN_SEED, vocab  # noqa: E402

log = logging.getLogger("clipseek.demo.distill")
DISTILL_LOGIT_SCALE = 50.0  # softmax sharpness of the contrastive term over the 64 concepts


def captions_of(language: str) -> tuple[list[str], torch.Tensor]:
    """Every phrasing of every concept in ``language``, and each one's concept index."""
    texts, concepts = [], []
    for index, concept in enumerate(vocab.CONCEPTS):
        phrasings = vocab.captions(concept.shape, concept.colour, language)
        texts += phrasings
        concepts += [index] * len(phrasings)
    return texts, torch.tensor(concepts)


def student_config(teacher_config: dict, context_length: int) -> dict:
    """The teacher's config with a longer text context."""
    if context_length < teacher_config["text_cfg"]["context_length"]:
        raise ValueError(f"--context-length {context_length} is shorter than the teacher's "
                         f"{teacher_config['text_cfg']['context_length']}")
    config = json.loads(json.dumps(teacher_config))
    config["text_cfg"]["context_length"] = context_length
    return config


def row_mask_hook(mask: torch.Tensor):
    """A gradient hook that zeroes every row of a parameter's gradient outside ``mask``."""
    return lambda grad: grad * mask.view(-1, *([1] * (grad.dim() - 1))).to(grad.dtype)


def distill(teacher: torch.nn.Module, teacher_tokenizer, student: torch.nn.Module, student_tokenizer,
            steps: int, lr: float, cosine_weight: float = 1.0) -> dict[str, float]:
    """Train ``student``'s Chinese token rows and late positions toward ``teacher``'s English embeddings."""
    en_texts, _ = captions_of("en")
    zh_texts, zh_concepts = captions_of("zh")
    en_tokens, zh_tokens = student_tokenizer(en_texts), student_tokenizer(zh_texts)
    longest_zh = int((zh_tokens != 0).sum(dim=1).max())
    if longest_zh > zh_tokens.shape[1] or (zh_tokens[:, -1] != 0).any():
        raise ValueError(f"a Chinese caption of {longest_zh} tokens does not fit the context {zh_tokens.shape[1]}")
    shared = (set(en_tokens.unique().tolist()) & set(zh_tokens.unique().tolist())) - {
        0, student_tokenizer.sot_token_id, student_tokenizer.eot_token_id}
    if shared:
        raise ValueError(f"English and Chinese captions share tokens {sorted(shared)}: English would change")
    english_positions = int((en_tokens != 0).sum(dim=1).max())  # positions any English caption reaches

    with torch.inference_mode():
        per_concept = encode_texts(teacher, teacher_tokenizer, en_texts).view(len(vocab.CONCEPTS), -1,
                                                                             student.text_projection.shape[1])
    targets = F.normalize(per_concept.mean(dim=1), dim=-1)

    for param in student.parameters():
        param.requires_grad_(False)
    token_rows = torch.zeros(student.token_embedding.weight.shape[0], dtype=torch.bool)
    token_rows[zh_tokens.unique()] = True
    token_rows[[0, student_tokenizer.sot_token_id, student_tokenizer.eot_token_id]] = False
    position_rows = torch.arange(student.positional_embedding.shape[0]) >= english_positions
    trained = [student.token_embedding.weight, student.positional_embedding]
    for param, mask in zip(trained, (token_rows, position_rows), strict=True):
        param.requires_grad_(True)
        param.register_hook(row_mask_hook(mask))
    optimizer = torch.optim.Adam(trained, lr=lr)
    student.eval()  # the text tower has no dropout or batch norm; eval keeps the frozen image tower's BN still
    started = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        features = student.encode_text(zh_tokens, normalize=True)
        logits = DISTILL_LOGIT_SCALE * features @ targets.T
        cosine = (features * targets[zh_concepts]).sum(dim=-1)
        loss = F.cross_entropy(logits, zh_concepts) + cosine_weight * (1 - cosine).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 25 == 0 or step + 1 == steps:
            accuracy = (logits.argmax(dim=1) == zh_concepts).float().mean().item()
            print(f"step {step + 1}/{steps}  loss {loss.item():.4f}  Chinese caption -> its concept {accuracy:.1%}  "
                  f"cosine to the English target {cosine.mean().item():.4f} (min {cosine.min().item():.4f})  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    student.requires_grad_(False)
    return {"train_seconds": time.perf_counter() - started, "trained_token_rows": int(token_rows.sum()),
            "first_trained_position": english_positions}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher-config", type=Path, default=MODEL_CONFIG_PATH, help="the trained model's config")
    parser.add_argument("--teacher", type=Path, default=MODEL_WEIGHTS_PATH, help="the trained model's weights")
    parser.add_argument("--out-dir", type=Path, required=True,
                        help=f"where {MODEL_NAME}.json and {MODEL_NAME}.safetensors are written")
    parser.add_argument("--context-length", type=int, default=40, help="text context of the student")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--cosine-weight", type=float, default=1.0,
                        help="weight of the (1 - cosine to the target) term beside the cross-entropy")
    parser.add_argument("--seed", type=int, default=TRAIN_SEED, help="seeds the new positions' initial values")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.teacher_config.stem != MODEL_NAME:
        raise ValueError(f"--teacher-config must be named {MODEL_NAME}.json (open_clip names the model after the "
                         f"file), got {args.teacher_config}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    teacher, teacher_tokenizer = load_demo_model(args.teacher_config, args.teacher)
    config = student_config(json.loads(args.teacher_config.read_text()), args.context_length)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out_config = args.out_dir / f"{MODEL_NAME}.json"
    if out_config.resolve() == args.teacher_config.resolve():
        raise ValueError(f"--out-dir {args.out_dir} holds the teacher's config: write elsewhere, then copy")
    out_config.write_text(json.dumps(config, indent=4) + "\n")
    student, student_tokenizer = load_demo_model(out_config, weights_path=None)
    state = teacher.state_dict()
    kept = student.positional_embedding.detach().clone()
    kept[: teacher.positional_embedding.shape[0]] = teacher.positional_embedding
    state["positional_embedding"] = kept
    student.load_state_dict(state)

    figures = distill(teacher, teacher_tokenizer, student, student_tokenizer, args.steps, args.lr,
                      args.cosine_weight)
    out_weights = args.out_dir / f"{MODEL_NAME}.safetensors"
    save_fp16(student, out_weights, {
        "model": MODEL_NAME, "config": json.dumps(config), "distilled_from": args.teacher.name,
        "steps": str(args.steps), "lr": str(args.lr), "cosine_weight": str(args.cosine_weight), "seed": str(args.seed),
        "train_seconds": f"{figures['train_seconds']:.0f}"})

    # The file, loaded as the engine loads it: English embeds as the teacher's, Chinese finds its concept.
    shipped, tokenizer = load_demo_model(out_config, out_weights)
    en_texts, _ = captions_of("en")
    zh_texts, zh_concepts = captions_of("zh")
    with torch.inference_mode():
        en_gap = (encode_texts(shipped, tokenizer, en_texts)
                  - encode_texts(teacher, teacher_tokenizer, en_texts)).abs().max().item()
        probe = torch.rand(2, 3, *([config["vision_cfg"]["image_size"]] * 2))
        image_gap = (shipped.encode_image(probe) - teacher.encode_image(probe)).abs().max().item()
        targets = F.normalize(encode_texts(teacher, teacher_tokenizer, en_texts).view(
            len(vocab.CONCEPTS), -1, shipped.text_projection.shape[1]).mean(dim=1), dim=-1)
        zh_hits = (encode_texts(shipped, tokenizer, zh_texts) @ targets.T).argmax(dim=1) == zh_concepts
    print(f"wrote {out_weights} ({out_weights.stat().st_size / 1e6:.2f} MB) and {out_config}; "
          f"{figures['trained_token_rows']} token rows and positions >= {figures['first_trained_position']} trained "
          f"in {figures['train_seconds']:.0f} s")
    print(f"reloaded: max |English text embedding - teacher's| {en_gap:.2e}, image {image_gap:.2e}; "
          f"Chinese caption -> its concept's English embedding {zh_hits.float().mean().item():.1%}")


if __name__ == "__main__":
    main()
