"""Teach the demo model to read a Chinese caption with other Chinese words around it (step 5 of the demo
checkpoint, docs/demo-model.md).

Step 2 (tools/distill_demo_text.py) taught the token rows of the Chinese captions to land where the English
captions land, on the captions' own phrasings only. A Chinese query that puts other words around a caption,
as the metadata search's hybrid queries do ("婚礼上的一个红色的圆形": at a wedding, a red circle), then landed
anywhere, so Chinese hybrid search could not use the frames, and Chinese words outside the vocabulary read as
matches (step 4's shared offset cannot move them: they share byte tokens with the captions).

Trained: the token rows that Chinese text uses (any non-ASCII row that a training phrase uses) and no English
caption uses, and with ``--transformer`` (the default) the text transformer, final norm and projection; never
the image tower or the positions. Loss:
- a Chinese caption with ordinary Chinese words around it (``MIXED_TEMPLATES_ZH`` over ``WORDS_ZH_ALL``) lands
  on its concept: cross-entropy over the 64 concepts' English targets (step 2's) plus 1 - cosine to its own;
- a phrase of ordinary words alone stays at most ``--ceiling`` from every concept (as step 4, in Chinese);
- every Chinese caption stays where it embedded before (``--anchor`` x (1 - cosine));
- with ``--transformer W``: every English caption, and step 4's English phrases with and without a caption,
  stay where they embedded before (W x (1 - cosine)). With ``--transformer 0`` only rows train and English
  embeds bit for bit as before (the tool checks it), but with the tool's first version the rows alone could
  not fit even the training phrases (docs/demo-model.md; not tried again since).
The training words share no character with the demo settings' Chinese words (海滩上, 婚礼上, 城市里, 大自然中,
节日里, 旅途中: what `tools/eval_hybrid.py --language zh` asks) nor with the Chinese captions, so that
evaluation measures words this step never saw (the test checks it); only connecting characters (上, 里, 中,
的) are shared.

    python tools/tune_demo_chinese.py --out W.safetensors [--transformer 20] [--steps 400]
        [--init clipseek/demo/model/clipseek-demo.safetensors]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other tools, also when imported by a test

from distill_demo_text import DISTILL_LOGIT_SCALE, captions_of, row_mask_hook  # noqa: E402
from eval_demo_model import encode_texts, load_demo_model  # noqa: E402
from tune_demo_unknown import file_sha256  # noqa: E402
from tune_demo_unknown import mixed_phrases as english_mixed_phrases  # noqa: E402
from tune_demo_unknown import training_phrases as english_unknown_phrases  # noqa: E402

from clipseek.demo import MODEL_CONFIG_PATH, MODEL_WEIGHTS_PATH, TRAIN_SEED, vocab  # noqa: E402

WORDS_ZH_ALL = (  # none is part of a held-out query below (the test checks it)
    "猫", "汽车", "山", "河", "树", "花", "房子", "街道", "孩子", "老人", "音乐", "跳舞", "下雨", "夜晚",
    "飞机", "火车", "蛋糕", "足球", "森林", "雪", "鸟", "鱼", "桥", "厨房", "学生", "医生", "唱歌", "跑步",
    "游泳", "吃饭", "公园", "学校", "办公室", "商店", "草地", "沙漠", "湖边", "天空", "云", "太阳", "月亮",
    "舞台", "教室", "医院", "车站", "机场", "广场", "花园", "农场", "村庄", "家里", "房间", "餐厅", "咖啡",
    "书", "电脑", "手机", "桌子", "椅子", "窗户", "门口", "灯光", "烟花", "气球", "派对", "比赛", "演唱会",
    "电影", "新闻", "采访", "运动", "篮球", "网球", "摩托车", "船", "雾", "冬天", "夏天", "春天", "秋天",
    "早上", "晚上", "朋友", "家人", "老师", "妈妈", "爸爸", "小孩", "宝宝", "牛", "羊", "熊", "老虎",
    "大象", "猴子", "兔子", "跑车", "卡车", "地铁", "楼房", "教堂", "寺庙", "博物馆", "超市", "厂房",
)
MIXED_TEMPLATES_ZH = ("{w}上的{caption}", "{w}里的{caption}", "{w}中的{caption}", "{caption}在{w}上",
                      "{caption}在{w}里", "{caption}和{w}", "{w}和{caption}", "{w}旁边的{caption}", "{w}：{caption}",
                      "{caption}，{w}", "{w}的{caption}", "在{w}看到{caption}")
UNKNOWN_TEMPLATES_ZH = ("{}", "一只{}", "一个{}", "{}和{}", "画面中有{}", "{}里的{}", "{}{}", "{}在{}")
HELD_OUT_MIXED_ZH = (("婚礼上的一个红色的圆形", ("circle", "red")), ("海滩上的一个蓝色的星形", ("star", "blue")),
                     ("一个绿色的心形在城市里", ("heart", "green")), ("节日里的黄色三角形", ("triangle", "yellow")))
HELD_OUT_UNKNOWN_ZH = ("婚礼", "海滩上的日落", "一匹棕色的马", "航拍城市", "一只狗跳进泳池", "节日里的人群")


def caption_characters() -> set[str]:
    """Every character of every Chinese caption of the vocabulary."""
    return {ch for c in vocab.CONCEPTS for text in vocab.captions(c.shape, c.colour, "zh") for ch in text}


def setting_characters() -> set[str]:
    """Every character of the demo settings' Chinese words (what tools/eval_hybrid.py --language zh asks),
    but the connecting ones a template may use."""
    from demo_metadata import SETTINGS

    return {ch for _, category_zh, _, where_zh in SETTINGS for ch in category_zh + where_zh} - {"上", "里", "中"}


def training_words() -> tuple[str, ...]:
    """``WORDS_ZH_ALL`` without any word that shares a character with a caption or a demo setting."""
    banned = caption_characters() | setting_characters()
    return tuple(w for w in WORDS_ZH_ALL if not set(w) & banned)


def non_ascii_rows(tokenizer) -> list[int]:
    """Token ids whose bytes are not all ASCII (Chinese and every other non-Latin script). A row that no training
    phrase uses gets no gradient and, with Adam and no weight decay, does not move."""
    return [token_id for text, token_id in tokenizer.encoder.items()
            if any(tokenizer.byte_decoder[ch] >= 0x80 for ch in text.removesuffix("</w>"))]


def mixed_phrases(rng: np.random.Generator, words: tuple[str, ...], count: int) -> tuple[list[str], list[int]]:
    phrases, concepts = [], []
    for _ in range(count):
        index = int(rng.integers(len(vocab.CONCEPTS)))
        concept = vocab.CONCEPTS[index]
        caption = vocab.caption(concept.shape, concept.colour, int(rng.integers(len(vocab.CAPTION_TEMPLATES_ZH))),
                                "zh")
        template = MIXED_TEMPLATES_ZH[rng.integers(len(MIXED_TEMPLATES_ZH))]
        phrases.append(template.format(caption=caption, w=words[rng.integers(len(words))]))
        concepts.append(index)
    return phrases, concepts


def unknown_phrases(rng: np.random.Generator, words: tuple[str, ...], count: int) -> list[str]:
    out = []
    for _ in range(count):
        template = UNKNOWN_TEMPLATES_ZH[rng.integers(len(UNKNOWN_TEMPLATES_ZH))]
        out.append(template.format(*(words[w] for w in rng.choice(len(words), size=template.count("{}")))))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH)
    parser.add_argument("--init", type=Path, default=MODEL_WEIGHTS_PATH)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--ceiling", type=float, default=0.5,
                        help="cosine to a concept a phrase of other words may reach")
    parser.add_argument("--anchor", type=float, default=10.0, help="weight of keeping each Chinese caption in place")
    parser.add_argument("--transformer", type=float, default=20.0,
                        help="also train the text transformer, keeping English text where it embedded with this weight "
                             "(0: token rows only, English bit for bit)")
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    args = parser.parse_args(argv)
    if not args.init.is_file():
        raise ValueError(f"--init {args.init}: no such checkpoint file")
    if args.out.resolve() == args.init.resolve():
        raise ValueError("--out must differ from --init")
    for name in ("steps", "lr", "ceiling", "anchor", "transformer"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must not be negative, got {getattr(args, name)}")
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    model, tokenizer = load_demo_model(args.config, args.init)
    model.requires_grad_(False)
    model.eval()
    words = training_words()
    en_texts, _ = captions_of("en")
    zh_texts, zh_concepts = captions_of("zh")
    english_rows = set(tokenizer(en_texts).unique().tolist())
    trained_rows = sorted(set(non_ascii_rows(tokenizer)) - english_rows)
    mask = torch.zeros(model.token_embedding.weight.shape[0], dtype=torch.bool)
    mask[trained_rows] = True
    with torch.no_grad():
        per_concept = encode_texts(model, tokenizer, en_texts).view(len(vocab.CONCEPTS), -1,
                                                                    model.text_projection.shape[1])
        targets = F.normalize(per_concept.mean(dim=1), dim=-1)
        every_en = [t for c in vocab.CONCEPTS for t in vocab.captions(c.shape, c.colour, "en")]
        en_before = encode_texts(model, tokenizer, every_en)
        zh_tokens = tokenizer(zh_texts)
        zh_before = model.encode_text(zh_tokens, normalize=True)

    def report(label: str) -> None:
        with torch.inference_mode():
            mixed = encode_texts(model, tokenizer, [t for t, _ in HELD_OUT_MIXED_ZH]) @ targets.T
            unknown = encode_texts(model, tokenizer, list(HELD_OUT_UNKNOWN_ZH)) @ targets.T
            zh_now = model.encode_text(zh_tokens, normalize=True)
        own = [vocab.CONCEPTS.index(vocab.Concept(*c)) for _, c in HELD_OUT_MIXED_ZH]
        each = ", ".join(f"{t!r} {row[i]:.2f} ({'nearest' if int(row.argmax()) == i else 'NOT nearest'})"
                         for (t, _), row, i in zip(HELD_OUT_MIXED_ZH, mixed, own, strict=True))
        print(f"{label}: held-out Chinese captions with other words, cosine to their own concept: {each}")
        each = ", ".join(f"{t!r} {v:.2f}" for t, v in zip(HELD_OUT_UNKNOWN_ZH, unknown.max(dim=1).values, strict=True))
        print(f"{label}: held-out Chinese phrases of other words, highest cosine to a concept: {each}")
        hits = ((zh_now @ targets.T).argmax(dim=1) == zh_concepts).float().mean().item()
        print(f"{label}: Chinese captions -> their concept {hits:.1%}, cosine to where they were: min "
              f"{(zh_now * zh_before).sum(-1).min().item():.4f}", flush=True)

    print(f"{len(trained_rows)} non-ASCII token rows may train (those the phrases use do); {len(words)} Chinese "
          f"words", flush=True)
    report("before")
    reference = copy.deepcopy(model)
    table = model.token_embedding.weight
    table.requires_grad_(True)
    table.register_hook(row_mask_hook(mask))
    params = [table]
    if args.transformer:
        params += [p for p in (*model.transformer.parameters(), *model.ln_final.parameters(), model.text_projection)]
        for p in params[1:]:
            p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=args.lr)
    en_tokens = tokenizer(every_en)
    rng = np.random.default_rng(args.seed)
    english_rng = np.random.default_rng([args.seed, 1])  # English draws do not shift the Chinese batches
    started = time.perf_counter()
    for step in range(args.steps):
        mixed, concepts = mixed_phrases(rng, words, args.batch_size)
        unknown = unknown_phrases(rng, words, args.batch_size // 2)
        features = model.encode_text(tokenizer(mixed + unknown), normalize=True)
        logits = DISTILL_LOGIT_SCALE * features[:len(mixed)] @ targets.T
        concept_ids = torch.tensor(concepts)
        own = (features[:len(mixed)] * targets[concept_ids]).sum(dim=-1)
        closest = (features[len(mixed):] @ targets.T).max(dim=1).values
        captions = model.encode_text(zh_tokens, normalize=True)
        keep = (1.0 - (captions * zh_before).sum(dim=-1)).mean()
        loss = (F.cross_entropy(logits, concept_ids) + (1.0 - own).mean()
                + F.relu(closest - args.ceiling).mean() + args.anchor * keep)
        if args.transformer:  # English (captions, captions with other words, other words) stays where it was
            english = tokenizer(english_mixed_phrases(english_rng, args.batch_size)[0]
                                + english_unknown_phrases(english_rng, args.batch_size // 2, chinese_share=0.0))
            with torch.no_grad():  # the captions' own embeddings before training are en_before
                was = torch.cat([en_before, reference.encode_text(english, normalize=True)])
            now = model.encode_text(torch.cat([en_tokens, english]), normalize=True)
            loss = loss + args.transformer * (1.0 - (now * was).sum(-1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            print(f"step {step + 1}/{args.steps}  loss {loss.item():.4f}  mixed -> own concept "
                  f"{(logits.argmax(dim=1) == concept_ids).float().mean().item():.1%}  unknown max "
                  f"{closest.max().item():.3f}  captions moved {keep.item():.5f}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    model.requires_grad_(False)
    report("after")
    with torch.inference_mode():
        en_after = encode_texts(model, tokenizer, every_en)
    gap = (en_after - en_before).abs().max().item()
    if gap != 0.0 and not args.transformer:
        raise RuntimeError(f"an English caption's embedding changed by {gap:.2e}")
    print(f"English captions: smallest cosine to where they were {(en_after * en_before).sum(-1).min().item():.5f}")
    with safe_open(str(args.init), "pt") as handle:
        state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        metadata = dict(handle.metadata() or {})
    trained_names = ["token_embedding.weight"] + ([n for n in model.state_dict() if n.startswith(
        ("transformer.", "ln_final.", "text_projection"))] if args.transformer else [])
    current = model.state_dict()
    for name in trained_names:
        state[name] = current[name].detach().to(state[name].dtype)
    metadata.update({"chinese_from": args.init.name, "chinese_from_sha256": file_sha256(args.init),
                     "chinese_steps": str(args.steps), "chinese_lr": str(args.lr), "chinese_seed": str(args.seed),
                     "chinese_batch_size": str(args.batch_size),
                     "chinese_ceiling": str(args.ceiling), "chinese_anchor": str(args.anchor),
                     "chinese_transformer": str(args.transformer),
                     "chinese_rows": str(len(trained_rows)), "chinese_seconds": f"{time.perf_counter() - started:.0f}"})
    save_file({k: v.contiguous() for k, v in state.items()}, str(args.out), metadata=metadata)
    again, again_tokenizer = load_demo_model(args.config, args.out)
    with torch.inference_mode():
        reloaded = (encode_texts(again, again_tokenizer, every_en) - en_before).abs().max().item()
    step_metadata = {k: metadata[k] for k in metadata if k.startswith("chinese")}
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB); reloaded, max |English caption embedding "
          f"difference| {reloaded:.2e}; metadata {json.dumps(step_metadata)}")


if __name__ == "__main__":
    main()
