"""Where a query's time goes in the text encoder, in-process: ``python bench/text_query.py [--model ViT-B-32]``.

For ``--queries`` distinct texts, one at a time (as searches arrive), with the text encoder
(services/text_encoder, loaded in-process with its default settings: text tower only, one thread),
it times:

- tokenise: open_clip's BPE tokenizer, to the ids tensor;
- the transformer over the real tokens, projection and L2 norm to a numpy vector, on the encoder's
  thread count and on torch's default (all cores), alternating which goes first query by query so
  that the machine's background load hits both alike;
- the executor's whole ``encode`` of a one-query request: a new text, then the same text again
  (answered from its query cache);
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
    from jina import Executor

    from clipseek.docs import Query
    from clipseek.model.clip import torch_threads
    from clipseek.model.open_clip_compat import encode_real_tokens

    encoder = Executor.load_config(str(REPO / "services" / "text_encoder" / "config.yml"),
                                   uses_with={"model": model, "pretrained": pretrained, "precision": precision,
                                              "device": "cpu"})
    clip, threads = encoder.clip, encoder.clip.text_threads  # the text encoder's settings (1 thread)
    default_threads = torch.get_num_threads()
    texts = query_texts(queries)
    for text in texts[:5]:  # warm-up
        clip.encode_texts([text])
    names = {t: f"transformer + norm, {t} thread{'s' if t > 1 else ''}" for t in (threads, default_threads)}
    parts: dict[str, list[float]] = {k: [] for k in (
        "tokenise", *names.values(), "TextEncoder.encode, new text", "TextEncoder.encode, cached text",
        "protobuf out+in, request", "protobuf out+in, answer", "JSON out+in, request", "JSON out+in, answer")}

    def transformer(tokens, count: int) -> None:
        with torch.inference_mode(), torch_threads(count):
            torch.nn.functional.normalize(encode_real_tokens(clip.model, tokens).float(), dim=-1).numpy()

    for i, text in enumerate(texts):
        started = time.perf_counter()
        tokens = clip.tokenize([text])
        parts["tokenise"].append(time.perf_counter() - started)
        for count in ((threads, default_threads) if i % 2 else (default_threads, threads)):  # alternate the order
            parts[names[count]].append(timed(transformer, tokens, count))
        parts["TextEncoder.encode, new text"].append(timed(encoder.encode, DocList[Query]([Query(text=text)])))
        parts["TextEncoder.encode, cached text"].append(timed(encoder.encode, DocList[Query]([Query(text=text)])))
        request = DocList[Query]([Query(text=text)])
        answer = encoder.encode(DocList[Query]([Query(text=text)]))
        for name, docs in (("request", request), ("answer", answer)):
            parts[f"protobuf out+in, {name}"].append(
                timed(lambda d: DocList[Query].from_protobuf(d.to_protobuf()), docs))
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
