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
- ``hf_text_overrides`` / ``hf_tokenizer``: a model whose text tower is a Hugging Face model
  (``text_cfg.hf_model_name``, e.g. ``xlm-roberta-base``) is built from that hub id even when its
  weights come from a file (``HFTextEncoder`` calls ``AutoConfig.from_pretrained(hf_model_name)``), and
  ``get_tokenizer`` reads ``hf_tokenizer_name`` from the hub too; only a ``local-dir:`` model reads its
  tokenizer from a directory, and it still builds the text model from the hub id. So, for a local model
  directory, clipseek gives ``create_model`` a ``text_cfg`` whose two names are the directory (with
  ``hf_model_pretrained`` off: the CLIP checkpoint holds the text weights) and builds the tokenizer as
  ``get_tokenizer``'s ``local-dir:`` branch does.
- ``trim_hf_padding``: the same saving as ``encode_real_tokens`` for a Hugging Face text tower, which
  masks the padding (``HFTextEncoder`` builds the attention mask from ``config.pad_token_id``), pools
  over the real tokens (or the first), and numbers positions from the tokens (RoBERTa): the padding
  columns after the longest text of a batch never change the embedding, so they are not run (tested
  to 1e-5 against the full context).
- ``hf_text_in_precision``: open_clip's fp16/bf16 (``convert_weights_to_lp``) casts the ``nn.Linear``
  layers only and leaves the Hugging Face model's LayerNorms and embeddings in fp32, so its text tower
  fails at the first matrix product ("mat1 and mat2 must have the same dtype"); the whole text tower is
  cast instead (open_clip's own ``pure_fp16``/``pure_bf16`` for that tower).
"""

from __future__ import annotations

from pathlib import Path


def causal_text_tower(model) -> bool:
    """Whether ``model``'s text tower is open_clip's causal transformer pooled at end-of-text."""
    return (getattr(model, "attn_mask", None) is not None and getattr(model, "token_embedding", None) is not None
            and getattr(model, "text_pool_type", "argmax") == "argmax")


def encode_real_tokens(model, tokens):
    """The text embedding of ``tokens`` (token ids, 0-padded) from the real tokens only (not normalised)."""
    length = int((tokens != 0).sum(dim=1).max().item()) or 1
    return encode_causal_tokens(model, tokens[:, :length])


def encode_causal_tokens(model, tokens):
    """The text embedding of every column of ``tokens`` (already cut to the real tokens; not normalised):
    ``encode_real_tokens`` without the cut, so that it traces with the length as a dynamic dimension
    (clipseek.model.onnx_export)."""
    import torch

    length = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
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


def hf_text_overrides(config: dict, hf_dir: Path | None, towers: str) -> dict:
    """``create_model`` keyword arguments that build a Hugging Face text tower from the local directory
    ``hf_dir`` (its ``config.json``) instead of the hub; {} when there is nothing to redirect."""
    text_cfg = config.get("text_cfg", {})
    if hf_dir is None or not text_cfg.get("hf_model_name") or towers == "image":
        return {}
    return {"text_cfg": {**text_cfg, "hf_model_name": str(hf_dir), "hf_tokenizer_name": str(hf_dir),
                         "hf_model_pretrained": False}}


def hf_tokenizer(config: dict, hf_dir: Path):
    """The tokenizer of a Hugging Face text tower, read from ``hf_dir`` (``tokenizer.json`` and, when
    present, ``tokenizer_config.json``/``special_tokens_map.json``), with the config's context length,
    mode and keyword arguments, as open_clip's ``get_tokenizer`` builds it for a ``local-dir:`` model."""
    from open_clip.tokenizer import DEFAULT_CONTEXT_LENGTH, HFTokenizer

    text_cfg = config.get("text_cfg", {})
    return HFTokenizer(str(hf_dir), context_length=text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH),
                       tokenizer_mode=text_cfg.get("tokenizer_mode"), **text_cfg.get("tokenizer_kwargs", {}))


def trim_hf_padding(model, tokens):
    """``tokens`` without the trailing columns that are padding in every row, for a Hugging Face text
    tower (``model.text.config.pad_token_id``); unchanged for any other model."""
    pad = getattr(getattr(getattr(model, "text", None), "config", None), "pad_token_id", None)
    if pad is None or tokens.ndim != 2 or not tokens.shape[1]:
        return tokens
    used = (tokens != pad).any(dim=0).nonzero()
    return tokens[:, : int(used.max()) + 1] if len(used) else tokens[:, :1]


def hf_text_in_precision(model, dtype) -> None:
    """Cast a Hugging Face text tower (``model.text`` with a ``config``) wholly to ``dtype``."""
    text = getattr(model, "text", None)
    if text is not None and getattr(text, "config", None) is not None:
        text.to(dtype)
