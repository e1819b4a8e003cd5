"""Where a query's time goes in the text encoder, in-process: ``python bench/text_query.py [--model ViT-B-32]``.

For ``--queries`` distinct texts, one at a time (as searches arrive), with the text tower alone
(``towers="text"``, as the text encoder loads it), it times:

- tokenise: open_clip's BPE tokenizer, to the ids tensor;
- encode: the transformer over the real tokens, projection, L2 norm, to a numpy vector;
- the whole ``ClipModel.encode_texts`` call, with torch at 1 thread and at its default (all cores),
  alternating query by query so that the machine's background load hits both alike;
- a hit of the text encoder's query cache (``QueryCache``);
- (de)serialise: what each hop of the Flow does to the request and the answer: a ``DocList[Query]``
  of one query to protobuf bytes and back, as jina's gRPC does, and to JSON and back, as the HTTP
  gateway does; before encoding (text only) and after (with the embedding).

The hops between processes and the index search are measured by bench/search_latency.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import load_average, percentile  # noqa: E402

SUBJECTS = ["a dog", "a red car", "two children", "an old man", "a cat", "a horse", "a yellow star", "a woman"]
ACTIONS = ["jumps into a swimming pool", "runs along a beach at sunset", "rides a bike in the rain",
           "sleeps on a sofa", "eats a birthday cake", "crosses a busy street", "plays football on grass"]


def query_texts(count: int) -> list[str]:
    """``count`` distinct, realistic queries (5-10 words)."""
    texts = [f"{s} {a}" for a in ACTIONS for s in SUBJECTS]
    return [texts[i % len(texts)] + ("" if i < len(texts) else f" {i // len(texts)}") for i in range(count)]


def _ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50": percentile(ms, 50), "p90": percentile(ms, 90)}


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def measure_text_query(model: str, pretrained: str, precision: str, queries: int) -> dict[str, dict[str, float]]:
    import torch
    from docarray import DocList

    from clipseek.clip_model import load_clip
    from clipseek.docs import Query
    from clipseek.query_cache import QueryCache

    clip = load_clip(model, pretrained, "cpu", precision, towers="text")
    default_threads = torch.get_num_threads()
    texts = query_texts(queries)
    for text in texts[:5]:  # warm-up
        clip.encode_texts([text])
    parts: dict[str, list[float]] = {k: [] for k in (
        "tokenise", "encode (transformer + norm)", "encode_texts, 1 thread", f"encode_texts, {default_threads} threads",
        "cache hit", "protobuf out+in, request", "protobuf out+in, answer", "JSON out+in, request",
        "JSON out+in, answer")}
    cache = QueryCache(len(texts))
    for i, text in enumerate(texts):
        started = time.perf_counter()
        tokens = clip.tokenize([text])
        parts["tokenise"].append(time.perf_counter() - started)
        started = time.perf_counter()
        with torch.inference_mode():
            features = clip._encode_real_tokens(tokens)
            vector = torch.nn.functional.normalize(features.float(), dim=-1).numpy()
        parts["encode (transformer + norm)"].append(time.perf_counter() - started)
        order = (1, default_threads) if i % 2 else (default_threads, 1)
        for threads in order:
            clip.text_threads = threads
            parts[f"encode_texts, {threads} thread{'s' if threads > 1 else ''}"].append(
                timed(clip.encode_texts, [text]))
        clip.text_threads = 0
        cache.put(text, vector[0])
        parts["cache hit"].append(timed(cache.get, text))
        request = DocList[Query]([Query(text=text)])
        answer = DocList[Query]([Query(text=text, embedding=vector[0], model=clip.spec.name)])
        for name, docs in (("request", request), ("answer", answer)):
            parts[f"protobuf out+in, {name}"].append(
                timed(lambda d: DocList[Query].from_protobuf(d.to_protobuf()).__len__(), docs))
            parts[f"JSON out+in, {name}"].append(timed(lambda d: DocList[Query].from_json(d.to_json()), docs))
    return {name: _ms(values) for name, values in parts.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(f"load average at start: {load_average()}; {args.model} ({args.pretrained}), precision {args.precision}, "
          f"{args.queries} distinct queries, one at a time")
    result = measure_text_query(args.model, args.pretrained, args.precision, args.queries)
    print(f"{'part':<34} {'p50 ms':>8} {'p90 ms':>8}")
    for name, stats in result.items():
        print(f"{name:<34} {stats['p50']:>8.3f} {stats['p90']:>8.3f}")
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
