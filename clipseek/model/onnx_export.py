"""Export a model's tower to ONNX: ``python -m clipseek.model.onnx_export --model M --pretrained P --out F``.

Run by clipseek.model.onnx_text in a short-lived child process (this one imports torch; the text encoder
that starts it does not). The model is loaded as the torch encoders load it (ClipModel, one tower, fp32,
CPU). ``--tower text`` (the default): the graph takes int64 token ids (batch x length, both dynamic) and
returns the fp32 L2-normalised embedding (batch x dim). ``--tower image`` (picture queries, which the text
encoder embeds: clipseek.model.onnx_image): uint8 RGB pixels (batch x size x size x 3) in, the same out.
Before the file is written under its name, ONNX Runtime runs it on probes (``PROBES``, ``probe_frames``)
and each embedding must be within cosine ``MIN_COSINE`` of torch's: a graph that disagrees is refused
(exit status 2), and the text encoder stays on torch for that tower. The weights go to a file of their own
beside the graph (``<name>.onnx.data``, ONNX's external data): ONNX Runtime maps it instead of parsing a
second copy of the weights out of the graph file. Both files are written in a temporary folder beside
them and moved into place, the weights first, so a reader that finds the graph finds its weights too. The
export uses torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, which needs the ``onnx`` and
``onnxscript`` packages): the older TorchScript tracer bakes the batch size into the attention's reshapes.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from clipseek.model.onnx_text import (
    PIXELS_INPUT,
    TOKENS_INPUT,
    TOWERS,
    TRIM_CAUSAL,
    TRIM_PADDING,
    VECTOR_OUTPUT,
    ExportInfo,
    cut_columns,
    open_session,
)

logger = logging.getLogger("clipseek.onnx_export")

MIN_COSINE = 0.9999
PROBES = ["a dog jumps into a swimming pool", "a", "", "A RED CIRCLE, on the left!", "红色的圆形",
          "🐶 at the beach 🌊", "word " * 200, "two children ride bikes in the rain at night"]


class ExportRefused(RuntimeError):
    pass


def text_module(clip):
    """A torch module: token ids (already cut: onnx_text.cut_columns) -> unit-length fp32 embedding; its trim."""
    import torch

    from clipseek.model.open_clip_compat import causal_text_tower, encode_causal_tokens

    model = clip.model
    causal = causal_text_tower(model)
    pad = getattr(getattr(getattr(model, "text", None), "config", None), "pad_token_id", None)
    if not causal and pad is None:
        raise ExportRefused(f"{clip.spec.name}: a text tower that is neither open_clip's causal transformer nor a "
                            f"Hugging Face model (its padding cannot be cut safely)")

    class TextTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, tokens):
            features = encode_causal_tokens(self.model, tokens) if causal else self.model.encode_text(tokens)
            return torch.nn.functional.normalize(features.float(), dim=-1)

    return TextTower().eval(), (TRIM_CAUSAL if causal else TRIM_PADDING), (0 if causal else int(pad))


def image_module(clip):
    """A torch module: uint8 RGB pixels (batch x size x size x 3, letterboxed as the loader and
    clipseek.media.query_image make them) -> unit-length fp32 embedding, with ClipModel's normalisation."""
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = clip.model
            self.register_buffer("mean", clip._mean.float().clone())
            self.register_buffer("std", clip._std.float().clone())

        def forward(self, pixels):
            x = (pixels.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
            return torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1)

    return ImageTower().eval()


def probe_frames(size: int) -> np.ndarray:
    """A few images that differ in colour, texture and layout: CHECK's inputs for an image tower."""
    rng = np.random.default_rng(0)
    frames = [np.full((size, size, 3), colour, np.uint8) for colour in ((255, 0, 0), (20, 200, 40), (0, 0, 0))]
    frames.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    frames.append(np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)),
                            np.full((size, size), 128, np.uint8)], axis=-1))
    return np.stack(frames)


def export(model: str, pretrained: str | None, out: Path, tower: str = "text") -> ExportInfo:
    """Write the ``tower`` of these settings to ``out`` (staged beside it, checked, moved); its ExportInfo."""
    import torch

    from clipseek.model.clip import ClipModel
    from clipseek.model.spec import resolve_model

    clip = ClipModel(resolve_model(model, pretrained), "cpu", "fp32", towers=tower)
    batch = torch.export.Dim("batch", min=1, max=4096)
    if tower == "text":
        module, trim, pad_id = text_module(clip)
        info = ExportInfo(clip.identity, clip.embed_dim, "text", trim, pad_id)
        example = torch.from_numpy(cut_columns(clip.tokenize(PROBES[:2]).numpy(), trim, pad_id))
        names, shapes = [TOKENS_INPUT], {"tokens": {0: batch, 1: torch.export.Dim("length", min=1,
                                                                                   max=clip.context_length)}}
    else:
        module = image_module(clip)
        info = ExportInfo(clip.identity, clip.embed_dim, "image", image_size=clip.image_size)
        example = torch.from_numpy(probe_frames(clip.image_size)[:2])
        names, shapes = [PIXELS_INPUT], {"pixels": {0: batch}}
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(module, (example,), dynamo=True, external_data=False, input_names=names,
                                    output_names=[VECTOR_OUTPUT], dynamic_shapes=shapes, verbose=False)
    program.model.metadata_props.update(info.to_metadata())
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staged = staging / out.name
        program.save(staged, external_data=True)  # the weights in staged.onnx.data, named so in the graph
        check(clip, staged, tower)
        weights = staged.with_name(staged.name + ".data")
        if weights.is_file():
            os.replace(weights, out.with_name(weights.name))
        os.replace(staged, out)  # atomic, and last: a reader sees the whole export or none
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def check(clip, path: Path, tower: str = "text") -> float:
    """The smallest cosine between ONNX Runtime's and torch's embeddings of the probes (PROBES, or
    probe_frames); ExportRefused below MIN_COSINE."""
    session, info = open_session(path, threads=0, tower=tower)
    if tower == "text":
        reference = clip.encode_texts(PROBES)
        got = np.concatenate([session.run([VECTOR_OUTPUT], {TOKENS_INPUT: cut_columns(
            clip.tokenize(PROBES[i:i + 3]).numpy(), info.trim, info.pad_id)})[0] for i in range(0, len(PROBES), 3)])
    else:
        frames = probe_frames(info.image_size)
        reference = clip.encode_frames(frames)
        got = np.concatenate([session.run([VECTOR_OUTPUT], {PIXELS_INPUT: frames[i:i + 2]})[0]
                              for i in range(0, len(frames), 2)])
    cosine = float((reference * got).sum(axis=1).min())
    if not cosine >= MIN_COSINE:
        raise ExportRefused(f"{clip.spec.name}: ONNX Runtime's {tower} embeddings differ from torch's (cosine "
                            f"{cosine:.6f} < {MIN_COSINE})")
    return cosine


def die_with_parent() -> None:
    """Be killed when the process that started this one dies (Linux ``PR_SET_PDEATHSIG``, as clipseek serve
    does for its executors): an export never outlives the text encoder that asked for it."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (linux/prctl.h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pretrained", default=None,
                        help="a pretrained tag, a checkpoint file or folder, or none (absent: a preset's weights)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--tower", default="text", choices=TOWERS)
    args = parser.parse_args(argv)
    die_with_parent()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        info = export(args.model, args.pretrained, args.out, args.tower)
    except ExportRefused as exc:
        print(f"ExportRefused: {exc}", file=sys.stderr)
        return 2
    print(f"exported the {info.tower} tower of {info.identity} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
