"""Topics: every shot tagged zero-shot against a vocabulary of labels, and the time a video spends on each.

A vocabulary is a list of labels, each with an English and a Chinese name, and prompt templates per
language ("a video of {}", "一段{}的视频", ...). The text encoder embeds every prompt; a label's vector is
the normalised mean of its prompts' vectors (the usual CLIP prompt ensemble). A shot's vector is the
normalised mean of its frames' vectors; its topic is the label with the highest cosine. Seconds per
topic per video are the summed durations of its shots by topic; the topic with the most seconds is the
video's suggested category when it has none of its own.

``DEFAULT_VOCABULARY`` has 31 categories in the manner of the short-video collections this engine is
for (Aerial 航拍, Beach 海滩, Wedding 婚礼, ...): our own list, not any data set's exact label set; a
user file replaces it (``load_vocabulary``). ``DEMO_VOCABULARY`` is the demo model's shapes.

Pure functions: no storage, no model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EN_TEMPLATES = ("a video of {}", "a photo of {}", "{}")
ZH_TEMPLATES = ("一段{}的视频", "一张{}的照片", "{}")

DEFAULT_LABELS = [
    ("Aerial", "航拍", "aerial footage from a drone"), ("Beach", "海滩", "a beach by the sea"),
    ("Wedding", "婚礼", "a wedding"), ("City", "城市", "a city street"), ("Nature", "自然", "nature and landscape"),
    ("News", "新闻", "a news report"), ("Food", "美食", "food and cooking"), ("Travel", "旅行", "travel"),
    ("Sports", "体育", "sports"), ("Animals", "动物", "wild animals"), ("Pets", "宠物", "a pet cat or dog"),
    ("Music", "音乐", "a music performance"), ("Dance", "舞蹈", "people dancing"), ("Fashion", "时尚", "fashion"),
    ("Beauty", "美妆", "makeup and beauty"), ("Cars", "汽车", "cars"), ("Technology", "科技", "technology"),
    ("Games", "游戏", "a video game"), ("Education", "教育", "a lesson in a classroom"),
    ("Children", "儿童", "children playing"), ("Family", "家庭", "a family at home"),
    ("Art", "艺术", "art and painting"),
    ("Architecture", "建筑", "architecture and buildings"), ("Ocean", "海洋", "the ocean under water"),
    ("Mountains", "山脉", "mountains"), ("Sky", "天空", "the sky and clouds"),
    ("Night", "夜景", "a city at night"),
    ("Festival", "节日", "a festival celebration"), ("Business", "商务", "a business meeting in an office"),
    ("Health", "健康", "fitness and health"), ("Comedy", "搞笑", "a funny comedy sketch"),
]
DEMO_SHAPES = [("circle", "圆形"), ("square", "正方形"), ("triangle", "三角形"), ("star", "星形"),
               ("cross", "十字"), ("heart", "心形"), ("ring", "圆环"), ("diamond", "菱形")]


@dataclass(frozen=True)
class Label:
    name: str  # English name: what tables and filters use
    zh: str = ""  # Chinese name
    prompts: tuple[str, ...] = ()  # the texts embedded for it (from the templates unless given)


@dataclass(frozen=True)
class Vocabulary:
    labels: tuple[Label, ...]

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    def prompts(self) -> list[tuple[str, str]]:
        """(label name, prompt) for every prompt of every label, in order."""
        return [(label.name, prompt) for label in self.labels for prompt in label.prompts]

    @property
    def key(self) -> str:
        """A short hash of the labels and prompts (tells a stale tagging from a current one)."""
        return hashlib.sha256(json.dumps(self.prompts(), ensure_ascii=False).encode()).hexdigest()[:16]

    def label(self, name: str) -> Label | None:
        wanted = name.strip().lower()
        return next((lab for lab in self.labels if wanted in (lab.name.lower(), lab.zh.lower())), None)


def make_label(name: str, zh: str = "", phrase: str = "", prompts: list[str] | None = None,
               en_templates=EN_TEMPLATES, zh_templates=ZH_TEMPLATES) -> Label:
    if prompts:
        return Label(name, zh, tuple(prompts))
    english = phrase or name.lower()
    made = [t.format(english) for t in en_templates] + ([t.format(zh) for t in zh_templates] if zh else [])
    return Label(name, zh, tuple(dict.fromkeys(made)))


DEFAULT_VOCABULARY = Vocabulary(tuple(make_label(name, zh, phrase) for name, zh, phrase in DEFAULT_LABELS))
# The demo model learned its shapes only with a colour ("a red circle"): a shape's prompts are its captions
# in every demo colour (clipseek.demo.vocab.COLOURS), whose mean is the shape. `tools/eval_topics.py`
# (24 demo videos, seed 7): these tag 117 of 119 shots right (0.983), uncoloured prompts ("a circle") 93 (0.782).
DEMO_COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "white")
DEMO_VOCABULARY = Vocabulary(tuple(
    make_label(name, zh, prompts=[f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {name}" for colour in DEMO_COLOURS]
               + [f"一个{zh}", zh])
    for name, zh in DEMO_SHAPES))


def load_vocabulary(path: Path) -> Vocabulary:
    """A vocabulary file: JSON ``{"templates": {"en": [...], "zh": [...]}, "labels": [{"name": ..., "zh": ...,
    "phrase": ..., "prompts": [...]}, ...]}``, or a CSV/text file of ``name[,zh[,phrase]]`` lines."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix.lower() == ".json":
        data = json.loads(text)
        templates = data.get("templates", {})
        en, zh = tuple(templates.get("en", EN_TEMPLATES)), tuple(templates.get("zh", ZH_TEMPLATES))
        labels = [make_label(item["name"], item.get("zh", ""), item.get("phrase", ""), item.get("prompts"), en, zh)
                  for item in data["labels"]]
    else:
        labels = []
        for line in text.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if parts and parts[0] and not parts[0].startswith("#"):
                labels.append(make_label(parts[0], parts[1] if len(parts) > 1 else "",
                                         parts[2] if len(parts) > 2 else ""))
    if not labels:
        raise ValueError(f"{path}: no labels")
    names = [label.name.lower() for label in labels]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a label name appears twice")
    return Vocabulary(tuple(labels))


