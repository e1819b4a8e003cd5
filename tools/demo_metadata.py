"""Metadata for the demo videos, so that every feature about words shows offline: a JSON-lines manifest
next to the videos with an English and a Chinese title and brief, a category and tags per video.

The titles and briefs say what each video shows (from ``truth.json``: its shots' shapes and colours);
the categories (Beach 海滩, Wedding 婚礼, ...) are what the demo model cannot see, so a search for
"wedding" or "海滩" finds videos by their words only, and the frames find the shapes.

    python tools/demo_metadata.py DEMO_VIDEOS_DIR        # writes DEMO_VIDEOS_DIR/metadata.jsonl
    clipseek import-metadata DEMO_VIDEOS_DIR/metadata.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from clipseek.demo.vocab import COLOURS_ZH, SHAPES_ZH  # noqa: E402

MANIFEST_NAME = "metadata.jsonl"
# (category, its Chinese name, where the English brief says it happens, the Chinese brief's)
SETTINGS = [("Beach", "海滩", "at the beach", "海滩上"), ("Wedding", "婚礼", "at a wedding", "婚礼上"),
            ("City", "城市", "in the city", "城市里"), ("Nature", "自然", "out in nature", "大自然中"),
            ("Festival", "节日", "at a festival", "节日里"), ("Travel", "旅行", "on a journey", "旅途中")]


def _names(shots: list[dict]) -> tuple[list[str], list[str]]:
    """The distinct things a video shows, in order: English ("red circle") and Chinese (红色圆形)."""
    seen = list(dict.fromkeys((s["colour"], s["shape"]) for s in shots))
    return [f"{c} {s}" for c, s in seen], [f"{COLOURS_ZH[c]}{SHAPES_ZH[s]}" for c, s in seen]


def _article(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def demo_rows(truth: dict) -> list[dict]:
    """One manifest row per demo video (``path``: its file name, relative to the manifest's folder)."""
    rows = []
    for number, video in enumerate(truth["videos"]):
        category, category_zh, where, where_zh = SETTINGS[number % len(SETTINGS)]
        english, chinese = _names(video["shots"])
        title = f"{english[0].capitalize()}" + (f" and {english[1]}" if len(english) > 1 else "") + f" {where}"
        title_zh = f"{where_zh}的{chinese[0]}" + (f"和{chinese[1]}" if len(chinese) > 1 else "")
        rows.append({
            "path": video["file"], "title": title, "title_zh": title_zh,
            "description": f"{where.capitalize()}: " + ", then ".join(_article(n) for n in english) + ".",
            "description_zh": f"{where_zh}：" + "，然后是".join(chinese) + "。",
            "category": category, "category_zh": category_zh,
            "tags": list(dict.fromkeys(s["shape"] for s in video["shots"])),
        })
    return rows


def write_demo_metadata(videos_dir: Path) -> Path:
    """Write ``videos_dir/metadata.jsonl`` from ``videos_dir/truth.json``; its path."""
    truth = json.loads((videos_dir / "truth.json").read_text())
    manifest = videos_dir / MANIFEST_NAME
    manifest.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in demo_rows(truth)),
                        encoding="utf-8")
    return manifest


def import_demo_metadata(client, videos_dir: Path) -> str:
    """Write the manifest, import it, set the topic vocabulary (the demo shapes); what happened, to print."""
    from clipseek.index.metadata import read_manifest

    manifest = write_demo_metadata(videos_dir)
    rows, errors = read_manifest(manifest.read_text(encoding="utf-8"), "jsonl", base=videos_dir.resolve())
    answers = client.import_metadata(rows)
    failed = errors + [a.error for a in answers if a.status == "failed"]
    labels = client.ensure_vocabulary()
    lines = [f"imported {len(answers) - len(failed)} rows of metadata from {manifest} ({len(failed)} failed); "
             f"topics: {', '.join(label.name for label in labels)}"]
    for text in ("wedding", "海滩"):
        found = client.search(text, top_k=3, mode="text")
        lines.append(f'words "{text}": ' + ("; ".join(f"{Path(s.video).name} ({s.title})" for s in found)
                                           or "nothing"))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(write_demo_metadata(Path(sys.argv[1])))
