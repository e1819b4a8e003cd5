"""Where clipseek leans on open_clip's insides, in one place: written for open-clip-torch 3.3.0 (pinned in
pyproject.toml), and to be checked when that pin moves (tests/test_clip_model.py covers each).

- ``encode_real_tokens``: CLIP's text transformer is causal, so the tokens after end-of-text never
  influence the embedding; running only the real tokens gives the same vector as open_clip's
  ``encode_text`` over the whole 77-token context (tested to 1e-5) at a fraction of the cost. It reads the
  text tower's parts by their names in open_clip's ``CLIP`` class (``token_embedding``,
  ``positional_embedding``, ``attn_mask``, ``transformer``, ``ln_final``, ``text_projection``).
- ``quantize_int8``: dynamic int8 quantisation of the MLPs; open_clip reads the cast dtype from
  ``mlp.c_fc.weight``, a method once quantised, and checks ``int8_original_dtype`` first (its own
  bitsandbytes path sets it), so this sets that attribute.
"""

from __future__ import annotations

import numpy as np


def causal_text_tower(model) -> bool:
    """Whether ``model``'s text tower is open_clip's causal transformer pooled at end-of-text."""
    return (getattr(model, "attn_mask", None) is not None and getattr(model, "token_embedding", None) is not None
            and getattr(model, "text_pool_type", "argmax") == "argmax")


def encode_real_tokens(model, tokens):
    """The text embedding of ``tokens`` (token ids, 0-padded) from the real tokens only (not normalised)."""
    length = int((tokens != 0).sum(dim=1).max().item()) or 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[np.arange(x.shape[0]), tokens.argmax(dim=-1)]
    if model.text_projection is not None:
        x = model.text_projection(x) if hasattr(model.text_projection, "weight") else x @ model.text_projection
    return x


def mlp_linears(model) -> set[str]:
    """Names of the plain ``nn.Linear`` modules inside transformer MLPs (``...mlp.c_fc``, ...):
    the ones whose callers only call them, so they can be swapped for quantised modules."""
    import torch

    return {name for name, module in model.named_modules()
            if type(module) is torch.nn.Linear and ".mlp." in f".{name}."}


def quantize_int8(model):
    """The model with the ``nn.Linear`` layers of its transformer MLPs replaced by int8 dynamically
    quantised ones (weights int8, activations quantised per batch; CPU only, fbgemm uses VNNI where
    the CPU has it). That is two thirds of a ViT's FLOPs; attention (whose packed projections are
    read as tensors), convolutions and pooling heads stay fp32. docs/benchmarks.md has the speed and
    the cosine to fp32."""
    import warnings

    import torch

    with warnings.catch_warnings():  # torch >= 2.10 points at torchao; this API still works
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model, mlp_linears(model), dtype=torch.qint8)
    for module in quantized.modules():
        # open_clip reads the cast dtype from mlp.c_fc.weight, a method once quantised; it checks
        # this attribute first (its own bitsandbytes int8 path sets it too).
        fc = getattr(getattr(module, "mlp", None), "c_fc", None)
        if fc is not None and not isinstance(getattr(fc, "weight", None), torch.Tensor):
            fc.int8_original_dtype = torch.float32
    return quantized