def label_vectors(vocabulary: Vocabulary, prompt_vectors: np.ndarray) -> np.ndarray:
    """One unit vector per label: the mean of its prompts' vectors (rows of ``prompt_vectors`` follow
    ``vocabulary.prompts()``)."""
    prompts = vocabulary.prompts()
    if len(prompts) != len(prompt_vectors):
        raise ValueError(f"{len(prompt_vectors)} vectors for {len(prompts)} prompts")
    out = []
    for label in vocabulary.labels:
        rows = [i for i, (name, _) in enumerate(prompts) if name == label.name]
        mean = np.asarray(prompt_vectors, dtype=np.float32)[rows].mean(axis=0)
        out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.stack(out).astype(np.float32)


@dataclass(frozen=True)
class ShotTopic:
    start_s: float
    end_s: float
    topic: str
    score: float  # cosine of the shot's mean frame vector to the label's vector
    margin: float = 0.0  # how far it stands above the second-best label


def tag_shots(shots: list[tuple[float, float]], frame_times: np.ndarray, frame_label_scores: np.ndarray,
              names: list[str]) -> list[ShotTopic]:
    """The topic of each shot from its frames' scores against every label (frames x labels cosines;
    the mean of cosines equals the cosine to the mean vector up to its norm, which ranks alike)."""
    out = []
    for start, end in shots:
        inside = (frame_times >= start) & (frame_times < end)
        if not inside.any():
            continue
        scores = frame_label_scores[inside].mean(axis=0)
        order = np.argsort(-scores)
        second = float(scores[order[1]]) if len(order) > 1 else float(scores[order[0]])
        out.append(ShotTopic(start, end, names[int(order[0])], float(scores[order[0]]),
                             float(scores[order[0]]) - second))
    return out


@dataclass
class TopicTime:
    """Seconds per topic of one video, most first."""

    video_id: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def main(self) -> str:
        return max(self.seconds, key=self.seconds.get) if self.seconds else ""


def seconds_per_topic(video_id: str, shot_topics: list[ShotTopic]) -> TopicTime:
    totals: dict[str, float] = {}
    for shot in shot_topics:
        totals[shot.topic] = totals.get(shot.topic, 0.0) + max(0.0, shot.end_s - shot.start_s)
    return TopicTime(video_id, dict(sorted(totals.items(), key=lambda kv: -kv[1])))
