"""Building an open_clip model with only the tower(s) a process uses, and reading only their weights.

The image encoder never embeds text and the text encoder never embeds frames, yet open_clip's model
classes always build both towers and its loader reads the whole checkpoint: ViT-B-32 is 88 M
parameters of vision and 63 M of text, ~600 MB in fp32. Here the tower a process does not need is
configured as a stand-in of a few kB (open_clip has no switch to leave it out) and removed at once;
the model is laid out on PyTorch's ``meta`` device (shapes and dtypes, no memory), its tensors are
then allocated once in their final precision (open_clip builds in fp32 and converts, so a bf16 model
peaks at its fp32 size first), and the kept tower's tensors are read from the checkpoint one at a
time (a safetensors file with plain reads of each tensor alone; a torch zip checkpoint is mapped,
not read), each copied into its parameter and dropped.

The layouts read this way are open_clip's own (what ``open_clip`` saves and what its pretrained tags
download, with or without a ``state_dict``/``module.`` wrapper). Anything else (an old OpenAI JIT
archive, big_vision ``.npz``, a checkpoint that needs open_clip's key conversions or a resized
position embedding) goes through open_clip's own full loader instead, and the other tower is dropped
after: correct, but the whole model is in memory once while loading.

Random weights (``pretrained: none``, for tests and speed benchmarks) are drawn tensor by tensor in
each tensor's own precision (``random_fill``): the scale of open_clip's initialisation, not its exact
recipe. An architecture whose modules hold computed tensors other than the causal mask (which is
recomputed) is built by open_clip itself, with its own initialisation, and loaded the same way.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("clipseek.clip")

TOWERS = ("both", "image", "text")
# Stand-ins for the tower that is not wanted: as small as open_clip's builders accept.
_STUB_VISION = {"image_size": 16, "patch_size": 16, "width": 8, "layers": 1, "head_width": 8}
_STUB_TEXT = {"context_length": 2, "vocab_size": 2, "width": 8, "heads": 1, "layers": 1}
# Attributes of open_clip's CLIP that make up its text tower (CustomTextCLIP keeps it in `.text`).
_CLIP_TEXT_PARTS = ("transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection",
                    "attn_mask")


class CheckpointLayoutError(ValueError):
    """The checkpoint is not in open_clip's own layout for this model (keys or shapes differ)."""


