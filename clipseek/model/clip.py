"""Loading open_clip models once per process, and embedding frames and queries with them.

``model`` names an open_clip architecture (``ViT-B-32``, ...), ``demo`` (the small model the
project trains and ships in ``clipseek/demo/model``), or the path of an open_clip JSON config;
``pretrained`` is an open_clip pretrained tag (downloaded on first use and cached), a local
checkpoint file, or ``none`` for random weights (tests and benchmarks of speed only). The demo
model goes through the same local-checkpoint path as any other file: nothing below special-cases it
beyond naming its files.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clipseek.errors import ModelLoadError
from clipseek.model.open_clip_compat import (
    causal_text_tower,
    encode_real_tokens,
    hf_text_in_precision,
    hf_text_overrides,
    hf_tokenizer,
    quantize_int8,
    trim_hf_padding,
)
from clipseek.model.spec import (
    MULTILINGUAL_EXTRA,
    OPENAI_MEAN,
    OPENAI_STD,
    ModelSpec,
    check_hf_text_files,
    hf_text_model,
    image_size_of_config,
    model_config,
    model_identity,
    resolve_model,
    weights_identity,
)
from clipseek.model.towers import TOWERS, build_and_load
from clipseek.torch_free import keep_compilers_out, let_torch_in

logger = logging.getLogger("clipseek.clip")

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (x86 avx512_bf16 or AMX), so that the
    ``auto`` precision can pick bf16 on it: ViT-B-32 embeds ~3.4x faster than in fp32 there with
    embeddings at cosine >= 0.9999 to fp32's (docs/benchmarks.md). Elsewhere bf16 is emulated and
    slower, and auto stays fp32."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


OFFLINE_HINT = ("If this machine is offline, download the checkpoint elsewhere and point at the file: "
                "CLIPSEEK_PRETRAINED=/path/to/open_clip_model.safetensors (or pretrained: in flow.yml); for a "
                "model with a Hugging Face text tower, at a folder with the checkpoint and the text model's "
                "config.json and tokenizer.json (docs/models.md)")


def _weights_file(open_clip, spec: ModelSpec) -> tuple[str | None, dict]:
    """The checkpoint file to read (a local file, or a pretrained tag's, downloaded on first use and
    cached) and the tag's preprocessing (mean, std, ...); (None, {}) for random weights."""
    if spec.pretrained is None:
        return None, {}
    if spec.is_local_file:
        return str(Path(spec.pretrained).expanduser()), {}
    if os.sep in spec.pretrained or spec.pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise ModelLoadError(f"checkpoint file not found: {spec.pretrained}")
    tag = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    if not tag:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(spec.name)) or "none"
        raise ModelLoadError(f"'{spec.pretrained}' is neither a checkpoint file nor a pretrained tag of "
                             f"{spec.name} (its tags: {known}). {OFFLINE_HINT}")
    try:
        path = open_clip.download_pretrained(tag)
    except Exception as exc:  # network, hub and file errors alike: say what to do instead
        raise ModelLoadError(f"could not get the weights '{spec.pretrained}' for {spec.name} ({exc}). "
                             f"{OFFLINE_HINT}") from exc
    if not path:
        raise ModelLoadError(f"the pretrained tag '{spec.pretrained}' of {spec.name} names no file. {OFFLINE_HINT}")
    config = open_clip.get_model_config(spec.name) or {}
    if bool(tag.get("quick_gelu", False)) != bool(config.get("quick_gelu", False)):
        logger.warning("%s: the weights '%s' were trained with quick_gelu=%s but the architecture has %s "
                       "(open_clip names the matching one %s-quickgelu)", spec.name, spec.pretrained,
                       tag.get("quick_gelu", False), config.get("quick_gelu", False), spec.name)
    return path, {k: tag[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag}


def sleep_between_parallel_regions() -> bool:
    """Before torch is first imported: its OpenMP threads sleep when they wait (``OMP_WAIT_POLICY=PASSIVE``)
    unless the environment says otherwise. By default they spin for a while at every barrier, taking a
    core from the loader decoding beside the image encoder: the 10-minute benchmark video through the
    Flow took 6% less time with them sleeping (fp32), and the encoder alone ran as fast (docs/benchmarks.md).
    False when torch is already imported (OpenMP read its settings then) or the variable is set."""
    if sys.modules.get("torch") is not None or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch at ``count`` intra-op threads (0: as it is), then restore it."""
    import torch

    before = torch.get_num_threads()
    if count <= 0 or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bad_towers(towers: str) -> str:
    raise ModelLoadError(f"towers must be one of {', '.join(TOWERS)}, got {towers!r}")


class ClipModel:
    """An open_clip model ready to embed frames (uint8 RGB squares) and texts, L2-normalised.

    ``towers`` is ``both``, ``image`` (the image encoder's) or ``text`` (the text encoder's): the
    other tower is never allocated nor read from the checkpoint (clipseek.model.towers).
    """

    def __init__(self, spec: ModelSpec, device: str = "auto", precision: str = "auto", towers: str = "both"):
        let_torch_in()  # this process runs a model: torch is welcome here (clipseek.torch_free) ...
        keep_compilers_out()  # ... but not triton, which it would never use
        sleep_between_parallel_regions()
        import open_clip
        import torch

        self.spec = spec
        self.towers = towers if towers in TOWERS else _bad_towers(towers)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if precision == "auto":
            precision = "fp16" if self.device.startswith("cuda") else ("bf16" if cpu_has_native_bf16() else "fp32")
        if precision not in PRECISIONS:
            raise ModelLoadError(f"unknown precision '{precision}': use one of auto, {', '.join(PRECISIONS)}")
        if precision == "int8" and self.device != "cpu":
            raise ModelLoadError("precision int8 runs on the CPU only (device cpu); use fp16 on a GPU")
        self.precision = precision
        self.dtype = {"fp32": torch.float32, "int8": torch.float32, "fp16": torch.float16,
                      "bf16": torch.bfloat16}[precision]
        if spec.config_dir is not None:
            open_clip.add_model_config(spec.config_dir)
        config = open_clip.get_model_config(spec.name) or model_config(spec)
        if towers != "image":  # the image tower never needs transformers nor the text files
            check_hf_text_files(spec, config)
        checkpoint, preprocess = _weights_file(open_clip, spec)
        self.identity = model_identity(spec.name, weights_identity(spec, checkpoint))
        try:
            model = build_and_load(open_clip, spec.name, towers, checkpoint, self.device,
                                   "fp32" if precision == "int8" else precision, preprocess,
                                   hf_text_overrides(config, spec.hf_dir, towers))
        except Exception as exc:  # open_clip raises several types for unknown names and bad files
            hint = f" {OFFLINE_HINT}" if hf_text_model(config) and spec.hf_dir is None and towers != "image" else ""
            raise ModelLoadError(f"could not load model {spec.name} ({spec.pretrained}): {exc}{hint}") from exc
        model.eval()
        if precision in ("fp16", "bf16"):
            hf_text_in_precision(model, self.dtype)
        self.model = quantize_int8(model) if precision == "int8" else model
        self.image_size = image_size_of_config(config)
        self.tokenizer = self._tokenizer(open_clip, config) if self.has_text_tower else None
        self.context_length = int(getattr(self.tokenizer, "context_length", 0) or
                                  config.get("text_cfg", {}).get("context_length", 77))
        if self.has_image_tower:
            cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
            mean, std = cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD)
            self.image_size = int(np.atleast_1d(getattr(model.visual, "image_size", self.image_size))[0])
            self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
            self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.embed_dim = int(config.get("embed_dim", 0))
        self.text_threads = 0  # torch threads while embedding texts; 0 = the process's setting
        if self.has_text_tower:  # also warms the text path up, so the first query is not slow
            self.embed_dim = int(self.encode_texts(["a"]).shape[1])
        logger.info("loaded CLIP %s (%s) on %s, %s, %s tower%s, input %d px, dim %d", self.identity,
                    spec.pretrained or "random weights", self.device, precision, towers,
                    "s" if towers == "both" else "", self.image_size, self.embed_dim)

    def _tokenizer(self, open_clip, config: dict):
        if self.spec.hf_dir is not None and hf_text_model(config):
            return hf_tokenizer(config, self.spec.hf_dir)
        try:
            return open_clip.get_tokenizer(self.spec.name)
        except ImportError as exc:  # a Hugging Face tokenizer without transformers
            raise ModelLoadError(f"the tokenizer of {self.spec.name} needs {exc.name}: {MULTILINGUAL_EXTRA}") from exc

    @property
    def has_image_tower(self) -> bool:
        return getattr(self.model, "visual", None) is not None

    @property
    def has_text_tower(self) -> bool:
        m = self.model
        return getattr(m, "text", None) is not None or getattr(m, "transformer", None) is not None

    # -- images ------------------------------------------------------------------------------
    def _image_tensor(self, frames: np.ndarray):
        import torch
        import torch.nn.functional as F

        batch = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
        if batch.shape[-1] != self.image_size or batch.shape[-2] != self.image_size:
            batch = F.interpolate(batch, size=(self.image_size, self.image_size), mode="bicubic",
                                  antialias=True, align_corners=False).clamp_(0, 1)
        return batch.sub_(self._mean).div_(self._std).to(self.dtype)  # in place: one fp32 copy of the batch, not three

    def encode_frames(self, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Embed uint8 NxHxWx3 RGB frames (letterboxed squares); float32 N x dim, unit length."""
        import torch

        if not self.has_image_tower:
            raise RuntimeError(f"{self.spec.name} was loaded with its {self.towers} tower only: it cannot embed frames")
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be N x H x W x 3 RGB, got shape {frames.shape}")
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), batch_size):
                features = self.model.encode_image(self._image_tensor(frames[start:start + batch_size]))
                out.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, getattr(self, "embed_dim", 0)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    # -- texts -------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]):
        """Token ids, truncated to the model's context (the end-of-text token is kept)."""
        if self.tokenizer is None:
            raise RuntimeError(f"{self.spec.name} was loaded with its {self.towers} tower only: it cannot embed texts")
        return self.tokenizer(texts)

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts; float32 N x dim, unit length.

        CLIP's text transformer is causal, so the tokens after end-of-text never influence it: we
        run only the real tokens (the longest in the batch), which gives the same embedding as the
        full 77-token context (tested to 1e-5) at a fraction of the cost.
        """
        import torch

        out = []
        with torch.inference_mode(), torch_threads(self.text_threads):
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenize(texts[start:start + batch_size]).to(self.device)
                if causal_text_tower(self.model):
                    features = encode_real_tokens(self.model, tokens)
                else:
                    features = self.model.encode_text(trim_hf_padding(self.model, tokens))
                out.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode_texts_full_context(self, texts: list[str]) -> np.ndarray:
        """The reference: open_clip's own encode_text over the whole context (for tests/benchmarks)."""
        import torch

        with torch.inference_mode():
            features = self.model.encode_text(self.tokenize(texts).to(self.device))
            return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()



_MODELS: dict[tuple, ClipModel] = {}
_MODELS_LOCK = threading.Lock()


def load_clip(model: str, pretrained: str | None, device: str = "auto", precision: str = "auto",
              towers: str = "both") -> ClipModel:
    """The process's one instance of a model: loaded on first use, then shared by every caller.
    A model already loaded with both towers serves a caller that asks for one of them."""
    key = (model, pretrained, device, precision)
    with _MODELS_LOCK:
        for loaded in ((*key, towers), (*key, "both")):
            if loaded in _MODELS:
                return _MODELS[loaded]
        _MODELS[(*key, towers)] = ClipModel(resolve_model(model, pretrained), device, precision, towers)
        return _MODELS[(*key, towers)]
