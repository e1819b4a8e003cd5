"""The text tower on ONNX Runtime: a text encoder process that never imports torch.

A process that imports this machine's torch starts at ~870 MiB resident before it loads a single weight;
ONNX Runtime and the text tower of ViT-B-32 in fp32 need a fraction of that. The model is still loaded the
product's way (open_clip, pretrained tags, checkpoint files, model directories: clipseek.model.clip), but
in a short-lived child process (``python -m clipseek.model.onnx_export``) that writes the text tower
(token ids -> L2-normalised fp32 embedding) to an ``.onnx`` file, checks it against torch, and exits. The
file is kept in a cache keyed by the model's identity (architecture, config, weights and the checkpoint's
hash) and ``EXPORT_FORMAT``, with its weights beside it (``.onnx.data``); the next start finds it and
loads ONNX Runtime only. A file that does not load (corrupt, cut short) is exported again; the child
writes to a temporary folder and renames, so a crash never leaves a partial file under the cached name.

Tokens come from clipseek.model.tokenize (the same ids as open_clip's tokenizers, without torch). As on
torch, only the real tokens are run: CLIP's causal transformer is cut after the longest text of the batch;
a Hugging Face tower after its last column that is not padding.

``choose_runtime`` decides between ``torch`` and ``onnx`` from the settings (docs/models.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

from clipseek.errors import ModelLoadError
from clipseek.model.spec import (
    HF_TEXT_FILES,
    ModelSpec,
    file_sha256,
    model_config,
    resolve_model,
    weights_identity,
)
from clipseek.model.tokenize import Tokenizer, UnsupportedTokenizer, text_tokenizer

logger = logging.getLogger("clipseek.clip")

RUNTIMES = ("auto", "torch", "onnx")
# Bumped whenever the exported graph's inputs, outputs, metadata or files change: older cache files are not reused.
EXPORT_FORMAT = 3
EXPORT_TIMEOUT_S = 900  # a large model on a busy machine; the export of ViT-B-32's text tower takes ~20 s
TOWERS = ("text", "image")
TOKENS_INPUT = "tokens"  # int64 batch x length (the text tower)
PIXELS_INPUT = "pixels"  # uint8 batch x size x size x 3, RGB (the image tower: clipseek.model.onnx_image)
VECTOR_OUTPUT = "vector"  # float32 batch x dim, unit length
# How the runtime cuts the token columns before running the graph (ONNX metadata ``trim``):
TRIM_CAUSAL = "causal"  # open_clip's causal transformer: up to the longest text's end-of-text token
TRIM_PADDING = "padding"  # a Hugging Face tower: up to the last column that is not padding


class OnnxUnavailable(ModelLoadError):
    """A tower of this model cannot run on ONNX Runtime here (the message says why)."""


def onnxruntime_installed() -> bool:
    return importlib_util.find_spec("onnxruntime") is not None


def choose_runtime(requested: str, device: str, precision: str, cuda_devices: int) -> tuple[str, str]:
    """(``torch`` or ``onnx``, why) for the text encoder's ``text_runtime`` setting.

    ``auto`` is onnx when ONNX Runtime is installed, the model runs on the CPU (``device`` cpu, or auto
    with no CUDA device) and in fp32 (``precision`` auto or fp32: the graph is fp32); torch otherwise.
    ``onnx`` asks for it: OnnxUnavailable says why it cannot be."""
    if requested not in RUNTIMES:
        raise ValueError(f"text_runtime must be one of {', '.join(RUNTIMES)}, got {requested!r}")
    if requested == "torch":
        return "torch", "text_runtime is torch"
    on_gpu = device.startswith("cuda") or (device == "auto" and cuda_devices > 0)
    problems = []
    if not onnxruntime_installed():
        problems.append("onnxruntime is not installed (pip install 'onnxruntime==1.23.2')")
    if on_gpu:
        problems.append(f"the model runs on a GPU (device {device}), where torch runs it in fp16")
    if precision not in ("auto", "fp32"):
        problems.append(f"precision {precision} (the ONNX text tower is fp32)")
    if not problems:
        return "onnx", f"text_runtime is {requested}: ONNX Runtime, fp32, on the CPU"
    if requested == "onnx":
        raise OnnxUnavailable(f"text_runtime onnx is not possible: {'; '.join(problems)}")
    return "torch", f"text_runtime auto chose torch: {'; '.join(problems)}"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/clipseek/onnx`` (``~/.cache/clipseek/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clipseek" / "onnx"


def cache_key(spec: ModelSpec) -> str:
    """What decides the exported file's content, hashed: the export format, the architecture and its config,
    the weights (a local checkpoint by its hash, a pretrained tag by its name) and a model directory's
    Hugging Face config."""
    checkpoint = spec.pretrained if spec.is_local_file else None
    parts = {"format": EXPORT_FORMAT, "model": spec.name, "config": model_config(spec),
             "weights": weights_identity(spec, checkpoint)}
    if spec.hf_dir is not None:
        parts["hf_files"] = {name: file_sha256(spec.hf_dir / name) for name in HF_TEXT_FILES
                             if (spec.hf_dir / name).is_file()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cache_file(spec: ModelSpec, cache_dir: Path, tower: str = "text") -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)
    return cache_dir / f"{name}-{tower}-v{EXPORT_FORMAT}-{cache_key(spec)[:16]}.onnx"


def export_argv(model: str, pretrained: str | None, out: Path, tower: str = "text") -> list[str]:
    """The child process that exports the ``tower`` of these settings to ``out`` (``pretrained`` None, the
    preset's weights or random ones as resolve_model says, is passed as no ``--pretrained`` at all)."""
    weights = [] if pretrained is None else ["--pretrained", pretrained]
    return [sys.executable, "-m", "clipseek.model.onnx_export", "--model", model, *weights, "--out", str(out),
            "--tower", tower]


def export_tower(model: str, pretrained: str | None, out: Path, tower: str = "text",
                 timeout_s: float = EXPORT_TIMEOUT_S) -> None:
    """Run the export child (with torch, in its own process: its memory is returned when it exits)."""
    logger.info("exporting the %s tower of %s (%s) to ONNX: %s", tower, model, pretrained or "random weights", out)
    try:
        done = subprocess.run(export_argv(model, pretrained, out, tower), capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OnnxUnavailable(f"exporting the {tower} tower of {model} to ONNX took over {timeout_s:.0f} s") from exc
    if done.returncode != 0 or not out.is_file():
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise OnnxUnavailable(f"exporting the {tower} tower of {model} to ONNX failed: {reason}")


@dataclass(frozen=True)
class ExportInfo:
    """What the export child records in the ONNX file's metadata."""

    identity: str
    embed_dim: int
    tower: str  # text or image
    trim: str = ""  # the text tower's (TRIM_CAUSAL, TRIM_PADDING)
    pad_id: int = 0
    image_size: int = 0  # the image tower's input square, px
    export_format: int = EXPORT_FORMAT

    def to_metadata(self) -> dict[str, str]:
        return {"clipseek_identity": self.identity, "clipseek_embed_dim": str(self.embed_dim),
                "clipseek_tower": self.tower, "clipseek_trim": self.trim, "clipseek_pad_id": str(self.pad_id),
                "clipseek_image_size": str(self.image_size), "clipseek_export_format": str(self.export_format)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: Path) -> ExportInfo:
        try:
            return cls(meta["clipseek_identity"], int(meta["clipseek_embed_dim"]), meta["clipseek_tower"],
                       meta["clipseek_trim"], int(meta["clipseek_pad_id"]), int(meta["clipseek_image_size"]),
                       int(meta["clipseek_export_format"]))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a clipseek tower export ({exc})") from exc


def open_session(path: Path, threads: int, tower: str = "text", spin: bool = True):
    """An ONNX Runtime session on ``path`` (CPU) and its ExportInfo; raises on a file that does not load.

    ``spin``: the session's threads spin between the operators of a call and stop when the call returns
    (``force_spinning_stop``); sleeping between operators too (False) made a ViT-B-32 query ~5 ms slower on
    two threads for ~3 ms less CPU (``python bench/search_split.py --only threads``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(threads, 0)  # 0: one per core
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Threads that spun on after a call would take the cores from the other services between queries.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    info = ExportInfo.from_metadata(dict(session.get_modelmeta().custom_metadata_map), path)
    if info.export_format != EXPORT_FORMAT or info.tower != tower:
        raise ValueError(f"{path}: the {info.tower} tower in export format {info.export_format}, expected the "
                         f"{tower} tower in format {EXPORT_FORMAT}")
    return session, info


def ensure_exported(spec: ModelSpec, model: str, pretrained: str | None, cache_dir: Path,
                    tower: str = "text") -> Path:
    """The cached export of ``spec``'s ``tower``, exported first when missing (not opened: see load_or_export)."""
    path = cache_file(spec, cache_dir, tower)
    if not path.is_file():
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OnnxUnavailable(f"cannot create the ONNX cache folder {cache_dir}: {exc}") from exc
        export_tower(model, pretrained, path, tower)
    return path


def load_or_export(spec: ModelSpec, model: str, pretrained: str | None, cache_dir: Path, threads: int,
                   tower: str = "text", spin: bool = True):
    """(session, ExportInfo) of the cached export of ``spec``'s ``tower``, exported first when missing or
    unreadable."""
    path = cache_file(spec, cache_dir, tower)
    if path.is_file():
        try:
            return open_session(path, threads, tower, spin)
        except Exception as exc:  # noqa: BLE001  # onnxruntime raises its own types for bad files; all mean "rebuild"
            logger.warning("the cached ONNX %s tower %s does not load (%s): exporting it again", tower, path, exc)
            path.unlink()
    ensure_exported(spec, model, pretrained, cache_dir, tower)
    return open_session(path, threads, tower, spin)


def cut_columns(tokens: np.ndarray, trim: str, pad_id: int) -> np.ndarray:
    """``tokens`` without the trailing columns that never change the embedding (module doc)."""
    if not tokens.shape[1]:
        return tokens
    if trim == TRIM_CAUSAL:
        length = int((tokens != 0).sum(axis=1).max()) or 1
    elif trim == TRIM_PADDING:
        used = np.flatnonzero((tokens != pad_id).any(axis=0))
        length = int(used.max()) + 1 if len(used) else 1
    else:
        raise ValueError(f"unknown trim {trim!r} in the ONNX text tower's metadata")
    return np.ascontiguousarray(tokens[:, :length])


class OnnxTextModel:
    """The text tower of ``spec`` on ONNX Runtime: ``encode_texts`` as ClipModel's, without torch."""

    precision = "fp32"
    device = "cpu"
    towers = "text"

    def __init__(self, model: str, pretrained: str | None, threads: int = 1, cache_dir: Path | None = None,
                 spin: bool = True):
        self.spec = resolve_model(model, pretrained)
        config = model_config(self.spec)
        if not config:
            raise OnnxUnavailable(f"no open_clip config found for {self.spec.name}")
        try:
            self.tokenizer: Tokenizer = text_tokenizer(self.spec, config)
        except UnsupportedTokenizer as exc:
            raise OnnxUnavailable(f"no torch-free tokenizer: {exc}") from exc
        self.context_length = self.tokenizer.context_length
        self.text_threads = threads
        self.cache_dir = cache_dir or default_cache_dir()
        self.session, self.info = load_or_export(self.spec, model, pretrained, self.cache_dir, threads, "text", spin)
        self.identity = self.info.identity
        self.embed_dim = self.info.embed_dim
        self.encode_texts(["a"])  # warm-up: the first run of a session allocates its buffers
        logger.info("loaded the text tower of %s on ONNX Runtime (fp32, cpu, %s thread%s), dim %d, from %s",
                    self.identity, threads or "all", "" if threads == 1 else "s", self.embed_dim,
                    cache_file(self.spec, self.cache_dir))

    def tokenize(self, texts: list[str]) -> np.ndarray:
        """Token ids (int64, batch x context), as open_clip's tokenizer gives them."""
        return self.tokenizer(texts)

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts; float32 N x dim, unit length."""
        out = [self.session.run([VECTOR_OUTPUT], {TOKENS_INPUT: cut_columns(
            self.tokenize(texts[start:start + batch_size]), self.info.trim, self.info.pad_id)})[0]
            for start in range(0, len(texts), batch_size)]
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)
