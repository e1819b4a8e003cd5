"""Measure frames, text and hybrid search on a library whose words and pixels say different things.

Fresh demo videos get metadata that names only where each was filmed (a category and a title such as
"Wedding" / "At a wedding", six settings in turn), never what it shows; the pixels show only coloured
shapes. Each query names both ("a red circle at a wedding"): a result is right when it is a clip of a
video of that setting that overlaps a shot of that caption. The words alone cannot tell the shapes
apart, the frames alone cannot tell the settings apart; the fused ranking needs both.

    python tools/eval_hybrid.py [--videos 24] [--seed 7] [--language zh]

``--language zh``: Chinese metadata (category 婚礼, title 婚礼上) and Chinese queries ("婚礼上的一个红色的圆形").

Prints hit@1, hit@5 and the mean reciprocal rank (top 10) per mode (docs/metadata.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from demo_library import indexed_demo_library  # noqa: E402
from demo_metadata import SETTINGS  # noqa: E402

from clipseek.index.metadata import MetadataRow  # noqa: E402

MODES = ("frames", "text", "hybrid")
TOP_K = 10


def setting_of(number: int, language: str = "en") -> tuple[str, str]:
    """(category, the words a query uses for it) of the demo video at this position, in ``language``."""
    category, category_zh, where, where_zh = SETTINGS[number % len(SETTINGS)]
    return (category, where) if language == "en" else (category_zh, where_zh)


def metadata_rows(videos_dir: Path, truth: dict, language: str = "en") -> list[MetadataRow]:
    rows = []
    for number, video in enumerate(truth["videos"]):
        category, where = setting_of(number, language)
        rows.append(MetadataRow(f"path:{(videos_dir / video['file']).resolve()}",
                                {"title": where.capitalize(), "category": category}, number + 1))
    return rows


def queries(truth: dict, language: str = "en") -> dict[str, list[tuple[str, float, float]]]:
    """Each query and its right answers: (file, shot start, shot end) of every shot of that caption in a
    video of that setting."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    for number, video in enumerate(truth["videos"]):
        _, where = setting_of(number, language)
        for shot in video["shots"]:
            text = f"{shot['caption']} {where}" if language == "en" else f"{where}的{shot['caption_zh']}"
            out.setdefault(text, []).append((video["file"], shot["start_s"], shot["end_s"]))
    return out


def first_right(segments: list, right: list[tuple[str, float, float]]) -> int | None:
    """The 1-based rank of the first result that overlaps a right shot (None: none in the list)."""
    for rank, s in enumerate(segments, 1):
        name = Path(s.video).name
        if any(name == f and s.start_s < end and s.end_s > start for f, start, end in right):
            return rank
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--language", choices=("en", "zh"), default="en", help="of the metadata and the queries")
    args = parser.parse_args(argv)
    with indexed_demo_library(args.videos, args.seed) as (client, videos_dir, truth):
        failed = [a.error for a in client.import_metadata(metadata_rows(videos_dir, truth, args.language)) if a.error]
        if failed:
            print(f"metadata import failed: {failed}")
            return 1
        asked = queries(truth, args.language)
        ranks = {mode: [first_right(client.search(text, top_k=TOP_K, mode=mode), right)
                        for text, right in asked.items()] for mode in MODES}
    print(f"{args.videos} demo videos (seed {args.seed}) with metadata naming only their setting; {len(asked)} "
          f"queries naming a caption and a setting ({args.language}, e.g. {next(iter(asked))!r}); top {TOP_K}:")
    for mode in MODES:
        found = ranks[mode]
        hit1 = sum(r == 1 for r in found) / len(found)
        hit5 = sum(r is not None and r <= 5 for r in found) / len(found)
        mrr = sum(1 / r for r in found if r) / len(found)
        print(f"  {mode:7s} hit@1 {hit1:.3f}  hit@5 {hit5:.3f}  MRR@{TOP_K} {mrr:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