class _DropRecords(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def can_split(model_cfg: dict) -> bool:
    """Whether the towers of this architecture can be built apart (CoCa's text decoder reads the
    image tokens, so it keeps both)."""
    return "multimodal_cfg" not in model_cfg


def build(open_clip: Any, name: str, towers: str, device: str, precision: str,
          preprocess: dict | None = None, model_kwargs: dict | None = None) -> Any:
    """The open_clip model ``name`` with the other tower removed, its tensors on ``device`` or on
    the ``meta`` device (shapes and dtypes only, nothing allocated). ``model_kwargs`` replace parts of
    its config (open_clip_compat.hf_text_overrides)."""
    stub = {"text": {"vision_cfg": dict(_STUB_VISION)}, "image": {"text_cfg": dict(_STUB_TEXT)}}.get(towers, {})
    stub = {**(model_kwargs or {}), **stub}
    quiet = _DropRecords("No pretrained weights loaded")  # open_clip says so; the weights come next
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(name, pretrained=None, device=device, precision=precision,
                                       pretrained_image=False, pretrained_text=False,
                                       force_preprocess_cfg=preprocess or None, **stub)
    finally:
        logging.getLogger().removeFilter(quiet)
    drop_tower(model, {"text": "image", "image": "text"}.get(towers, ""))
    lower_token_embedding(model, precision)
    return model


def lower_token_embedding(model: Any, precision: str) -> None:
    """Keep the token embedding table in the text tower's compute precision.

    open_clip's fp16/bf16 keeps ``nn.Embedding`` in fp32 and casts what it looks up to the compute
    dtype at once (``token_embedding(text).to(cast_dtype)``), so a table stored in that dtype gives
    bit-identical embeddings. For ViT-B-32 the table is 25 M of the text tower's 63 M parameters:
    50 MB less in bf16.
    """
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    text = getattr(model, "text", None) or model
    embedding = getattr(text, "token_embedding", None)
    if dtype is not None and isinstance(embedding, torch.nn.Embedding):
        embedding.to(dtype)


def build_on_meta(open_clip: Any, name: str, towers: str, precision: str, preprocess: dict | None,
                  model_kwargs: dict | None = None) -> Any:
    """``build`` on the meta device; raises _NotMaterializable when allocating it afterwards could
    not restore everything (a tensor that is neither weight nor known buffer)."""
    import torch

    with torch.device("meta"):
        model = build(open_clip, name, towers, "meta", precision, preprocess, model_kwargs)
    saved = set(model.state_dict())
    unsaved = [n for n, _ in model.named_buffers() if n not in saved and n.rsplit(".", 1)[-1] != "attn_mask"]
    loose = [f"{type(m).__name__}.{k}" for m in model.modules() for k, v in vars(m).items()
             if isinstance(v, torch.Tensor)]
    if unsaved or loose:
        raise _NotMaterializable(f"{name}: computed tensors {unsaved + loose} would be lost")
    return model


def materialize(model: Any, device: str) -> Any:
    """Allocate a meta model's tensors on ``device`` (uninitialised) and recompute its causal masks."""
    import torch

    model.to_empty(device=device)
    for module in model.modules():
        mask = module._buffers.get("attn_mask")
        if mask is not None:  # open_clip's build_causal_mask
            n = mask.shape[-1]
            module._buffers["attn_mask"] = torch.full((n, n), float("-inf"), dtype=mask.dtype,
                                                      device=mask.device).triu_(1)
    return model


def random_fill(model: Any) -> None:
    """Random weights at the scale of open_clip's own initialisation, drawn tensor by tensor in
    the tensor's own dtype: matrices N(0, 1/fan_in), embeddings N(0, 0.02), position embeddings
    N(0, 0.01), norms 1 and 0, biases 0. (open_clip draws the whole model in fp32 first, which
    is the peak memory of a start with random weights.)"""
    import math

    import torch
    from torch import nn

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
            for name, param in module.named_parameters(recurse=False):
                if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)):
                    param.fill_(1.0 if name == "weight" else 0.0)
                elif name.endswith("bias") and "logit" not in name:
                    param.zero_()
                elif name == "logit_scale":
                    param.fill_(math.log(1 / 0.07))
                elif isinstance(module, nn.Embedding):
                    param.normal_(0, 0.02)
                elif "positional" in name:
                    param.normal_(0, 0.01)
                elif isinstance(module, (nn.Linear, nn.Conv2d, nn.MultiheadAttention)):  # weight: out x in...
                    param.normal_(0, (param.numel() // param.shape[0]) ** -0.5)
                else:  # a bare matrix used as x @ p (proj, text_projection) or vector (class_embedding)
                    param.normal_(0, param.shape[0] ** -0.5)


class _NotMaterializable(RuntimeError):
    pass


def drop_tower(model: Any, tower: str) -> None:
    """Remove the ``image`` or ``text`` tower (an empty name removes nothing)."""
    if tower == "image":
        model.visual = None
    elif tower == "text":
        if hasattr(model, "text"):  # CustomTextCLIP
            model.text = None
        else:
            for part in _CLIP_TEXT_PARTS:
                setattr(model, part, None)


@contextlib.contextmanager
def _open_checkpoint(path: str) -> Iterator[tuple[list[str], Callable[[str], Any]]]:
    """(keys, read one tensor) of a checkpoint file, with the ``state_dict``/``module.`` wrappers removed."""
    import torch

    if path.endswith(".safetensors"):
        with open(path, "rb") as file:
            header = _safetensors_header(file, path)
            keys = list(header)
            prefix = "module." if keys and all(k.startswith("module.") for k in keys) else ""
            yield [k[len(prefix):] for k in keys], lambda key: _read_safetensor(file, header[prefix + key], path)
        return
    if Path(path).suffix in (".npz", ".npy"):
        raise CheckpointLayoutError(f"{path}: a numpy checkpoint (open_clip converts it)")
    try:  # a zip checkpoint (torch >= 1.6) is mapped: only the tensors read are paged in
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an older format cannot be mapped: read it whole
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a JIT archive, a pickle with other objects, ...
            raise CheckpointLayoutError(f"{path}: not a plain state dict ({exc})") from exc
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise CheckpointLayoutError(f"{path}: holds a {type(checkpoint).__name__}, not a state dict")
    if checkpoint and all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    try:
        yield list(checkpoint), checkpoint.__getitem__
    finally:
        checkpoint.clear()


# safetensors dtype names -> torch dtype names
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _safetensors_header(file, path: str) -> dict:
    """name -> {dtype, shape, data_offsets (from the end of the header)}, with the header's size
    stored under ``__start__`` of each entry. The format: 8 bytes little-endian header length, the
    JSON header, the tensors' bytes."""
    try:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    except (struct.error, ValueError) as exc:
        raise CheckpointLayoutError(f"{path}: not a safetensors file ({exc})") from exc
    header.pop("__metadata__", None)
    return {name: {**entry, "__start__": 8 + length} for name, entry in header.items()}


def _read_safetensor(file, entry: dict, path: str):
    """One tensor, read with plain file reads into memory of its own: the file is not mapped, so
    the pages read stay in the page cache instead of counting in this process's resident set
    (safetensors' own ``safe_open`` maps the file: every tensor read stayed resident until the
    end, the kept tower's size in fp32 on top of the model)."""
    import torch

    dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
    if dtype is None:
        raise CheckpointLayoutError(f"{path}: tensors of type {entry['dtype']}")
    begin, end = entry["data_offsets"]
    if end == begin:
        return torch.empty(entry["shape"], dtype=getattr(torch, dtype))
    data = bytearray(end - begin)
    file.seek(entry["__start__"] + begin)
    if file.readinto(data) != len(data):
        raise CheckpointLayoutError(f"{path}: truncated")
    return torch.frombuffer(data, dtype=getattr(torch, dtype)).reshape(entry["shape"])


def load_weights(model: Any, path: str) -> int:
    """Copy every tensor of ``model`` from the checkpoint at ``path``, one at a time (cast to the
    parameter's dtype and device). Returns how many were read; raises CheckpointLayoutError when
    the checkpoint lacks one of them or has another shape (nothing useful is loaded then)."""
    import torch

    targets = model.state_dict()  # tensors sharing memory with the parameters and buffers
    with _open_checkpoint(path) as (keys, read):
        missing = sorted(set(targets) - set(keys))
        if missing:
            raise CheckpointLayoutError(f"{path}: {len(missing)} tensor(s) of the model are not in it, "
                                        f"e.g. {', '.join(missing[:3])}")
        with torch.no_grad():
            for key, target in targets.items():
                value = read(key)
                if value.shape != target.shape:
                    if value.numel() != target.numel():  # e.g. a position embedding of another size
                        raise CheckpointLayoutError(f"{path}: {key} has shape {tuple(value.shape)}, "
                                                    f"the model {tuple(target.shape)}")
                    value = value.reshape(target.shape)  # open_clip's scalar vs 1-d logit_scale
                target.copy_(value)
                del value
    return len(targets)


def build_and_load(open_clip: Any, name: str, towers: str, checkpoint: str | None, device: str, precision: str,
                   preprocess: dict | None = None, model_kwargs: dict | None = None) -> Any:
    """The model with only ``towers`` allocated, weights from ``checkpoint`` (None: random).

    The model is laid out on the meta device, then its tensors are allocated once, in their final
    precision, and filled from the checkpoint (or at random). An architecture whose modules compute
    tensors this cannot restore is built by open_clip with its own random initialisation instead,
    and a checkpoint in another layout is read by open_clip's own loader (module doc).
    """
    if towers != "both" and not can_split(open_clip.get_model_config(name) or {}):
        logger.info("%s: its towers cannot be built apart; loading both", name)
        towers = "both"
    try:
        model = materialize(build_on_meta(open_clip, name, towers, precision, preprocess, model_kwargs), device)
        fill = random_fill
    except _NotMaterializable as exc:
        logger.info("%s; building it with open_clip's initialisation", exc)
        model = build(open_clip, name, towers, device, precision, preprocess, model_kwargs)
        fill = None
    if checkpoint is None:
        if fill is not None:
            fill(model)
        return model
    try:
        count = load_weights(model, checkpoint)
        logger.info("read %d tensors of %s (%s) from %s", count, name, towers, checkpoint)
        return model
    except CheckpointLayoutError as exc:
        logger.info("%s; loading it with open_clip's own loader (the whole model, once)", exc)
    del model
    gc.collect()
    model = open_clip.create_model(name, pretrained=checkpoint, device=device, precision=precision,
                                   pretrained_image=False, pretrained_text=False,
                                   force_preprocess_cfg=preprocess or None, **(model_kwargs or {}))
    drop_tower(model, {"text": "image", "image": "text"}.get(towers, ""))
    gc.collect()
    return model
