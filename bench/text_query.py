"""Where a query's time goes in the text encoder, in-process: ``python bench/text_query.py [--model ViT-B-32]``.

For ``--queries`` distinct texts, one at a time (as searches arrive), with the text encoder
(services/text_encoder, loaded in-process: text tower only, one thread) on each runtime
(``text_runtime`` onnx and torch), it times:

- tokenise: open_clip's BPE tokenizer (to a torch tensor) and clipseek's torch-free copy (to numpy);
- the model alone over the real tokens (projection and L2 norm included, to a numpy vector), one
  thread: ONNX Runtime (fp32), torch fp32, and torch in ``--precision`` when that is not fp32 on this
  machine (``auto``: bf16 where the CPU has native bf16), rotating which goes first query by query so
  that the machine's background load hits all alike;
- the executor's whole ``encode`` of a one-query request on each runtime: a new text, then the same
  text again (answered from its query cache);
- (de)serialise: what each hop of the Flow does to the request and the answer: a ``DocList[Query]``
  of one query to protobuf bytes and back, as jina's gRPC does, and to JSON and back, as the HTTP
  gateway does; before encoding (text only) and after (with the embedding).

Last it prints the smallest cosine between ONNX Runtime's and torch fp32's embeddings of the queries.
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
    import numpy as np
    import torch
    from docarray import DocList
    from jina import Executor

    from clipseek.docs import Query
    from clipseek.model.clip import load_clip
    from clipseek.model.onnx_text import TOKENS_INPUT, VECTOR_OUTPUT, OnnxTextModel, cut_columns
    from clipseek.model.open_clip_compat import encode_real_tokens

    def text_encoder(**settings):
        return Executor.load_config(str(REPO / "services" / "text_encoder" / "config.yml"),
                                    uses_with={"model": model, "pretrained": pretrained, "device": "cpu", **settings})

    encoders = {"onnx": text_encoder(text_runtime="onnx"), "torch": text_encoder(text_runtime="torch",
                                                                                 precision=precision)}
    onnx = encoders["onnx"].clip
    assert isinstance(onnx, OnnxTextModel), type(onnx)
    towers = {"torch fp32": load_clip(model, pretrained, "cpu", "fp32", towers="text")}
    if encoders["torch"].clip.precision != "fp32":
        towers[f"torch {encoders['torch'].clip.precision}"] = encoders["torch"].clip
    torch.set_num_threads(1)  # as the text encoder's torch_threads = 1

    def run_torch(clip, tokens) -> np.ndarray:
        with torch.inference_mode():
            return torch.nn.functional.normalize(encode_real_tokens(clip.model, tokens).float(), dim=-1).numpy()

    def run_onnx(tokens: np.ndarray) -> np.ndarray:
        return onnx.session.run([VECTOR_OUTPUT], {TOKENS_INPUT: cut_columns(tokens, onnx.info.trim,
                                                                            onnx.info.pad_id)})[0]

    texts = query_texts(queries)
    for text in texts[:5]:  # warm-up
        for runtime in encoders.values():
            runtime.clip.encode_texts([text])
        towers["torch fp32"].encode_texts([text])
    models = {"ONNX Runtime fp32": None, **towers}
    parts: dict[str, list[float]] = {k: [] for k in (
        "tokenise, open_clip", "tokenise, torch-free", *(f"model alone, {name}" for name in models),
        *(f"encode, {r}, new text" for r in encoders), *(f"encode, {r}, cached text" for r in encoders),
        "protobuf out+in, request", "protobuf out+in, answer", "JSON out+in, request", "JSON out+in, answer")}
    worst_cosine = 1.0
    for i, text in enumerate(texts):
        reference = towers["torch fp32"]
        started = time.perf_counter()
        tokens = reference.tokenize([text])
        parts["tokenise, open_clip"].append(time.perf_counter() - started)
        started = time.perf_counter()
        ids = onnx.tokenize([text])
        parts["tokenise, torch-free"].append(time.perf_counter() - started)
        names = list(models)
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotate the order
            if models[name] is None:
                parts[f"model alone, {name}"].append(timed(run_onnx, ids))
            else:
                parts[f"model alone, {name}"].append(timed(run_torch, models[name], tokens))
        worst_cosine = min(worst_cosine, float((run_onnx(ids) * run_torch(reference, tokens)).sum()))
        for runtime, encoder in encoders.items():
            parts[f"encode, {runtime}, new text"].append(timed(encoder.encode, DocList[Query]([Query(text=text)])))
            parts[f"encode, {runtime}, cached text"].append(timed(encoder.encode,
                                                                  DocList[Query]([Query(text=text)])))
        request = DocList[Query]([Query(text=text)])
        answer = encoders["onnx"].encode(DocList[Query]([Query(text=text)]))
        for name, docs in (("request", request), ("answer", answer)):
            parts[f"protobuf out+in, {name}"].append(
                timed(lambda d: DocList[Query].from_protobuf(d.to_protobuf()), docs))
            parts[f"JSON out+in, {name}"].append(timed(lambda d: DocList[Query].from_json(d.to_json()), docs))
    result = {name: _ms(values) for name, values in parts.items()}
    result["min cosine ONNX vs torch fp32"] = {"p50": worst_cosine, "p90": worst_cosine}
    return result


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
    print(f"{'part':<40} {'p50 ms':>8} {'p90 ms':>8}")
    for name, stats in result.items():
        if name.startswith("min cosine"):
            print(f"{name:<40} {stats['p50']:>8.6f}")
        else:
            print(f"{name:<40} {stats['p50']:>8.3f} {stats['p90']:>8.3f}")
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
